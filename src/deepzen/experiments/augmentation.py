"""Data augmentation: what does each transform do to a digit, and what does it buy on little data?

The textbook claim: random label-preserving transforms (small rotations, zooms, shifts, crops)
show the network more variants of each training image, which improves test accuracy when
training data is scarce; a transform that does not preserve the label (mirroring a digit) does
not help.

Measured on a small training subset (1,000 images by default) with one small CNN: a grid of
real training images under each transform, and the test accuracy (and training accuracy) of the
CNN trained without augmentation and with each transform. Augmentation runs on the batch inside
the model (:class:`~deepzen.vision.tasks.Augmented`), in training only.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from deepzen.experiments.common import check_variants, cnn, evaluate, load_data, train, with_augmentation
from deepzen.experiments.report import (TRAINING_COLUMNS, Column, ExperimentResult, join, percent, points, save_figure,
                                        write_report)

VARIANTS = ("none", "rotation", "zoom", "translation", "crop", "flip", "combined")


def pipelines(image_size: int, *, rotation: float, zoom: float, translation: float, crop_padding: int,
              seed: int) -> dict:
    """The augmentation of each variant but "none", as seeded :class:`~deepzen.vision.augment.Augment` pipelines.

    Geometric transforms repeat the edge pixels ("nearest" fill: the digits' background).

    Args:
        image_size: height (= width) of the images.
        rotation: rotation factor (fraction of a full turn; 0.04 = ±14.4°).
        zoom: zoom factor (±fraction of the size).
        translation: shift factor (±fraction of the size, both axes).
        crop_padding: pixels of padding before the random crop back to ``image_size``.
        seed: seeds every pipeline.
    """
    from deepzen.vision.augment import (Augment, RandomCrop, RandomFlip, RandomRotation, RandomTranslation,
                                        RandomZoom)

    return {"rotation": Augment(RandomRotation(rotation, fill_mode="nearest"), seed=seed),
            "zoom": Augment(RandomZoom(zoom, fill_mode="nearest"), seed=seed),
            "translation": Augment(RandomTranslation(translation, translation, fill_mode="nearest"), seed=seed),
            "crop": Augment(RandomCrop(image_size, padding=crop_padding, padding_mode="replicate"), seed=seed),
            "flip": Augment(RandomFlip("horizontal"), seed=seed),
            "combined": Augment(RandomRotation(rotation, fill_mode="nearest"), RandomZoom(zoom, fill_mode="nearest"),
                                RandomTranslation(translation, translation, fill_mode="nearest"), seed=seed)}


def run(run_dir: str | Path, *, dataset: str = "auto", train_samples: int = 1000, test_samples: int | None = None,
        variants: Sequence[str] = VARIANTS, rotation: float = 0.04, zoom: float = 0.15, translation: float = 0.15,
        crop_padding: int | None = None, widths: Sequence[int] = (16, 32), optimizer: str = "adam",
        learning_rate: float = 0.001, epochs: int = 30, batch_size: int = 32, grid_images: int = 8, seed: int = 0,
        verbose: int = 1) -> ExperimentResult:
    """Draws each augmentation on real images and trains the CNN without and with each.

    Args:
        run_dir: the run folder.
        dataset: "auto", "mnist" or "digits".
        train_samples: the small training set.
        test_samples: test subset size (None: all).
        variants: some of :data:`VARIANTS` ("combined" = rotation + zoom + translation).
        rotation, zoom, translation: the transforms' factors (see :func:`pipelines`).
        crop_padding: padding of the random crop (default: an eighth of the image size, rounded up).
        widths: convolution filters of the CNN (:func:`~deepzen.experiments.common.cnn`).
        optimizer, learning_rate: the same for every variant.
        epochs, batch_size: training length.
        grid_images: training images shown per row of the grid.
        seed: seeds data subsets, weights, shuffling and the augmentations.
        verbose: 1 prints a line per variant.
    """
    from deepzen import optimizers

    check_variants(variants, VARIANTS)
    start = time.perf_counter()
    run_dir = Path(run_dir)
    data = load_data(dataset, train_samples=train_samples, test_samples=test_samples, seed=seed)
    size = data.input_shape[1]
    padding = -(-size // 8) if crop_padding is None else crop_padding
    factors = {"rotation": rotation, "zoom": zoom, "translation": translation, "crop_padding": padding}

    def build(name: str):
        net = cnn(data, widths=widths)
        return net if name == "none" else with_augmentation(net, pipelines(size, **factors, seed=seed)[name])

    rows = []
    for name in variants:
        trained = train(partial(build, name), data, optimizer=optimizers.get(optimizer, learning_rate=learning_rate),
                        epochs=epochs, batch_size=batch_size, seed=seed)
        _, train_accuracy = evaluate(trained.model, data.x_train, data.y_train)
        _, test_accuracy = evaluate(trained.model, data.x_test, data.y_test)
        rows.append({"variant": name, "train_accuracy": train_accuracy, "test_accuracy": test_accuracy,
                     "gap": train_accuracy - test_accuracy, "diverged_at": trained.diverged_at,
                     "seconds": trained.seconds})
        if verbose:
            print(f"augmentation: {name}: test accuracy {percent(test_accuracy)} ({trained.seconds:.0f} s)")
    baseline = next((row for row in rows if row["variant"] == "none"), None)
    for row in rows:
        row["gain"] = row["test_accuracy"] - baseline["test_accuracy"] if baseline is not None else None

    images = torch.as_tensor(data.x_train[:grid_images])
    shown = {name: pipeline for name, pipeline in pipelines(size, **factors, seed=seed).items() if name in variants}
    figure = plot(images, shown, rows, run_dir / "augmentation.png")
    columns = [Column("train_accuracy", "training accuracy", "percent"),
               Column("test_accuracy", "test accuracy", "percent"),
               Column("gain", "test accuracy vs none", "percent"),
               Column("gap", "gap (train - test)", "percent"),
               *TRAINING_COLUMNS]
    result = ExperimentResult(
        name="augmentation", title=f"Data augmentation on {len(data.y_train):,} training images",
        claim="Random label-preserving transforms improve test accuracy when training data is scarce; a transform "
              "that changes what the image shows (mirroring a digit) does not help.",
        data=data.describe(),
        settings={"variants": list(variants), **factors, "widths": list(widths), "optimizer": optimizer,
                  "learning_rate": learning_rate, "epochs": epochs, "batch_size": batch_size, "seed": seed},
        columns=columns, rows=rows, finding=finding(rows),
        figures=[(figure.name, "Training images (top row) and what each augmentation makes of them; test accuracy "
                               "of the CNN trained with each.")],
        run_dir=run_dir, notes=[data.note] if data.note else [])
    result.seconds = time.perf_counter() - start
    write_report(result)
    return result


def finding(rows: list[dict]) -> str:
    """The paragraph of the report, from the measurements."""
    baseline = next((row for row in rows if row["variant"] == "none"), None)
    others = sorted((row for row in rows if row is not baseline), key=lambda row: -row["test_accuracy"])
    if baseline is None:
        return "Test accuracy: " + join([f"{row['variant']} {percent(row['test_accuracy'])}" for row in others]) + "."
    sentences = [f"Without augmentation the CNN reached {percent(baseline['test_accuracy'])} test accuracy "
                 f"({percent(baseline['train_accuracy'])} on its training images)."]
    if others:
        gains = [f"{row['variant']} {percent(row['test_accuracy'])} ({points(row['gain'], signed=True)})"
                 for row in others]
        sentences.append(f"With augmentation: {join(gains)}.")
        helped = [row["variant"] for row in others if row["gain"] > 0]
        hurt = [row["variant"] for row in others if row["gain"] < 0]
        sentences.append(f"Test accuracy rose with {join(helped) if helped else 'no transform'}"
                         f"{' and fell with ' + join(hurt) if hurt else ''}.")
        narrowest = min(rows, key=lambda row: row["gap"])
        sentences.append(f"The smallest train-test gap was {points(narrowest['gap'])} ({narrowest['variant']}), "
                         f"against {points(baseline['gap'])} without augmentation.")
    return " ".join(sentences)


def plot(images: torch.Tensor, pipelines: dict, rows: list[dict], path: Path) -> Path:
    """Left: the images and one augmented draw per pipeline, a row each; right: test accuracy per variant."""
    from deepzen.training.plots import pyplot

    plt = pyplot()
    strips = {"original": images}
    for name, pipeline in pipelines.items():
        pipeline.train()
        with torch.no_grad():
            strips[name] = pipeline(images)
    low, high = float(images.min()), float(images.max())  # the pixel values of black and white
    figure = plt.figure(figsize=(14, 0.9 * len(strips) + 1.2))
    grid = figure.add_gridspec(len(strips), 2, width_ratios=(2.2, 1))
    for index, (name, batch) in enumerate(strips.items()):
        axis = figure.add_subplot(grid[index, 0])
        gap = torch.full((batch.shape[0], 1, batch.shape[2], 2), high)
        strip = torch.cat([torch.cat([image, column], dim=2) for image, column in zip(batch, gap)], dim=2)
        axis.imshow(strip[0].numpy(), cmap="gray", vmin=low, vmax=high)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    bars = figure.add_subplot(grid[:, 1])
    names = [row["variant"] for row in rows]
    accuracy = [row["test_accuracy"] for row in rows]
    bars.barh(np.arange(len(rows)), accuracy, color=["grey" if name == "none" else "C0" for name in names])
    for position, value in enumerate(accuracy):
        bars.text(value, position, f" {percent(value)}", va="center", fontsize=8)
    bars.set_yticks(np.arange(len(rows)), names)
    bars.invert_yaxis()
    bars.set_xlim(max(0.0, min(accuracy) - 0.1), 1.0)
    bars.set_title("test accuracy")
    bars.grid(alpha=0.3, axis="x")
    figure.tight_layout()
    return save_figure(figure, path)

