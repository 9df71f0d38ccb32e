"""Initialization: does where the weights start decide whether a deep network learns at all?

The textbook claims: with all weights zero every hidden unit of a layer computes the same thing and
receives the same gradient, so the units stay identical forever; small random weights such as
N(0, 0.01) shrink the signal at every layer, so a deep network's activations and gradients vanish;
Glorot (Glorot & Bengio 2010) and He (He et al. 2015, for ReLU) scale the weights by the layer's
fan so the signal keeps its size through depth.

Measured on a 10-layer MLP (ReLU by default): the standard deviation of every hidden layer's
activations and the norm of every layer's weight gradient on a fixed batch of training images, at
step 0 and after training; the largest difference between two units of a layer; test accuracy.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from deepzen.experiments.common import dense_layers, load_data, mlp, train
from deepzen.experiments.report import (TRAINING_COLUMNS, Column, ExperimentResult, join, number, percent, save_figure,
                                        write_report)
from deepzen.training.callbacks import Callback

LABELS = {"zeros": "zeros", "random_normal": "N(0, 0.01)", "glorot_uniform": "Glorot uniform",
          "glorot_normal": "Glorot normal", "he_normal": "He normal", "he_uniform": "He uniform",
          "lecun_normal": "LeCun normal", "orthogonal": "orthogonal", "ones": "ones"}


def layer_statistics(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, list[float]]:
    """Per-layer statistics of an MLP on one batch, in eval mode (the model's mode is restored).

    Args:
        model: a network of Dense layers (e.g. :func:`~deepzen.experiments.common.mlp`).
        x: ``(N, ...)`` inputs; y: ``(N,)`` labels.

    Returns:
        ``activation_std``: the standard deviation of each hidden layer's output (over samples and units);
        ``unit_difference``: per hidden layer, the largest ``|h[n, j] - h[n, 0]|`` over samples n and
        units j (0 when all units of the layer compute the same values);
        ``gradient_norm``: the L2 norm of the cross-entropy's gradient w.r.t. each Dense layer's
        weight, hidden layers then the output layer.
    """
    layers = dense_layers(model)
    outputs: list[torch.Tensor] = []
    handles = [layer.register_forward_hook(lambda module, inputs, output: outputs.append(output))
               for layer in layers[:-1]]
    was_training = model.training
    model.eval()
    try:
        loss = F.cross_entropy(model(x), y)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    gradients = torch.autograd.grad(loss, [layer.weight for layer in layers])
    return {"activation_std": [h.std().item() for h in outputs],  # host syncs: a few per variant
            "unit_difference": [(h - h[:, :1]).abs().max().item() for h in outputs],
            "gradient_norm": [g.norm().item() for g in gradients]}


class StepZeroStatistics(Callback):
    """Takes :func:`layer_statistics` when training begins (the model is built, nothing learned yet)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y
        self.statistics: dict[str, list[float]] = {}

    def on_train_begin(self, logs=None):
        self.statistics = layer_statistics(self.model, self.x.to(self.model.device), self.y.to(self.model.device))


def run(run_dir: str | Path, *, dataset: str = "auto", train_samples: int | None = 20000,
        test_samples: int | None = None, initializers: Sequence[str] = ("zeros", "random_normal", "glorot_uniform",
                                                                         "he_normal"),
        depth: int = 10, width: int = 128, activation: str = "relu", optimizer: str = "momentum",
        learning_rate: float = 0.01, epochs: int = 5, batch_size: int = 128, probe_samples: int = 1000,
        seed: int = 0, verbose: int = 1) -> ExperimentResult:
    """Trains the same MLP from each initialization and measures how the signal travels through it.

    Args:
        run_dir: the run folder.
        dataset: "auto", "mnist" or "digits".
        train_samples, test_samples: subset sizes (None: all).
        initializers: kernel initializer names (``deepzen.initializers``); biases start at zero.
        depth: Dense layers (``depth - 1`` hidden of ``width`` units, then the output layer).
        width: hidden units per layer.
        activation: hidden activation.
        optimizer, learning_rate: the optimizer name and its learning rate (the same for all).
        epochs, batch_size: training length.
        probe_samples: training images on which the per-layer statistics are measured.
        seed: seeds data subsets, weights and shuffling.
        verbose: 1 prints a line per variant.
    """
    from deepzen import optimizers

    start = time.perf_counter()
    run_dir = Path(run_dir)
    data = load_data(dataset, train_samples=train_samples, test_samples=test_samples, seed=seed)
    probe_x = torch.as_tensor(data.x_train[:probe_samples])
    probe_y = torch.as_tensor(data.y_train[:probe_samples])
    rows, before, after, curves = [], {}, {}, {}
    for name in initializers:
        label = LABELS.get(name, name)
        step_zero = StepZeroStatistics(probe_x, probe_y)
        trained = train(partial(mlp, data, depth=depth, width=width, activation=activation, initializer=name), data,
                        optimizer=optimizers.get(optimizer, learning_rate=learning_rate), epochs=epochs,
                        batch_size=batch_size, seed=seed, validation=(data.x_test, data.y_test),
                        callbacks=[step_zero])
        model = trained.model
        before[label] = step_zero.statistics
        after[label] = layer_statistics(model, probe_x.to(model.device), probe_y.to(model.device))
        curves[label] = trained.history.get("val_accuracy", [])
        rows.append({"variant": label, "test_accuracy": curves[label][-1] if curves[label] else None,
                     "train_loss": trained.history["loss"][-1] if trained.diverged_at is None else None,
                     "first_std": before[label]["activation_std"][0],
                     "last_std": before[label]["activation_std"][-1],
                     "first_gradient": before[label]["gradient_norm"][0],
                     "output_gradient": before[label]["gradient_norm"][-1],
                     "unit_difference": max(after[label]["unit_difference"]),
                     "diverged_at": trained.diverged_at, "seconds": trained.seconds})
        if verbose:
            print(f"initialization: {label}: test accuracy {percent(rows[-1]['test_accuracy'] or 0.0)} "
                  f"({trained.seconds:.0f} s)")

    figure = plot(before, after, curves, run_dir / "initialization.png", depth=depth)
    columns = [Column("test_accuracy", "test accuracy", "percent"),
               Column("train_loss", "final training loss"),
               Column("first_std", "activation std, hidden layer 1 (step 0)"),
               Column("last_std", f"activation std, hidden layer {depth - 1} (step 0)"),
               Column("first_gradient", "gradient norm, layer 1 (step 0)"),
               Column("output_gradient", f"gradient norm, layer {depth} (step 0)"),
               Column("unit_difference", "largest difference between two units of a layer (after training)"),
               *TRAINING_COLUMNS]
    result = ExperimentResult(
        name="initialization", title=f"Initialization of a {depth}-layer {activation} MLP",
        claim="Zero weights keep every hidden unit of a layer identical; small random weights make the signal "
              "and the gradients vanish with depth; Glorot and He scale the weights so the signal keeps its size.",
        data=data.describe(),
        settings={"initializers": list(initializers), "depth": depth, "width": width, "activation": activation,
                  "optimizer": optimizer, "learning_rate": learning_rate, "epochs": epochs,
                  "batch_size": batch_size, "probe_samples": probe_samples, "seed": seed},
        columns=columns, rows=rows, finding=finding(rows, before, data.majority_accuracy, epochs),
        figures=[(figure.name, "Per-layer activation spread and gradient norms at step 0 (solid) and after "
                               "training (dashed), and test accuracy per epoch.")],
        run_dir=run_dir, notes=[data.note] if data.note else [])
    result.seconds = time.perf_counter() - start
    write_report(result)
    return result


def finding(rows: list[dict], before: dict[str, dict], chance: float, epochs: int) -> str:
    """The paragraph of the report, from the measurements."""
    ranked = sorted(rows, key=lambda row: -(row["test_accuracy"] or 0.0))
    accuracy = join([f"{percent(row['test_accuracy'] or 0.0)} with {row['variant']}" for row in ranked])
    sentences = [f"After {epochs} epoch{'s' * (epochs != 1)} the test accuracy was {accuracy} "
                 f"(always answering the most frequent digit scores {percent(chance)})."]
    identical = [row for row in rows if row["unit_difference"] == 0.0]
    if identical:
        for row in identical:
            gradients = before[row["variant"]]["gradient_norm"][:-1]
            zero = sum(g == 0.0 for g in gradients)
            sentences.append(f"With {row['variant']}, the units of every hidden layer were still identical after "
                             f"training (largest difference between two units of a layer: "
                             f"{number(row['unit_difference'])}); at step 0 the weight gradients of "
                             f"{zero} of the {len(gradients)} hidden layers were exactly 0.")
    else:
        smallest = min(rows, key=lambda row: row["unit_difference"])
        sentences.append(f"No initialization left identical units: the smallest largest-difference between two "
                         f"units of a layer was {number(smallest['unit_difference'])} ({smallest['variant']}).")
    spread = []
    for row in rows:
        first, last = row["first_std"], row["last_std"]
        if first == 0.0:
            continue
        change = last / first
        trend = (f"shrinking {number(1 / change)}-fold" if change < 1 else f"growing {number(change)}-fold")
        spread.append(f"from {number(first)} to {number(last)} with {row['variant']} ({trend})")
    if spread:
        sentences.append(f"At step 0 the activations' standard deviation went from the first to the last hidden "
                         f"layer {join(spread)}.")
    gradients = [f"{number(row['first_gradient'])} with {row['variant']}" for row in rows]
    sentences.append(f"The first layer's gradient norm at step 0 was {join(gradients)}.")
    return " ".join(sentences)


def plot(before: dict[str, dict], after: dict[str, dict], curves: dict[str, list[float]], path: Path, *,
         depth: int) -> Path:
    """Three panels: activation std per hidden layer, gradient norm per layer, test accuracy per epoch."""
    from matplotlib.ticker import MaxNLocator

    from deepzen.training.plots import pyplot

    plt = pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = (("activation_std", "activation std (log scale)", "hidden layer"),
              ("gradient_norm", "weight-gradient norm (log scale)", "layer"))
    for axis, (key, title, xlabel) in zip(axes, panels):
        never_positive = []
        for index, label in enumerate(before):
            color = f"C{index}"
            for stats, style, when in ((before, "-", "step 0"), (after, "--", "trained")):
                values = np.asarray(stats[label][key], dtype=float)
                shown = np.where(values > 0, values, np.nan)  # a log scale cannot show 0
                axis.plot(np.arange(1, len(values) + 1), shown, style, color=color, marker="o", markersize=3,
                          label=f"{label} ({when})")
            if not any(v > 0 for stats in (before, after) for v in stats[label][key]):
                never_positive.append(label)
        axis.set_yscale("log")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel(xlabel)
        axis.set_title(title)
        axis.grid(alpha=0.3)
        if never_positive:
            axis.text(0.02, 0.02, f"exactly 0 in every layer (not drawn): {', '.join(never_positive)}",
                      transform=axis.transAxes, fontsize=8)
    axes[1].legend(fontsize=7, ncol=2)
    for index, (label, values) in enumerate(curves.items()):
        axes[2].plot(np.arange(1, len(values) + 1), values, color=f"C{index}", marker="o", markersize=3, label=label)
    axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[2].set_xlabel("epoch")
    axes[2].set_title("test accuracy")
    axes[2].set_ylim(0, 1)
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    figure.suptitle(f"Initialization of a {depth}-layer MLP")
    figure.tight_layout()
    return save_figure(figure, path)

