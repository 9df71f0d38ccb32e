"""Regularization: what closes the gap between training and test accuracy on little data?

The textbook claim: a network with many more weights than training examples memorizes them —
training accuracy near 100%, test accuracy well below — and regularization narrows that gap:
weight penalties (L1, L2 / weight decay), dropout, data augmentation, and early stopping on a
validation set.

Measured on a small training subset (1,000 MNIST images by default) with one MLP: training and
test accuracy of each variant and their difference, the validation loss per epoch, and the
epoch early stopping chose. The validation images come from the rest of the training set, so the
test set is never used for a decision.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np

from deepzen.experiments.common import check_variants, evaluate, load_data, mlp, train, with_augmentation
from deepzen.experiments.report import (TRAINING_COLUMNS, Column, ExperimentResult, join, percent, points, save_figure,
                                        write_report)

VARIANTS = ("none", "l1", "l2", "dropout", "augmentation", "early_stopping")


def run(run_dir: str | Path, *, dataset: str = "auto", train_samples: int = 1000, validation_samples: int = 1000,
        test_samples: int | None = None, variants: Sequence[str] = VARIANTS, depth: int = 3, width: int = 512,
        l1: float = 1e-4, l2: float = 1e-3, dropout: float = 0.5, patience: int = 10, optimizer: str = "momentum",
        learning_rate: float = 0.01, epochs: int = 100, batch_size: int = 32, seed: int = 0,
        verbose: int = 1) -> ExperimentResult:
    """Trains the same MLP without and with each regularizer on a small subset.

    Args:
        run_dir: the run folder.
        dataset: "auto", "mnist" or "digits".
        train_samples: the small training set.
        validation_samples: images from the rest of the training set, for the validation curves and
            early stopping.
        test_samples: test subset size (None: all).
        variants: some of :data:`VARIANTS`.
        depth, width: the MLP (Dense layers, hidden units).
        l1, l2: the L1 and L2 factors (Keras's definition: ``factor * sum(w^2)`` added to the loss).
        dropout: the dropout rate after each hidden layer.
        patience: early stopping's epochs without a lower validation loss before stopping (the best
            weights are restored).
        optimizer, learning_rate: the same for every variant.
        epochs, batch_size: training length (early stopping may end sooner).
        seed: seeds data subsets, weights, shuffling, dropout and augmentation.
        verbose: 1 prints a line per variant.
    """
    from deepzen import optimizers
    from deepzen.callbacks import EarlyStopping
    from deepzen.regularizers import L1, L2
    from deepzen.vision.tasks import augmentation

    check_variants(variants, VARIANTS)
    start = time.perf_counter()
    run_dir = Path(run_dir)
    data = load_data(dataset, train_samples=train_samples, validation_samples=validation_samples,
                     test_samples=test_samples, seed=seed)
    labels = {"none": "none", "l1": f"L1 ({l1:g})", "l2": f"L2 ({l2:g})", "dropout": f"dropout {dropout:g}",
              "augmentation": "augmentation", "early_stopping": f"early stopping (patience {patience})"}

    def build(name: str):
        net = mlp(data, depth=depth, width=width, dropout=dropout if name == "dropout" else 0.0,
                  regularizer={"l1": L1(l1), "l2": L2(l2)}.get(name))
        if name != "augmentation":
            return net
        # the digits recipe's pipeline: rotations up to ±9°, zooms and shifts up to 10%
        return with_augmentation(net, augmentation("digits", data.input_shape[1], seed=seed))

    rows, curves = [], {}
    for name in variants:
        stopper = EarlyStopping("val_loss", patience=patience, restore_best_weights=True)
        trained = train(partial(build, name), data, optimizer=optimizers.get(optimizer, learning_rate=learning_rate),
                        epochs=epochs, batch_size=batch_size, seed=seed, validation=(data.x_valid, data.y_valid),
                        callbacks=[stopper] if name == "early_stopping" else [])
        _, train_accuracy = evaluate(trained.model, data.x_train, data.y_train)
        test_loss, test_accuracy = evaluate(trained.model, data.x_test, data.y_test)
        label = labels[name]
        curves[label] = trained.history.get("val_accuracy", [])
        chosen = stopper.best_epoch + 1 if name == "early_stopping" and stopper.best_epoch is not None else None
        rows.append({"variant": label, "train_accuracy": train_accuracy, "test_accuracy": test_accuracy,
                     "gap": train_accuracy - test_accuracy,
                     "test_loss": test_loss if trained.diverged_at is None else None,
                     "epochs": len(trained.history.get("loss", [])), "chosen_epoch": chosen,
                     "diverged_at": trained.diverged_at, "seconds": trained.seconds})
        if verbose:
            print(f"regularization: {label}: train {percent(train_accuracy)}, test {percent(test_accuracy)} "
                  f"({trained.seconds:.0f} s)")

    figure = plot(rows, curves, run_dir / "regularization.png")
    columns = [Column("train_accuracy", "training accuracy", "percent"),
               Column("test_accuracy", "test accuracy", "percent"),
               Column("gap", "gap (train - test)", "percent"),
               Column("test_loss", "test loss"),
               Column("epochs", "epochs trained", "integer"),
               Column("chosen_epoch", "weights from epoch", "integer"),
               *TRAINING_COLUMNS]
    result = ExperimentResult(
        name="regularization", title=f"Regularization on {len(data.y_train):,} training images",
        claim="With few training examples a large network memorizes them (training accuracy far above test "
              "accuracy); L1/L2 penalties, dropout, data augmentation and early stopping narrow the gap.",
        data=data.describe(),
        settings={"variants": list(variants), "depth": depth, "width": width, "l1": l1, "l2": l2,
                  "dropout": dropout, "patience": patience, "optimizer": optimizer,
                  "learning_rate": learning_rate, "epochs": epochs, "batch_size": batch_size, "seed": seed},
        columns=columns, rows=rows, finding=finding(rows),
        figures=[(figure.name, "Training vs test accuracy of each variant (the gap annotated, in points), and the "
                               "validation error per epoch.")],
        run_dir=run_dir, notes=[data.note] if data.note else [])
    result.seconds = time.perf_counter() - start
    write_report(result)
    return result


def finding(rows: list[dict]) -> str:
    """The paragraph of the report, from the measurements."""
    sentences = []
    baseline = next((row for row in rows if row["variant"] == "none"), None)
    if baseline is not None:
        sentences.append(f"Without regularization the network reached {percent(baseline['train_accuracy'])} training "
                         f"and {percent(baseline['test_accuracy'])} test accuracy, a gap of "
                         f"{points(baseline['gap'])}.")
    by_gap = sorted(rows, key=lambda row: row["gap"])
    sentences.append("Ranked by the gap: " + join([f"{row['variant']}: {points(row['gap'])}" for row in by_gap]) + ".")
    best = max(rows, key=lambda row: row["test_accuracy"])
    sentences.append(f"The highest test accuracy was {percent(best['test_accuracy'])}, with {best['variant']}.")
    if baseline is not None:
        changes = [f"{row['variant']}: {points(row['test_accuracy'] - baseline['test_accuracy'], signed=True)}"
                   for row in rows if row is not baseline]
        sentences.append("Test accuracy against no regularization: " + join(changes) + ".")
    for row in rows:
        if row["chosen_epoch"] is not None:
            sentences.append(f"Early stopping ran {row['epochs']} epochs and kept the weights of epoch "
                             f"{row['chosen_epoch']}, where the validation loss was lowest.")
    diverged = [row["variant"] for row in rows if row["diverged_at"] is not None]
    if diverged:
        sentences.append(f"The loss became non-finite with {join(diverged)}.")
    return " ".join(sentences)


def plot(rows: list[dict], curves: dict[str, list[float]], path: Path) -> Path:
    """Two panels: training vs test accuracy bars per variant, validation error per epoch (the
    validation loss would include the L1/L2 penalties, so it is not comparable across variants)."""
    from deepzen.training.plots import pyplot

    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(14, 4.8))
    positions = np.arange(len(rows))
    train_accuracy = [row["train_accuracy"] for row in rows]
    test_accuracy = [row["test_accuracy"] for row in rows]
    axes[0].bar(positions - 0.2, train_accuracy, 0.4, label="training")
    axes[0].bar(positions + 0.2, test_accuracy, 0.4, label="test")
    for position, row in zip(positions, rows):
        axes[0].annotate(f"gap {100 * row['gap']:.1f}", (position, max(row["train_accuracy"], row["test_accuracy"])),
                         textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    low = min(test_accuracy + train_accuracy)
    axes[0].set_ylim(max(0.0, low - 0.1), 1.08)
    axes[0].set_xticks(positions, [row["variant"] for row in rows], rotation=20, ha="right", fontsize=8)
    axes[0].set_title("accuracy")
    axes[0].grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=8, loc="upper center", ncol=2)
    for index, (label, values) in enumerate(curves.items()):
        axes[1].plot(np.arange(1, len(values) + 1), 100 * (1 - np.asarray(values)), color=f"C{index}", label=label)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("%")
    axes[1].set_title("validation error")
    axes[1].set_ylim(bottom=0)
    axes[1].grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)

