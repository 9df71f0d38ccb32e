"""The GAN trainer: one alternating step against plain torch, one-sided label smoothing, fit's data
handling and History, sample grids, files, and a short real MNIST run."""

import copy
import doctest

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import deepzen
import deepzen.generative
import deepzen.generative.trainer as trainer_module
from deepzen.callbacks import Callback
from deepzen.generative import GAN, SampleGrid, build_dcgan, dcgan_discriminator, dcgan_generator
from deepzen.optimizers import Adam


def tiny_gan(image_shape=(1, 8, 8), latent_dim=6, label_smoothing=0.0, seed=0) -> GAN:
    torch.manual_seed(seed)
    gan = build_dcgan(image_shape, latent_dim=latent_dim, base_filters=4)
    gan.compile(label_smoothing=label_smoothing, device="cpu")
    return gan


def test_losses_smooth_the_real_labels_only():
    gan = tiny_gan(label_smoothing=0.2)
    real_logits, fake_logits = torch.randn(5, 1), torch.randn(5, 1)
    expected_d = (F.binary_cross_entropy_with_logits(real_logits, torch.full((5, 1), 0.8))
                  + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros(5, 1)))
    torch.testing.assert_close(gan.discriminator_loss(real_logits, fake_logits), expected_d)
    torch.testing.assert_close(gan.generator_loss(fake_logits),
                               F.binary_cross_entropy_with_logits(fake_logits, torch.ones(5, 1)))


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_train_step_matches_a_plain_torch_reference(label_smoothing):
    """One step: D update on real (target 1 - smoothing) and detached fakes (0), then a G update
    with target 1 through the updated D; statistics are measured before D's update."""
    gan = tiny_gan(latent_dim=6, label_smoothing=label_smoothing)
    generator, discriminator = copy.deepcopy(gan.generator), copy.deepcopy(gan.discriminator)
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-7)
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-7)
    real = torch.rand(8, 1, 8, 8) * 2 - 1
    gan.train()

    torch.manual_seed(1)
    logs = gan.train_step(real)  # the trackers' means after one step: that step's statistics
    stats = torch.stack([logs[name] for name in ("d_loss", "g_loss", "d_real", "d_fake")]).float()

    torch.manual_seed(1)
    fake = generator(torch.randn(8, 6))
    real_logits, fake_logits = discriminator(real), discriminator(fake.detach())
    d_loss = (F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, 1 - label_smoothing))
              + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
    d_optimizer.zero_grad()
    d_loss.backward()
    d_optimizer.step()
    g_loss = F.binary_cross_entropy_with_logits(discriminator(fake), torch.ones(8, 1))
    g_optimizer.zero_grad()
    g_loss.backward()
    g_optimizer.step()

    expected = torch.stack([d_loss, g_loss, torch.sigmoid(real_logits).mean(), torch.sigmoid(fake_logits).mean()])
    torch.testing.assert_close(stats, expected.detach())
    for ours, theirs in ((gan.generator, generator), (gan.discriminator, discriminator)):
        for (name, mine), reference in zip(ours.state_dict().items(), theirs.state_dict().values()):
            torch.testing.assert_close(mine, reference, msg=name)
    assert all(p.requires_grad for p in gan.discriminator.parameters())  # unfrozen after G's step


def test_history_holds_the_epoch_means_of_the_step_statistics(monkeypatch):
    gan = tiny_gan()
    recorded = []
    step = gan.adversarial_step
    monkeypatch.setattr(gan, "adversarial_step", lambda real: recorded.append(step(real)) or recorded[-1])
    history = gan.fit(torch.rand(40, 1, 8, 8) * 2 - 1, epochs=2, batch_size=8, verbose=0)
    assert len(recorded) == 10  # 5 full batches per epoch
    assert list(history.history) == ["d_loss", "g_loss", "d_real", "d_fake"]
    for epoch in range(2):
        means = torch.stack(recorded[5 * epoch:5 * (epoch + 1)]).mean(0).tolist()
        assert [history.history[key][epoch] for key in history.history] == pytest.approx(means)


def test_fit_drops_the_incomplete_batch_and_scales_uint8_pixels(monkeypatch):
    gan = tiny_gan()
    batches = []
    step = gan.adversarial_step
    monkeypatch.setattr(gan, "adversarial_step", lambda real: batches.append(real) or step(real))
    pixels = np.random.default_rng(0).integers(0, 256, size=(21, 8, 8), dtype=np.uint8)  # (N, H, W), one channel
    gan.fit(pixels, epochs=1, batch_size=10, verbose=0, shuffle=False)
    assert [tuple(b.shape) for b in batches] == [(10, 1, 8, 8)] * 2
    expected = torch.tensor(pixels[:20], dtype=torch.float32).unsqueeze(1) / 127.5 - 1
    torch.testing.assert_close(torch.cat(batches), expected)


@pytest.mark.parametrize("x, message", [
    (torch.full((8, 1, 8, 8), 2.0), r"\[-1, 1\]"),
    (torch.full((8, 1, 8, 8), float("nan")), r"\[-1, 1\]"),
    (torch.zeros(8, 3, 8, 8), r"\(N, 1, 8, 8\)"),
    (torch.zeros(8, 1, 8, 8, dtype=torch.int32), "uint8"),
    (torch.zeros(3, 1, 8, 8), "at least one full batch"),
])
def test_fit_rejects_unsuitable_images(x, message):
    with pytest.raises(ValueError, match=message):
        tiny_gan().fit(x, batch_size=4, verbose=0)


def test_fit_and_compile_arguments_are_checked():
    gan = build_dcgan((1, 8, 8), latent_dim=4, base_filters=2)
    with pytest.raises(RuntimeError, match="compiled"):
        gan.fit(torch.zeros(8, 1, 8, 8), verbose=0)
    with pytest.raises(ValueError, match="label_smoothing=1.0"):
        gan.compile(label_smoothing=1.0)
    foreign = torch.optim.SGD(gan.generator.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="discriminator_optimizer"):
        gan.compile(discriminator_optimizer=foreign)


def test_fit_refuses_validation_and_torchrun_and_predict_takes_noise(monkeypatch):
    from deepzen.training import distributed

    gan = tiny_gan()
    images = torch.rand(16, 1, 8, 8) * 2 - 1
    with pytest.raises(ValueError, match="no validation"):
        gan.fit(images, batch_size=8, verbose=0, validation_split=0.25)
    with pytest.raises(TypeError, match="unknown argument.*steps_per_epoch"):
        gan.fit(images, batch_size=8, verbose=0, validation_frequency=2)
    assert gan.predict(np.zeros((3, 6), dtype=np.float32)).shape == (3, 1, 8, 8)  # the generator's forward
    monkeypatch.setattr(distributed, "active", lambda: True)
    with pytest.raises(NotImplementedError, match="torchrun"):
        gan.fit(images, batch_size=8, verbose=0)


def test_compile_builds_no_third_optimizer_and_train_on_batch_scales_pixels():
    gan = tiny_gan()
    assert gan.optimizer is None and gan.engine.optimizer is None
    assert list(gan.optimizers) == ["generator_optimizer", "discriminator_optimizer"]
    pixels = np.full((8, 8, 8), 255, dtype=np.uint8)  # (N, H, W): white, +1 after scaling
    seen = []
    step = gan.adversarial_step
    gan.adversarial_step = lambda real: seen.append(real) or step(real)
    logs = gan.train_on_batch(pixels, return_dict=True)
    assert list(logs) == ["d_loss", "g_loss", "d_real", "d_fake"]
    torch.testing.assert_close(seen[0], torch.ones(8, 1, 8, 8))


def test_optimizer_specs_reach_each_network():
    gan = build_dcgan((1, 8, 8), latent_dim=4, base_filters=2)
    gan.compile(generator_optimizer=Adam(learning_rate=1e-3, beta_1=0.3), discriminator_optimizer="sgd",
                device="cpu")
    g_group, d_group = gan.generator_optimizer.param_groups[0], gan.discriminator_optimizer.param_groups[0]
    assert (g_group["lr"], g_group["betas"][0]) == (1e-3, 0.3)
    assert isinstance(gan.discriminator_optimizer, torch.optim.SGD)
    assert {id(p) for p in g_group["params"]} == {id(p) for p in gan.generator.parameters()}
    assert {id(p) for p in d_group["params"]} == {id(p) for p in gan.discriminator.parameters()}


def test_gan_needs_a_latent_dim_and_image_shaped_networks():
    with pytest.raises(ValueError, match="latent_dim"):
        GAN(torch.nn.Linear(4, 64), dcgan_discriminator((1, 8, 8)))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        GAN(torch.nn.Linear(4, 64), dcgan_discriminator((1, 8, 8)), latent_dim=4)
    with pytest.raises(ValueError, match=r"\(N, 1\) logits"):
        GAN(dcgan_generator((1, 8, 8), latent_dim=4), torch.nn.Flatten())


def test_generate_uses_moving_statistics_and_restores_the_mode():
    gan = tiny_gan()
    gan.fit(torch.rand(32, 1, 8, 8) * 2 - 1, epochs=1, batch_size=8, verbose=0)
    noise = torch.randn(5, 6)
    gan.generator.train()
    images = gan.generate(noise=noise, batch_size=2)
    assert gan.generator.training
    gan.generator.eval()
    with torch.no_grad():
        torch.testing.assert_close(images, gan.generator(noise))
    assert gan.generate(7).shape == (7, 1, 8, 8)
    with pytest.raises(ValueError, match="not both"):
        gan.generate(3, noise=noise)
    with pytest.raises(ValueError, match=r"\(n, 6\)"):
        gan.generate(noise=torch.randn(3, 5))


def test_generator_average_follows_each_generator_step_and_is_what_generate_draws_from():
    """After every step: averaged = d * averaged + (1 - d) * live for the weights, live batch-norm statistics."""
    torch.manual_seed(0)
    gan = build_dcgan((1, 8, 8), latent_dim=6, base_filters=4, generator_average=0.75)
    gan.compile(device="cpu")
    expected = [p.detach().clone() for p in gan.generator.parameters()]
    assert all(torch.equal(a, e) for a, e in zip(gan.averaged_generator.parameters(), expected))
    gan.train()
    for _ in range(3):
        gan.adversarial_step(torch.rand(8, 1, 8, 8) * 2 - 1)
        expected = [0.75 * e + 0.25 * p.detach() for e, p in zip(expected, gan.generator.parameters())]
        for averaged, want in zip(gan.averaged_generator.parameters(), expected):
            torch.testing.assert_close(averaged, want)
    for averaged, live in zip(gan.averaged_generator.buffers(), gan.generator.buffers()):
        torch.testing.assert_close(averaged, live)
    assert not any(p.requires_grad for p in gan.averaged_generator.parameters())
    assert not gan.averaged_generator.training  # train() leaves the average in evaluation mode

    noise = torch.randn(5, 6)
    with torch.no_grad():
        torch.testing.assert_close(gan.generate(noise=noise), gan.averaged_generator(noise))
        gan.generator.eval()
        assert not torch.allclose(gan.generate(noise=noise), gan.generator(noise))


@pytest.mark.parametrize("decay", [-0.1, 1.0, True, "0.9"])
def test_generator_average_must_be_a_decay_in_0_1(decay):
    with pytest.raises(ValueError, match="generator_average"):
        build_dcgan((1, 8, 8), latent_dim=6, base_filters=4, generator_average=decay)


def test_sample_grids_are_saved_each_epoch_from_fixed_noise(tmp_path):
    from matplotlib import image as mpimg

    from deepzen.vision.augment import save_grid

    gan = tiny_gan()
    grids = SampleGrid(tmp_path / "samples", num_images=6, nrow=3, seed=5)
    gan.fit(torch.rand(32, 1, 8, 8) * 2 - 1, epochs=2, batch_size=8, verbose=0, callbacks=[grids])
    assert [p.name for p in grids.paths] == ["epoch_001.png", "epoch_002.png"]
    assert all(p.is_file() for p in grids.paths)
    expected_noise = gan.sample_noise(6, torch.Generator().manual_seed(5))
    torch.testing.assert_close(grids.noise, expected_noise)
    reference = save_grid(gan.generate(noise=expected_noise), tmp_path / "reference.png", nrow=3,
                          value_range=(-1, 1))
    last = mpimg.imread(grids.paths[-1])
    assert last.shape[:2] == (2 * (8 + 2) + 2, 3 * (8 + 2) + 2)  # 2 rows x 3 columns of 8x8, 2 px padding
    np.testing.assert_array_equal(last, mpimg.imread(reference))
    assert not np.array_equal(mpimg.imread(grids.paths[0]), last)  # the generator changed in between


def test_sample_grids_are_written_by_rank_zero_only(tmp_path, monkeypatch):
    from deepzen.training import distributed

    monkeypatch.setattr(distributed, "is_rank_zero", lambda: False)
    grids = SampleGrid(tmp_path / "samples", num_images=4, nrow=2)
    tiny_gan().fit(torch.rand(16, 1, 8, 8) * 2 - 1, epochs=2, batch_size=8, verbose=0, callbacks=[grids])
    assert grids.paths == [] and not (tmp_path / "samples").exists()


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    gan = build_dcgan((3, 16, 16), latent_dim=6, base_filters=4, minibatch_std=True, generator_average=0.5)
    gan.compile(device="cpu")
    gan.fit(torch.rand(16, 3, 16, 16) * 2 - 1, epochs=1, batch_size=8, verbose=0)
    gan.save(tmp_path / "gan.dz")
    loaded = deepzen.load_model(tmp_path / "gan.dz")
    assert isinstance(loaded, GAN) and loaded.latent_dim == 6 and loaded.image_shape == (3, 16, 16)
    assert loaded.generator_average == 0.5
    for mine, theirs in zip(loaded.averaged_generator.parameters(), gan.averaged_generator.parameters()):
        torch.testing.assert_close(mine, theirs)
    noise = torch.randn(4, 6)
    torch.testing.assert_close(loaded.generate(noise=noise), gan.generate(noise=noise))
    images = gan.generate(noise=noise)
    loaded.discriminator.eval(), gan.discriminator.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.discriminator(images), gan.discriminator(images))


def test_docstring_examples():
    assert doctest.testmod(trainer_module).failed == 0
    assert doctest.testmod(deepzen.generative).failed == 0


class FirstStep(Callback):
    """Records the running statistics after the very first step (before any training)."""

    def on_train_batch_end(self, step, logs=None):
        if step == 0 and not hasattr(self, "logs"):
            self.logs = logs.read()


@pytest.mark.slow
def test_short_mnist_run_moves_the_discriminator_and_beats_an_untrained_generator(real_dataset, tmp_path):
    """About 280 steps on 3,000 digits: D(x) rises and D(G(z)) falls from 0.5, and the generated
    digits get closer to the test digits (Fréchet distance in LeNet-5 features) than untrained ones."""
    from deepzen.data.images import load_mnist
    from deepzen.generative.metrics import classifier_outputs, frechet_distance
    from deepzen.generative.recipes import mnist_images, mnist_classifier

    x_train, y_train, x_test, y_test = load_mnist(real_dataset("mnist"))
    x_train, y_train, x_test, y_test = x_train[:3000], y_train[:3000], x_test[:2000], y_test[:2000]
    classifier, accuracy = mnist_classifier(mnist_images(x_train), y_train, mnist_images(x_test), y_test, epochs=4,
                                            cache_path=tmp_path / "lenet5.dz")
    assert accuracy > 0.75
    test_features, _ = classifier_outputs(classifier, mnist_images(x_test))

    deepzen.seed(0)
    gan = build_dcgan((1, 28, 28), latent_dim=32, base_filters=16)
    gan.compile(label_smoothing=0.1, device="cpu")
    untrained_features, _ = classifier_outputs(classifier, gan.generate(2000))
    first = FirstStep()
    history = gan.fit(x_train, epochs=3, batch_size=32, verbose=0, callbacks=[first]).history

    assert first.logs["d_real"] == pytest.approx(0.5, abs=0.05)  # N(0, 0.02) weights: logits near 0
    assert first.logs["d_fake"] == pytest.approx(0.5, abs=0.05)
    # batch norm in training mode spreads the first logits: 1.31-1.70 over seeds 0-13 (it depends on the
    # draws of z and of the first batch, which fit takes from its own shuffle seed since the GAN is on fit)
    assert first.logs["d_loss"] == pytest.approx(-np.log(0.5) * 2, abs=0.35)
    assert history["d_real"][-1] > 0.6 and history["d_fake"][-1] < 0.4  # D tells them apart
    assert history["d_loss"][-1] < first.logs["d_loss"] - 0.3
    trained_features, _ = classifier_outputs(classifier, gan.generate(2000))
    assert frechet_distance(trained_features, test_features) < 0.7 * frechet_distance(untrained_features,
                                                                                        test_features)
