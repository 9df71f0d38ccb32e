"""Fréchet distance against scipy and closed forms; mode coverage counting; classifier features."""

import doctest

import numpy as np
import pytest
import scipy.linalg
import torch

import deepzen.generative.metrics as metrics_module
from deepzen.generative.metrics import (classifier_outputs, feature_statistics, frechet_distance,
                                        frechet_distance_from_statistics, mode_coverage)


def scipy_frechet(mean_a, cov_a, mean_b, cov_b) -> float:
    """The textbook computation (as in the FID reference code): scipy's general matrix square root."""
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


def random_covariance(rng, size):
    factor = rng.normal(size=(size, size))
    return factor @ factor.T / size + 0.1 * np.eye(size)


def test_feature_statistics_match_numpy():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 5)) * [1, 2, 3, 4, 5] + 7
    mean, cov = feature_statistics(torch.tensor(features, dtype=torch.float32))
    assert mean.dtype == torch.float64
    np.testing.assert_allclose(mean.numpy(), features.mean(0), rtol=1e-6)
    np.testing.assert_allclose(cov.numpy(), np.cov(features, rowvar=False), rtol=1e-5)


@pytest.mark.parametrize("size", [1, 4, 32])
def test_distance_from_statistics_matches_scipy(size):
    rng = np.random.default_rng(size)
    mean_a, mean_b = rng.normal(size=size), rng.normal(size=size)
    cov_a, cov_b = random_covariance(rng, size), random_covariance(rng, size)  # they do not commute
    expected = scipy_frechet(mean_a, cov_a, mean_b, cov_b)
    got = frechet_distance_from_statistics(*map(torch.tensor, (mean_a, cov_a, mean_b, cov_b)))
    assert got == pytest.approx(expected, rel=1e-8, abs=1e-9)


def test_distance_between_diagonal_gaussians_has_closed_form():
    """For commuting (diagonal) covariances d^2 = |mu_a - mu_b|^2 + sum (sigma_a - sigma_b)^2."""
    mean_a, mean_b = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, -1.0])
    sigma_a, sigma_b = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([3.0, 2.0, 1.5])
    expected = (mean_a - mean_b).square().sum() + (sigma_a - sigma_b).square().sum()
    got = frechet_distance_from_statistics(mean_a, torch.diag(sigma_a ** 2), mean_b, torch.diag(sigma_b ** 2))
    assert got == pytest.approx(float(expected), rel=1e-12)


def test_identical_sets_are_at_distance_zero():
    rng = np.random.default_rng(1)
    features = torch.tensor(rng.normal(size=(2000, 16)) @ rng.normal(size=(16, 16)))
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)


def test_shifted_sets_are_at_the_squared_shift():
    """Shifting every feature by s leaves the covariance unchanged: d^2 = |s|^2 exactly."""
    rng = np.random.default_rng(2)
    features = torch.tensor(rng.normal(size=(3000, 8)) @ rng.normal(size=(8, 8)))
    shift = torch.tensor(rng.normal(size=8))
    assert frechet_distance(features, features + shift) == pytest.approx(float(shift.square().sum()), rel=1e-8)


def test_samples_of_gaussians_approach_the_population_distance():
    rng = np.random.default_rng(3)
    size, n = 4, 200_000
    mean_a, mean_b = rng.normal(size=size), rng.normal(size=size)
    cov_a, cov_b = random_covariance(rng, size), random_covariance(rng, size)
    a = rng.multivariate_normal(mean_a, cov_a, size=n)
    b = rng.multivariate_normal(mean_b, cov_b, size=n)
    expected = scipy_frechet(mean_a, cov_a, mean_b, cov_b)
    assert frechet_distance(torch.tensor(a), torch.tensor(b)) == pytest.approx(expected, rel=0.02)


def test_bad_feature_shapes_are_rejected():
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        frechet_distance(torch.zeros(10), torch.zeros(10))
    with pytest.raises(ValueError, match="one D"):
        frechet_distance(torch.randn(10, 3), torch.randn(10, 4))


def test_mode_coverage_counts_each_class():
    rng = np.random.default_rng(4)
    labels = rng.choice(10, size=5000, p=[0.3, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.0])
    fractions = mode_coverage(torch.tensor(labels), num_classes=10)
    np.testing.assert_allclose(fractions.numpy(), np.bincount(labels, minlength=10) / len(labels))
    assert fractions.sum().item() == pytest.approx(1.0)
    assert fractions[9] == 0  # the mode the "generator" missed


@pytest.mark.parametrize("labels, message", [
    (torch.tensor([0, 10]), r"\[0, 10\)"),
    (torch.tensor([-1, 2]), "labels in"),
    (torch.tensor([0.5]), "integer"),
    (torch.tensor([], dtype=torch.long), "non-empty"),
])
def test_mode_coverage_rejects_bad_labels(labels, message):
    with pytest.raises(ValueError, match=message):
        mode_coverage(labels, num_classes=10)


def test_classifier_outputs_are_the_penultimate_features_and_argmax_labels():
    from deepzen.models import Model
    from deepzen.vision.models import create

    torch.manual_seed(0)
    lenet = create("lenet5", num_classes=10, in_channels=1)
    lenet.train()
    images = torch.randn(23, 1, 28, 28)
    features, labels = classifier_outputs(Model(lenet), images, batch_size=5)  # a wrapped model, odd batches
    assert lenet.training  # the mode is restored
    lenet.eval()
    with torch.no_grad():
        expected_features = lenet.forward_head(lenet.forward_features(images), pre_logits=True)
        expected_labels = lenet(images).argmax(-1)
    assert features.shape == (23, 84)
    torch.testing.assert_close(features, expected_features)
    assert torch.equal(labels, expected_labels)


def test_classifier_outputs_need_a_model_zoo_classifier():
    with pytest.raises(TypeError, match="forward_features"):
        classifier_outputs(torch.nn.Linear(3, 2), torch.zeros(2, 3))


def test_docstring_examples():
    assert doctest.testmod(metrics_module).failed == 0


def test_sample_quality_adds_the_distance_and_rarest_class_to_the_epoch_logs():
    from deepzen.generative import SampleQuality, build_dcgan
    from deepzen.vision.models import create

    torch.manual_seed(0)
    classifier = create("lenet5", num_classes=10, in_channels=1)
    reference = feature_statistics(classifier_outputs(classifier, torch.rand(50, 1, 28, 28) * 2 - 1)[0])
    gan = build_dcgan((1, 28, 28), latent_dim=8, base_filters=4)
    gan.compile(device="cpu")
    quality = SampleQuality(classifier, reference, num_samples=40, num_classes=10, seed=3)
    history = gan.fit(torch.rand(16, 1, 28, 28) * 2 - 1, epochs=2, batch_size=8, verbose=0, callbacks=[quality])

    torch.testing.assert_close(quality.noise, gan.sample_noise(40, torch.Generator().manual_seed(3)))
    features, labels = classifier_outputs(classifier, gan.generate(noise=quality.noise))
    assert len(history.history["fd"]) == 2
    assert history.history["fd"][-1] == pytest.approx(frechet_distance_from_statistics(
        *feature_statistics(features), *reference))
    assert history.history["min_class_fraction"][-1] == pytest.approx(float(mode_coverage(labels, 10).min()))
