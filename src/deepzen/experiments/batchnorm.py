"""Batch normalization: does it make a CNN train faster and tolerate a larger learning rate?

The textbook claim (Ioffe & Szegedy 2015): normalizing each layer's inputs over the mini-batch
keeps their scale steady while the weights change, so the network converges in fewer steps and
stays stable at learning rates where the same network without normalization diverges or stalls.

Measured on one small CNN with and without ``BatchNormalization`` after each convolution, each at a
small and a large learning rate (same initial weights per architecture, same batch order): the loss
of every step, the steps until the smoothed loss first reaches a target, the step where the loss
became non-finite (if it did), the spread of the losses over the last epoch, and test accuracy
per epoch.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np

from deepzen.experiments.common import cnn, evaluate, first_below, load_data, smooth, smoothing_window, train
from deepzen.experiments.report import (TRAINING_COLUMNS, Column, ExperimentResult, number, percent, save_figure,
                                        write_report)


def run(run_dir: str | Path, *, dataset: str = "auto", train_samples: int | None = 20000,
        test_samples: int | None = None, learning_rates: Sequence[float] = (0.05, 0.5),
        widths: Sequence[int] = (16, 32, 64), optimizer: str = "sgd", epochs: int = 2, batch_size: int = 64,
        target_loss: float = 0.3, seed: int = 0, verbose: int = 1) -> ExperimentResult:
    """Trains the CNN with and without batch normalization at each learning rate.

    Args:
        run_dir: the run folder.
        dataset: "auto", "mnist" or "digits".
        train_samples, test_samples: subset sizes (None: all).
        learning_rates: the small and the large learning rate (any number of them).
        widths: filters of the convolution blocks (:func:`~deepzen.experiments.common.cnn`).
        optimizer: optimizer name (plain SGD by default, so the learning rate alone sets the step size).
        epochs, batch_size: training length.
        target_loss: the smoothed training loss whose first crossing is counted.
        seed: seeds data subsets, weights and shuffling.
        verbose: 1 prints a line per network.
    """
    from deepzen import optimizers

    start = time.perf_counter()
    run_dir = Path(run_dir)
    data = load_data(dataset, train_samples=train_samples, test_samples=test_samples, seed=seed)
    window = smoothing_window(data, batch_size)
    rows, curves, accuracy_curves = [], {}, {}
    for learning_rate in learning_rates:
        for batchnorm in (False, True):
            label = f"{'BN' if batchnorm else 'no BN'}, lr {learning_rate:g}"
            trained = train(partial(cnn, data, widths=widths, batchnorm=batchnorm), data,
                            optimizer=optimizers.get(optimizer, learning_rate=learning_rate), epochs=epochs,
                            batch_size=batch_size, seed=seed, validation=(data.x_test, data.y_test))
            losses = np.asarray(trained.steps.losses)
            smoothed = smooth(losses, window)
            curves[label] = smoothed
            accuracy_curves[label] = trained.history.get("val_accuracy", [])
            done = trained.diverged_at is None
            _, test_accuracy = evaluate(trained.model, data.x_test, data.y_test)
            last_epoch = losses[trained.steps.epoch_ends[-2] if len(trained.steps.epoch_ends) > 1 else 0:]
            rows.append({"variant": label, "batchnorm": "yes" if batchnorm else "no", "learning_rate": learning_rate,
                         "steps_to_target": first_below(smoothed, target_loss) if done else None,
                         "train_loss": trained.history["loss"][-1] if done else None,
                         "loss_spread": float(last_epoch.std()) if done else None,
                         "test_accuracy": test_accuracy, "diverged_at": trained.diverged_at,
                         "seconds": trained.seconds})
            if verbose:
                state = f"diverged at step {trained.diverged_at}" if not done else \
                    f"final training loss {number(rows[-1]['train_loss'])}"
                print(f"batchnorm: {label}: {state}, test accuracy {percent(test_accuracy)} ({trained.seconds:.0f} s)")

    figure = plot(curves, accuracy_curves, target_loss, run_dir / "batchnorm.png")
    columns = [Column("batchnorm", "batch norm", "text"),
               Column("learning_rate", "learning rate"),
               Column("steps_to_target", f"steps to loss {target_loss:g}", "integer"),
               Column("train_loss", f"training loss, epoch {epochs}"),
               Column("loss_spread", "std of step losses, last epoch"),
               Column("test_accuracy", "test accuracy", "percent"),
               *TRAINING_COLUMNS]
    result = ExperimentResult(
        name="batchnorm", title="Batch normalization at a small and a large learning rate",
        claim="Batch normalization makes a network converge in fewer steps and keeps it stable at a learning rate "
              "where the same network without it diverges or stalls.",
        data=data.describe(),
        settings={"learning_rates": list(learning_rates), "widths": list(widths), "optimizer": optimizer,
                  "epochs": epochs, "batch_size": batch_size, "target_loss": target_loss,
                  "smoothing_window": window, "seed": seed},
        columns=columns, rows=rows, finding=finding(rows, target_loss, data.majority_accuracy),
        figures=[(figure.name, f"Training loss (moving average over {window} steps) and test accuracy per epoch, "
                               f"with and without batch normalization at each learning rate.")],
        run_dir=run_dir, notes=[data.note] if data.note else [])
    result.seconds = time.perf_counter() - start
    write_report(result)
    return result


def _outcome(row: dict, target: float, chance: float) -> str:
    """How one network fared, in words chosen by its numbers."""
    if row["diverged_at"] is not None:
        return (f"the loss became non-finite at step {row['diverged_at']:,} (test accuracy "
                f"{percent(row['test_accuracy'])})")
    if row["steps_to_target"] is None:
        stalled = " — no better than always answering the most frequent digit" \
            if row["test_accuracy"] < chance + 0.05 else ""
        return (f"the smoothed loss never reached {target:g} (final {number(row['train_loss'])}, test accuracy "
                f"{percent(row['test_accuracy'])}{stalled})")
    return (f"the smoothed loss reached {target:g} after {row['steps_to_target']:,} steps (test accuracy "
            f"{percent(row['test_accuracy'])})")


def finding(rows: list[dict], target: float, chance: float) -> str:
    """The paragraph of the report, from the measurements."""
    sentences = []
    for learning_rate in dict.fromkeys(row["learning_rate"] for row in rows):
        pair = {row["batchnorm"]: row for row in rows if row["learning_rate"] == learning_rate}
        parts = [f"{'with' if key == 'yes' else 'without'} batch normalization {_outcome(row, target, chance)}"
                 for key, row in sorted(pair.items(), reverse=True)]
        sentences.append(f"At learning rate {learning_rate:g}, " + "; ".join(parts) + ".")
    learned = [row for row in rows if row["loss_spread"] is not None and row["steps_to_target"] is not None]
    if len(learned) > 1:  # a network that stopped learning has steady losses too: leave it out
        calmest = min(learned, key=lambda row: row["loss_spread"])
        noisiest = max(learned, key=lambda row: row["loss_spread"])
        sentences.append(f"Among the networks that reached {target:g}, the step losses of the last epoch varied least "
                         f"with {calmest['variant']} (std {number(calmest['loss_spread'])}) and most with "
                         f"{noisiest['variant']} (std {number(noisiest['loss_spread'])}).")
    best = max(rows, key=lambda row: row["test_accuracy"])
    sentences.append(f"Best test accuracy: {percent(best['test_accuracy'])} ({best['variant']}).")
    return " ".join(sentences)


def plot(curves: dict[str, np.ndarray], accuracy_curves: dict[str, list[float]], target: float, path: Path) -> Path:
    """Two panels: smoothed training loss against step, test accuracy per epoch. Colour = learning
    rate, solid = with batch normalization, dashed = without."""
    from matplotlib.ticker import MaxNLocator

    from deepzen.training.plots import pyplot

    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    axes[0].set_title("training loss")
    rates = list(dict.fromkeys(label.split("lr ")[1] for label in curves))
    for label, losses in curves.items():
        color = f"C{rates.index(label.split('lr ')[1]) % 10}"
        style = "--" if label.startswith("no BN") else "-"
        shown = np.where(np.isfinite(losses) & (losses > 0), losses, np.nan)
        axes[0].plot(np.arange(1, len(shown) + 1), shown, style, color=color, label=label)
        values = accuracy_curves[label]
        axes[1].plot(np.arange(1, len(values) + 1), values, style, color=color, marker="o", markersize=4, label=label)
    axes[0].axhline(target, color="grey", linestyle=":", linewidth=1)
    axes[0].set_yscale("log")
    ceiling = 10 * float(np.nanmedian([losses[0] for losses in curves.values() if len(losses)]))
    peak = max(float(losses[np.isfinite(losses)].max(initial=0.0)) for losses in curves.values())
    if peak > ceiling:
        axes[0].set_ylim(top=ceiling)  # a diverging run would squash the others
        axes[0].set_title(f"training loss (clipped at {number(ceiling)})")
    axes[0].set_xlabel("step")
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].set_xlabel("epoch")
    axes[1].set_ylim(0, 1)
    axes[1].set_title("test accuracy")
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)

