"""Optimizers: how fast does each one bring the training loss down, per step and per second?

The textbook claims: momentum and Nesterov momentum speed plain SGD up along consistent
directions; the adaptive methods (Adagrad, RMSprop, Adadelta, Adam, AdamW) scale each weight's
step by its gradient history and usually need less tuning; an adaptive step costs a little more
compute than an SGD step.

Measured on one MLP, the same data, the same initial weights and the same batch order for every
optimizer, each at a commonly used learning rate (an option): the loss of every training step
against the step and against the wall time spent training, the steps and seconds until the
smoothed loss first reaches a target, the final training loss and test accuracy.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np

from deepzen.experiments.common import first_below, load_data, mlp, smooth, smoothing_window, train
from deepzen.experiments.report import (TRAINING_COLUMNS, Column, ExperimentResult, join, number, percent, save_figure,
                                        write_report)

BUSY = 0.75  # below this CPU share (see common.Trained.cpu_share) the report warns about wall times

# Learning rates commonly used with each optimizer (Keras's defaults, Adadelta's paper value 1.0).
LEARNING_RATES = {"sgd": 0.01, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.01, "rmsprop": 0.001,
                  "adadelta": 1.0, "adam": 0.001, "adamw": 0.001}


def run(run_dir: str | Path, *, dataset: str = "auto", train_samples: int | None = 30000,
        test_samples: int | None = None, optimizers: Sequence[str] = tuple(LEARNING_RATES),
        learning_rates: dict[str, float] | None = None, depth: int = 3, width: int = 128, epochs: int = 3,
        batch_size: int = 128, target_loss: float = 0.3, seed: int = 0, verbose: int = 1) -> ExperimentResult:
    """Trains the same MLP with each optimizer and records the loss of every step.

    Args:
        run_dir: the run folder.
        dataset: "auto", "mnist" or "digits".
        train_samples, test_samples: subset sizes (None: all).
        optimizers: optimizer names (``deepzen.optimizers``; "momentum" and "nesterov" are SGD with
            momentum 0.9).
        learning_rates: overrides of :data:`LEARNING_RATES`, e.g. ``{"sgd": 0.1}``.
        depth, width: the MLP (Dense layers, hidden units).
        epochs, batch_size: training length.
        target_loss: the smoothed training loss whose first crossing is timed.
        seed: seeds data subsets, weights and shuffling (the same for every optimizer).
        verbose: 1 prints a line per optimizer.
    """
    from deepzen import optimizers as optimizer_specs

    start = time.perf_counter()
    run_dir = Path(run_dir)
    rates = {**LEARNING_RATES, **(learning_rates or {})}
    missing = [name for name in optimizers if name not in rates]
    if missing:
        raise ValueError(f"No learning rate for {', '.join(missing)}: pass learning_rates={{name: rate}}. "
                         f"Received: optimizers={tuple(optimizers)}")
    data = load_data(dataset, train_samples=train_samples, test_samples=test_samples, seed=seed)
    window = smoothing_window(data, batch_size)
    rows, curves, shares = [], {}, []
    for name in optimizers:
        trained = train(partial(mlp, data, depth=depth, width=width), data,
                        optimizer=optimizer_specs.get(name, learning_rate=rates[name]), epochs=epochs,
                        batch_size=batch_size, seed=seed, validation=(data.x_test, data.y_test))
        losses = np.asarray(trained.steps.losses)
        seconds = np.asarray(trained.steps.seconds[:len(losses)])
        smoothed = smooth(losses, window)
        curves[name] = (smoothed, seconds)
        shares.append(trained.cpu_share)
        reached = first_below(smoothed, target_loss) if trained.diverged_at is None else None
        done = trained.diverged_at is None
        rows.append({"variant": name, "learning_rate": rates[name],
                     "epoch1_loss": trained.history["loss"][0] if trained.history.get("loss") else None,
                     "train_loss": trained.history["loss"][-1] if done else None,
                     "test_accuracy": trained.history["val_accuracy"][-1] if done else None,
                     "steps_to_target": reached,
                     "seconds_to_target": float(seconds[reached - 1]) if reached else None,
                     "ms_per_step": 1000 * float(np.median(np.diff(seconds, prepend=0.0))) if len(seconds) else None,
                     "cpu_ms_per_step": 1000 * float(np.median(np.diff(trained.steps.cpu_seconds, prepend=0.0)))
                     if len(seconds) else None,
                     "diverged_at": trained.diverged_at, "seconds": float(seconds[-1]) if len(seconds) else None})
        if verbose:
            print(f"optimizers: {name} (lr {rates[name]:g}): final training loss "
                  f"{number(rows[-1]['train_loss'] or 0.0)}, test accuracy "
                  f"{percent(rows[-1]['test_accuracy'] or 0.0)} ({trained.seconds:.0f} s)")

    figure = plot(curves, target_loss, run_dir / "optimizers.png")
    columns = [Column("learning_rate", "learning rate"),
               Column("epoch1_loss", "training loss, epoch 1"),
               Column("train_loss", f"training loss, epoch {epochs}"),
               Column("test_accuracy", "test accuracy", "percent"),
               Column("steps_to_target", f"steps to loss {target_loss:g}", "integer"),
               Column("seconds_to_target", f"seconds to loss {target_loss:g}", "seconds", timing=True),
               Column("ms_per_step", "ms per step (median)", timing=True),
               Column("cpu_ms_per_step", "CPU ms per step (median)", timing=True),
               *TRAINING_COLUMNS]
    result = ExperimentResult(
        name="optimizers", title="Optimizers on the same model and data",
        claim="Momentum speeds SGD up; the adaptive optimizers (Adagrad, RMSprop, Adadelta, Adam, AdamW) bring the "
              "loss down faster at their usual learning rates; an adaptive step costs a little more time.",
        data=data.describe(),
        settings={"optimizers": list(optimizers), "learning_rates": {name: rates[name] for name in optimizers},
                  "depth": depth, "width": width, "epochs": epochs, "batch_size": batch_size,
                  "target_loss": target_loss, "smoothing_window": window, "seed": seed},
        columns=columns, rows=rows, finding=finding(rows, target_loss, epochs),
        figures=[(figure.name, f"Training loss (moving average over {window} steps) against steps and against "
                               f"wall time; the dotted line is the target loss {target_loss:g}.")],
        run_dir=run_dir, notes=[data.note] if data.note else [])
    share = float(np.mean(shares))
    if share < BUSY:
        result.notes.append(f"While this ran, the process got {share:.0%} of the CPU time its threads could use (the "
                            f"machine was busy): the wall times are longer than on an idle machine, and their "
                            f"comparisons less reliable than the per-step ones.")
    result.seconds = time.perf_counter() - start
    write_report(result)
    return result


def finding(rows: list[dict], target: float, epochs: int) -> str:
    """The paragraph of the report, from the measurements."""
    finished = sorted((row for row in rows if row["train_loss"] is not None), key=lambda row: row["train_loss"])
    sentences = []
    if finished:
        sentences.append(f"Ranked by the mean training loss of epoch {epochs}: "
                         + join([f"{row['variant']} {number(row['train_loss'])}" for row in finished]) + ".")
        best = max(finished, key=lambda row: row["test_accuracy"])
        worst = min(finished, key=lambda row: row["test_accuracy"])
        sentences.append(f"Test accuracy ranged from {percent(worst['test_accuracy'])} ({worst['variant']}) to "
                         f"{percent(best['test_accuracy'])} ({best['variant']}).")
    reached = sorted((row for row in rows if row["steps_to_target"] is not None),
                     key=lambda row: row["steps_to_target"])
    if reached:
        sentences.append(f"The smoothed training loss reached {target:g} after "
                         + join([f"{row['steps_to_target']:,} steps with {row['variant']}" for row in reached]) + ".")
        by_time = sorted(reached, key=lambda row: row["seconds_to_target"])
        if [row["variant"] for row in by_time] == [row["variant"] for row in reached]:
            sentences.append("Against wall time the order was the same.")
        else:
            sentences.append("Against wall time the order was "
                             + join([f"{row['variant']} ({row['seconds_to_target']:.1f} s)" for row in by_time]) + ".")
    never = [row["variant"] for row in rows if row["steps_to_target"] is None and row["diverged_at"] is None]
    if never:
        sentences.append(f"Never reached {target:g}: {join(never)}.")
    timed = [row for row in rows if row["cpu_ms_per_step"] is not None]
    if timed:
        slowest = max(timed, key=lambda row: row["cpu_ms_per_step"])
        fastest = min(timed, key=lambda row: row["cpu_ms_per_step"])
        sentences.append(f"In CPU time a step cost {slowest['cpu_ms_per_step']:.2f} ms with {slowest['variant']} (the "
                         f"most) and {fastest['cpu_ms_per_step']:.2f} ms with {fastest['variant']} (the least).")
    diverged = [f"{row['variant']} (step {row['diverged_at']})" for row in rows if row["diverged_at"] is not None]
    if diverged:
        sentences.append(f"The loss became non-finite with {join(diverged)}.")
    return " ".join(sentences)


def plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], target: float, path: Path) -> Path:
    """Two panels: smoothed training loss against step and against training seconds (log scale)."""
    from deepzen.training.plots import pyplot

    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for index, (name, (losses, seconds)) in enumerate(curves.items()):
        shown = np.where(np.isfinite(losses) & (losses > 0), losses, np.nan)
        style = "-" if index < 10 else "--"
        axes[0].plot(np.arange(1, len(shown) + 1), shown, style, color=f"C{index % 10}", label=name)
        axes[1].plot(seconds[:len(shown)], shown, style, color=f"C{index % 10}", label=name)
    for axis, xlabel in zip(axes, ("step", "training seconds")):
        axis.axhline(target, color="grey", linestyle=":", linewidth=1)
        axis.set_yscale("log")
        axis.set_xlabel(xlabel)
        axis.set_ylabel("training loss")
        axis.grid(alpha=0.3)
    axes[0].set_title("loss against steps")
    axes[1].set_title("loss against wall time")
    axes[1].legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)

