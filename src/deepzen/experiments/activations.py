"""Activations: where do the gradients of a deep network vanish?

The textbook claim: the sigmoid's derivative is at most 1/4 (tanh's at most 1), so backpropagation
through many sigmoid layers multiplies the gradient by small factors and the first layers barely
learn; ReLU (derivative 1 where active) and GELU keep the gradient's size through depth.

Measured with :class:`~deepzen.callbacks.GradientMonitor` on MLPs of 5 and 20 Dense layers (Glorot
initialization, the same optimizer for all): every layer's weight-gradient norm over training,
the ratio of the first layer's to the output layer's, and test accuracy.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np

from deepzen.experiments.common import load_data, mlp, train
from deepzen.experiments.report import (TRAINING_COLUMNS, Column, ExperimentResult, join, number, percent, save_figure,
                                        write_report)

VANISHED = 1e-2  # a first-layer / output-layer gradient ratio below this is reported as vanished


def run(run_dir: str | Path, *, dataset: str = "auto", train_samples: int | None = 20000,
        test_samples: int | None = None, activations: Sequence[str] = ("sigmoid", "tanh", "relu", "gelu"),
        depths: Sequence[int] = (5, 20), width: int = 128, initializer: str = "glorot_uniform",
        optimizer: str = "momentum", learning_rate: float = 0.01, epochs: int = 3, batch_size: int = 128,
        every: int = 10, seed: int = 0, verbose: int = 1) -> ExperimentResult:
    """Trains an MLP per (activation, depth) and records every layer's gradient norm.

    Args:
        run_dir: the run folder.
        dataset: "auto", "mnist" or "digits".
        train_samples, test_samples: subset sizes (None: all).
        activations: hidden activation names.
        depths: numbers of Dense layers (hidden layers + the output layer).
        width: hidden units per layer.
        initializer: kernel initializer of every layer.
        optimizer, learning_rate: the same for every network.
        epochs, batch_size: training length.
        every: record the gradient norms every this many steps.
        seed: seeds data subsets, weights and shuffling.
        verbose: 1 prints a line per network.
    """
    from deepzen import optimizers
    from deepzen.callbacks import GradientMonitor

    start = time.perf_counter()
    run_dir = Path(run_dir)
    data = load_data(dataset, train_samples=train_samples, test_samples=test_samples, seed=seed)
    rows, norms = [], {}  # norms[(activation, depth)]: (layers, records) weight-gradient norms
    for depth in depths:
        for activation in activations:
            monitor = GradientMonitor(every=every, warn=False)
            trained = train(partial(mlp, data, depth=depth, width=width, activation=activation,
                                    initializer=initializer), data,
                            optimizer=optimizers.get(optimizer, learning_rate=learning_rate), epochs=epochs,
                            batch_size=batch_size, seed=seed, validation=(data.x_test, data.y_test),
                            callbacks=[monitor])
            steps = np.array([monitor.steps[name] for name, _ in monitor.named])  # (layers, records)
            norms[activation, depth] = steps
            recorded = trained.diverged_at is None and steps.shape[1] > 0
            profile = steps.mean(axis=1) if recorded else None  # (layers,) mean over training
            rows.append({"variant": f"{depth}-layer {activation}", "activation": activation, "depth": depth,
                         "test_accuracy": trained.history["val_accuracy"][-1] if recorded else None,
                         "train_loss": trained.history["loss"][-1] if recorded else None,
                         "first_gradient": float(profile[0]) if recorded else None,
                         "output_gradient": float(profile[-1]) if recorded else None,
                         "ratio": float(profile[0] / profile[-1]) if recorded and profile[-1] > 0 else None,
                         "diverged_at": trained.diverged_at, "seconds": trained.seconds})
            if verbose:
                print(f"activations: {rows[-1]['variant']}: first/output gradient ratio "
                      f"{number(rows[-1]['ratio'] or 0.0)}, test accuracy {percent(rows[-1]['test_accuracy'] or 0.0)} "
                      f"({trained.seconds:.0f} s)")

    summary = plot_profiles(norms, rows, run_dir / "activations.png")
    heatmap = plot_over_training(norms, max(depths), every, run_dir / "gradient_norms_over_training.png")
    columns = [Column("test_accuracy", "test accuracy", "percent"),
               Column("train_loss", "final training loss"),
               Column("first_gradient", "gradient norm, layer 1 (mean over training)"),
               Column("output_gradient", "gradient norm, output layer (mean)"),
               Column("ratio", "layer 1 / output layer"),
               *TRAINING_COLUMNS]
    result = ExperimentResult(
        name="activations", title="Activations and vanishing gradients in deep MLPs",
        claim="Backpropagating through many sigmoid (or tanh) layers shrinks the gradient, so the first layers of "
              "a deep sigmoid network barely learn; ReLU and GELU keep the gradient's size through depth.",
        data=data.describe(),
        settings={"activations": list(activations), "depths": list(depths), "width": width,
                  "initializer": initializer, "optimizer": optimizer, "learning_rate": learning_rate,
                  "epochs": epochs, "batch_size": batch_size, "every": every, "seed": seed},
        columns=columns, rows=rows, finding=finding(rows, data.majority_accuracy, epochs, initializer),
        figures=[(summary.name, "Mean weight-gradient norm of every layer over training (log scale), per depth; "
                                "test accuracy of each network."),
                 (heatmap.name, f"Weight-gradient norm of every layer of the {max(depths)}-layer networks at each "
                                f"recorded step (log10).")],
        run_dir=run_dir, notes=[data.note] if data.note else [])
    result.seconds = time.perf_counter() - start
    write_report(result)
    return result


def finding(rows: list[dict], chance: float, epochs: int, initializer: str) -> str:
    """The paragraph of the report, from the measurements."""
    sentences = [f"All networks started from {initializer} initialization."]
    for depth in sorted({row["depth"] for row in rows}, reverse=True):
        group = [row for row in rows if row["depth"] == depth]
        ratios = join([f"{number(row['ratio'])} with {row['activation']}" for row in group if row["ratio"] is not None])
        accuracy = join([f"{percent(row['test_accuracy'])} with {row['activation']}" for row in group
                         if row["test_accuracy"] is not None])
        sentences.append(f"In the {depth}-layer networks the ratio of the first layer's gradient norm to the output "
                         f"layer's (means over training) was {ratios}; test accuracy after {epochs} "
                         f"epoch{'s' * (epochs != 1)} was {accuracy}.")
    vanished = [row["variant"] for row in rows if row["ratio"] is not None and row["ratio"] < VANISHED]
    if vanished:
        sentences.append(f"The gradient reaching the first layer was less than 1/{round(1 / VANISHED)} of the output "
                         f"layer's in: {join(vanished)}.")
    else:
        sentences.append(f"In no network did the first layer's gradient fall below 1/{round(1 / VANISHED)} of the "
                         f"output layer's.")
    near_chance = [row["variant"] for row in rows if row["test_accuracy"] is not None
                   and row["test_accuracy"] < chance + 0.05]
    if near_chance:
        sentences.append(f"Within 5 points of always answering the most frequent digit ({percent(chance)}): "
                         f"{join(near_chance)}.")
    diverged = [f"{row['variant']} (step {row['diverged_at']})" for row in rows if row["diverged_at"] is not None]
    if diverged:
        sentences.append(f"The loss became non-finite in: {join(diverged)}.")
    return " ".join(sentences)


def plot_profiles(norms: dict, rows: list[dict], path: Path) -> Path:
    """One panel per depth (gradient norm against layer, log scale) and a test-accuracy bar chart."""
    from matplotlib.ticker import MaxNLocator

    from deepzen.training.plots import pyplot

    plt = pyplot()
    depths = sorted({depth for _, depth in norms})
    activations = list(dict.fromkeys(activation for activation, _ in norms))
    figure, axes = plt.subplots(1, len(depths) + 1, figsize=(5 * (len(depths) + 1), 4.2))
    for axis, depth in zip(axes, depths):
        for index, activation in enumerate(activations):
            if norms[activation, depth].shape[1] == 0:  # diverged before the first record
                continue
            profile = norms[activation, depth].mean(axis=1)
            axis.plot(np.arange(1, len(profile) + 1), np.where(profile > 0, profile, np.nan), color=f"C{index}",
                      marker="o", markersize=3, label=activation)
        axis.set_yscale("log")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("layer (1 = first, last = output)")
        axis.set_title(f"{depth} layers: gradient norm (mean over training)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    bars = axes[-1]
    group_width = 0.8 / len(depths)
    for offset, depth in enumerate(depths):
        values = [next((row["test_accuracy"] or 0.0) for row in rows
                       if row["activation"] == activation and row["depth"] == depth) for activation in activations]
        bars.bar(np.arange(len(activations)) + (offset - (len(depths) - 1) / 2) * group_width, values, group_width,
                 label=f"{depth} layers")
    bars.set_xticks(np.arange(len(activations)), activations)
    bars.set_ylim(0, 1)
    bars.set_title("test accuracy")
    bars.grid(alpha=0.3, axis="y")
    bars.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_over_training(norms: dict, depth: int, every: int, path: Path) -> Path:
    """Heat maps of log10 gradient norm (layer x recorded step), one per activation, shared colour scale."""
    from matplotlib.ticker import MaxNLocator

    from deepzen.training.plots import pyplot

    plt = pyplot()
    activations = [activation for activation, d in norms if d == depth and norms[activation, d].shape[1] > 0]
    maps = [np.log10(np.maximum(norms[activation, depth], 1e-30)) for activation in activations]
    finite = np.concatenate([m[np.asarray(norms[a, depth]) > 0] for m, a in zip(maps, activations)])
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 0.0)
    figure, axes = plt.subplots(1, len(activations), figsize=(4 * len(activations), 3.8), squeeze=False,
                                layout="constrained")
    for axis, activation, image in zip(axes[0], activations, maps):
        shown = axis.imshow(image, aspect="auto", origin="lower", cmap="viridis", vmin=low, vmax=high,
                            extent=(0, image.shape[1] * every, 0.5, image.shape[0] + 0.5))
        axis.set_title(activation)
        axis.set_xlabel("step")
        axis.set_ylabel("layer")
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    figure.colorbar(shown, ax=list(axes[0]), label="log10 gradient norm")
    figure.suptitle(f"{depth}-layer MLPs: weight-gradient norm over training")
    return save_figure(figure, path)

