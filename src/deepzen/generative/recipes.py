"""GAN recipes, registered by name for the command line and the benchmarks.

``mnist-dcgan`` trains a DCGAN on the MNIST training digits and measures it without any download:
the Fréchet distance between 10,000 generated digits and the 10,000 test digits in the feature
space (F6, 84 features) of a LeNet-5 trained on MNIST, next to the same distance for an untrained
generator and for 10,000 real training digits (the floor a perfect generator would reach), and
mode coverage: the share of generated digits the classifier assigns to each of the 10 classes.

    deepzen train mnist-dcgan --set epochs=5
    deepzen train --resume runs/<run>      # continues the GAN's fit from its checkpoint, exactly

The GAN trains with ``Model.fit``, so a run folder gets its history, ``last.dz`` and
``checkpoint.ckpt`` (both optimizers, the averaged generator); the LeNet-5 judge is cached by the
recipe itself and is not one of the run's fits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import deepzen
from deepzen.recipes import register_recipe
from deepzen.runs import current_run, unrecorded

NUM_CLASSES = 10


@dataclass
class MnistDCGANConfig:
    """Settings of ``mnist-dcgan``. The defaults are the measured run that covers all ten digits (the
    rarest 5.9%, BENCHMARKS.md). The discriminator's spectral norm does it: with batch norm (the DCGAN
    paper's, ``spectral_norm=false``) the rarest digit stayed below 5% in every epoch; sampling from a
    moving average of the generator (``generator_average=0.999``) changed little (rarest 5.4% against
    5.7%, Fréchet distance 51.1 against 49.0)."""

    epochs: int = 15
    batch_size: int = 128
    latent_dim: int = 100  # size of the generator's noise vector
    base_filters: int = 32  # discriminator 32 -> 64 channels, generator 64 -> 32 -> 1
    minibatch_std: bool = True  # a minibatch standard-deviation channel in the discriminator
    spectral_norm: bool = True  # spectral normalization instead of batch norm in the discriminator
    generator_average: float = 0.0  # decay of the generator's weight average that samples are drawn from (0: none)
    learning_rate: float = 2e-4
    discriminator_learning_rate: float = 0.0  # 0: learning_rate (a larger one: the two time-scale rule)
    beta_1: float = 0.5  # Adam's beta_1 for both networks
    label_smoothing: float = 0.1
    num_generated: int = 10000  # samples per Fréchet distance (the test set has 10,000)
    classifier_epochs: int = 10  # the LeNet-5 that judges the samples (98.9% test accuracy)
    train_images: int = 0  # 0: all 60,000; fewer for a quick run (GAN and classifier alike)
    cache_dir: str = ""  # where the trained LeNet-5 is kept and reused; default <run_dir>/cache
    seed: int = 0
    verbose: int = 2


def mnist_classifier(x_train: torch.Tensor, y_train: np.ndarray, x_test: torch.Tensor, y_test: np.ndarray, *,
                     epochs: int, cache_path: Path, seed: int = 0, verbose: int = 0):
    """A LeNet-5 trained on MNIST images in [-1, 1], loaded from ``cache_path`` when it is there.

    Args:
        x_train, x_test: (N, 1, 28, 28) float images in [-1, 1].
        y_train, y_test: (N,) class ids.
        epochs: training epochs (when not cached).
        cache_path: the model file to reuse or write.

    Returns:
        ``(model, test_accuracy)``: a compiled ``deepzen.Model`` wrapping the LeNet-5.
    """
    from deepzen.models import Model
    from deepzen.vision.models import create

    deepzen.seed(seed)
    model = Model(create("lenet5", num_classes=NUM_CLASSES, in_channels=1), name="lenet5_mnist")
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=1e-3),
                  loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True), metrics=["accuracy"])
    if cache_path.is_file():
        model.load_weights(cache_path)
    else:
        with unrecorded():  # cached here, so a resumed run's GAN fit keeps its number and checkpoint
            model.fit(x_train, y_train, batch_size=128, epochs=epochs, verbose=verbose)
        model.save(cache_path)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return model, accuracy


def mnist_images(pixels: np.ndarray) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 1, 28, 28) float32 in [-1, 1]."""
    from deepzen.generative.trainer import to_tanh_range

    return to_tanh_range(torch.as_tensor(pixels)).unsqueeze(1)


@register_recipe("mnist-dcgan", MnistDCGANConfig,
                 "DCGAN on MNIST; Fréchet distance in LeNet-5 features and mode coverage of 10,000 samples",
                 dataset="MNIST", target="all 10 digit classes covered; Fréchet distance in LeNet-5 features")
def mnist_dcgan(config: MnistDCGANConfig, run_dir: Path) -> dict:
    from deepzen.data.images import load_mnist
    from deepzen.generative.dcgan import build_dcgan
    from deepzen.generative.metrics import (SampleQuality, classifier_outputs, feature_statistics,
                                            frechet_distance_from_statistics, mode_coverage)
    from deepzen.generative.trainer import LOG_NAMES, SampleGrid
    from deepzen.optimizers import Adam
    from deepzen.training.plots import plot_history

    x_train, y_train, x_test, y_test = load_mnist()
    if config.train_images:
        x_train, y_train = x_train[:config.train_images], y_train[:config.train_images]
    run = current_run()  # a replay (`deepzen evaluate`) writes to a scratch folder; the cache stays in the run's
    cache_dir = Path(config.cache_dir) if config.cache_dir else (run.path if run is not None else run_dir) / "cache"
    cache_path = cache_dir / f"lenet5_mnist_{len(x_train)}x{config.classifier_epochs}_seed{config.seed}.dz"
    classifier, classifier_accuracy = mnist_classifier(
        mnist_images(x_train), y_train, mnist_images(x_test), y_test, epochs=config.classifier_epochs,
        cache_path=cache_path, seed=config.seed, verbose=config.verbose)

    def statistics(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features, labels = classifier_outputs(classifier, images)
        return (*feature_statistics(features), labels)

    test_mean, test_cov, _ = statistics(mnist_images(x_test))
    real_sample = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(config.seed))
    real_sample = real_sample[:config.num_generated].numpy()  # as many real digits as generated ones
    train_mean, train_cov, _ = statistics(mnist_images(x_train[real_sample]))

    deepzen.seed(config.seed)
    gan = build_dcgan((1, 28, 28), config.latent_dim, config.base_filters, config.minibatch_std,
                      config.spectral_norm, config.generator_average)
    discriminator_learning_rate = config.discriminator_learning_rate or config.learning_rate
    gan.compile(generator_optimizer=Adam(learning_rate=config.learning_rate, beta_1=config.beta_1),
                discriminator_optimizer=Adam(learning_rate=discriminator_learning_rate, beta_1=config.beta_1),
                label_smoothing=config.label_smoothing)
    untrained_mean, untrained_cov, _ = statistics(gan.generate(config.num_generated))

    samples = SampleGrid(run_dir / "samples", num_images=100, nrow=10, seed=config.seed)
    quality = SampleQuality(classifier, (test_mean, test_cov), config.num_generated, NUM_CLASSES, seed=config.seed)
    start = time.perf_counter()
    history = gan.fit(x_train, epochs=config.epochs, batch_size=config.batch_size, callbacks=[samples, quality],
                      verbose=config.verbose)
    train_seconds = time.perf_counter() - start  # includes the per-epoch measurements (a few seconds each)
    gan.save(run_dir / "gan.dz")
    plot_history(history, run_dir / "training_curves.png", title="mnist-dcgan")

    last_grid = run_dir / "samples" / f"epoch_{len(history.epoch):03d}.png"  # also when a resume drew it earlier
    generated_mean, generated_cov, generated_labels = statistics(gan.generate(config.num_generated))
    fractions = mode_coverage(generated_labels, NUM_CLASSES).tolist()
    last = {key: values[-1] for key, values in history.history.items() if key in LOG_NAMES}
    return {
        "fd_generated": frechet_distance_from_statistics(generated_mean, generated_cov, test_mean, test_cov),
        "fd_untrained_generator": frechet_distance_from_statistics(untrained_mean, untrained_cov, test_mean,
                                                                   test_cov),
        "fd_real_train": frechet_distance_from_statistics(train_mean, train_cov, test_mean, test_cov),
        "classes_covered": sum(f > 0 for f in fractions),
        "min_class_fraction": min(fractions),
        "class_fractions": fractions,
        "classifier_test_accuracy": classifier_accuracy,
        **{f"final_{key}": value for key, value in last.items()},
        "fd_per_epoch": history.history.get("fd", []),
        "min_class_fraction_per_epoch": history.history.get("min_class_fraction", []),
        "epochs": len(history.epoch),
        "train_images": len(x_train),
        "train_seconds": train_seconds,
        "samples_png": str(last_grid) if last_grid.is_file() else None,
    }
