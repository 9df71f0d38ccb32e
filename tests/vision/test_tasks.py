"""Image-classification helpers: data loading and normalization (real MNIST, a generated CIFAR-format
folder), the augmentation wrapper, learning-rate schedules and the confusion matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import deepzen
from deepzen.data.images import CIFAR10_CLASSES, load_cifar10, load_mnist, write_cifar10_like
from deepzen.models import Model
from deepzen.vision.augment import Augment, RandomCrop, RandomFlip
from deepzen.vision.tasks import (Augmented, ImageData, augmentation, confusion_matrix, cosine_schedule,
                                  fit_classifier, image_classifier, load_image_data, network, predict_classes,
                                  step_schedule)


@pytest.fixture(scope="module")
def mnist_raw(real_dataset):
    return load_mnist(real_dataset("mnist"))


@pytest.fixture(scope="module")
def cifar_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cifar")
    write_cifar10_like(folder, 12, seed=3)
    return folder


def test_mnist_is_normalized_per_channel_with_training_statistics(mnist_raw):
    x_train, y_train, x_test, y_test = mnist_raw
    data = load_image_data("mnist")
    mean, std = x_train.mean(dtype=np.float64) / 255, x_train.std(dtype=np.float64) / 255
    assert data.mean == pytest.approx((mean,)) and data.std == pytest.approx((std,))
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_train.dtype == np.float32
    expected = (x_test[:50, None] / 255 - mean) / std
    np.testing.assert_allclose(data.x_test[:50], expected, atol=1e-5)
    np.testing.assert_array_equal(data.y_test, y_test)
    assert data.num_classes == 10 and data.input_shape == (1, 28, 28)
    np.testing.assert_allclose(data.unnormalize(data.x_test[:50]), x_test[:50, None] / 255, atol=1e-5)


def test_class_selection_relabels_and_per_class_subsets_are_exact(mnist_raw):
    x_train, y_train, x_test, y_test = mnist_raw
    data = load_image_data("mnist", classes=(7, 2), train_per_class=30, test_samples=100, seed=1)
    assert data.class_names == ("7", "2")
    assert np.bincount(data.y_train).tolist() == [30, 30]
    assert len(data.y_test) == 100
    # Each kept image is a raw image of the class its new label names.
    raw_by_bytes = {x.tobytes(): label for x, label in zip(x_test, y_test)}
    restored = np.rint(data.unnormalize(data.x_test)[:, 0] * 255).astype(np.uint8)
    assert [raw_by_bytes[x.tobytes()] for x in restored] == [(7, 2)[label] for label in data.y_test]
    again = load_image_data("mnist", classes=(7, 2), train_per_class=30, test_samples=100, seed=1)
    np.testing.assert_array_equal(again.x_train, data.x_train)


def test_given_statistics_are_used_instead_of_the_subsets(mnist_raw):
    data = load_image_data("mnist", classes=(5,), train_samples=10, statistics=((0.5,), (0.25,)))
    assert data.mean == (0.5,) and data.std == (0.25,)
    np.testing.assert_allclose(data.unnormalize(data.x_train) * 4 - 2, data.x_train, atol=1e-5)


def test_cifar_format_folder_is_read_and_normalized_per_channel(cifar_folder):
    x_train, y_train, x_test, y_test = load_cifar10(cifar_folder)
    data = load_image_data("cifar10", cifar_folder)
    assert data.class_names == CIFAR10_CLASSES and data.input_shape == (3, 32, 32)
    assert data.x_train.shape == (60, 3, 32, 32)
    pixels = x_train.astype(np.float64) / 255
    mean, std = pixels.mean(axis=(0, 2, 3)), pixels.std(axis=(0, 2, 3))
    np.testing.assert_allclose(data.mean, mean) and np.testing.assert_allclose(data.std, std)
    np.testing.assert_allclose(data.x_test, (x_test / 255 - mean[:, None, None]) / std[:, None, None], atol=1e-5)
    np.testing.assert_array_equal(data.y_train, y_train)


def test_unknown_dataset_and_classes_are_named_in_the_error():
    with pytest.raises(ValueError, match="dataset='svhn'"):
        load_image_data("svhn")
    with pytest.raises(ValueError, match="classes=\\[3, 12\\]"):
        load_image_data("mnist", classes=(3, 12))


class RecordMode(nn.Module):
    """Identity that records the mode of every call."""

    def __init__(self):
        super().__init__()
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return x


def test_augmented_applies_the_pipeline_while_training_only():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    x = torch.randn(16, 3, 8, 8)
    model = Augmented(Augment(RandomCrop(8, padding=2), RandomFlip("horizontal"), seed=5), net)
    reference = Augment(RandomCrop(8, padding=2), RandomFlip("horizontal"), seed=5)
    torch.testing.assert_close(model(x), net(reference(x)))  # training mode: the same seeded draws
    model.eval()
    torch.testing.assert_close(model(x), net(x))


def test_fit_augments_and_evaluate_does_not():
    recorder = RecordMode()
    model = Model(Augmented(recorder, nn.Sequential(nn.Flatten(), nn.Linear(4, 2))))
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((8, 1, 2, 2), np.float32), np.zeros((8, 2), np.float32), batch_size=4, epochs=1, verbose=0)
    recorder.modes.clear()
    model.fit(np.ones((8, 1, 2, 2), np.float32), np.zeros((8, 2), np.float32), batch_size=4, epochs=1, verbose=0)
    assert recorder.modes.count(True) == 2  # two training steps
    recorder.modes.clear()
    model.predict(np.ones((3, 1, 2, 2), np.float32))
    assert recorder.modes == [False]


def test_named_augmentations_are_random_in_training_and_identity_in_eval():
    images = torch.rand(8, 1, 28, 28)
    for name in ("digits", "cifar"):
        pipeline = augmentation(name, 28, seed=0)
        assert not torch.equal(pipeline(images), images)
        pipeline.eval()
        assert torch.equal(pipeline(images), images)
    assert augmentation("none", 28) is None
    with pytest.raises(ValueError, match="augment='mixup'"):
        augmentation("mixup", 28)


def small_data(classes=3, channels=1, size=28, n=12):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, channels, size, size)).astype(np.float32)
    y = rng.integers(0, classes, n)
    return ImageData(x, y, x, y, tuple(map(str, range(classes))), (0.0,) * channels, (1.0,) * channels)


def test_image_classifier_is_sized_for_the_data_and_unwraps():
    data = small_data(classes=3, channels=3, size=32)
    model = image_classifier("resnet20", data, augment="cifar", seed=0)
    assert isinstance(model.module, Augmented)
    assert network(model).in_channels == 3 and network(model).num_classes == 3
    assert model.predict(data.x_test).shape == (12, 3)
    plain = image_classifier("lenet5", small_data())
    assert network(plain) is plain.module


def test_cosine_schedule_matches_torch_cosine_annealing():
    epochs, base = 7, 0.1
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=base)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=0.01)
    schedule = cosine_schedule(base, epochs, final_fraction=0.1)
    for epoch in range(epochs):
        assert schedule(epoch, None) == pytest.approx(optimizer.param_groups[0]["lr"])
        optimizer.step()
        annealing.step()
    warm = cosine_schedule(base, 5, warmup_epochs=2)
    assert [warm(e, None) for e in range(3)] == pytest.approx([base / 3, 2 * base / 3, base])
    assert warm(4, None) == pytest.approx(base * (1 + math.cos(math.pi * 2 / 3)) / 2)
    with pytest.raises(ValueError, match="warmup_epochs=3"):
        cosine_schedule(base, 3, warmup_epochs=3)


def test_step_schedule_matches_torch_multistep():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    multistep = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[3, 5], gamma=0.2)
    schedule = step_schedule(0.1, ("5", 3), gamma=0.2)  # milestones may arrive as strings from --set
    for epoch in range(8):
        assert schedule(epoch, None) == pytest.approx(optimizer.param_groups[0]["lr"])
        optimizer.step()
        multistep.step()


def test_fit_classifier_follows_the_schedule_and_learns():
    deepzen.seed(0)
    data = small_data(classes=2, size=4, n=32)
    data.y_train = (data.x_train.mean(axis=(1, 2, 3)) > 0).astype(np.int64)  # a linearly separable rule
    model = Model(nn.Sequential(nn.Flatten(), nn.Linear(16, 2)))
    history = fit_classifier(model, data, deepzen.optimizers.Adam(learning_rate=0.05), epochs=30, batch_size=8,
                             schedule=step_schedule(0.05, [20]), verbose=0)
    assert history.history["learning_rate"][19] == pytest.approx(0.05)
    assert history.history["learning_rate"][20] == pytest.approx(0.005)
    assert history.history["accuracy"][-1] == 1.0
    predicted, probabilities = predict_classes(model, data.x_train)
    np.testing.assert_array_equal(predicted, data.y_train)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)


def test_confusion_matrix_counts_pairs():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 200)
    scores = rng.random((200, 4))
    matrix = confusion_matrix(y_true, scores)
    expected = np.zeros((4, 4), np.int64)
    for true, predicted in zip(y_true, scores.argmax(-1)):
        expected[true, predicted] += 1
    np.testing.assert_array_equal(matrix, expected)
