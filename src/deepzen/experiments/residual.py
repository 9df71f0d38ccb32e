"""Residual connections: does a deeper plain network train worse, and do shortcuts fix it?

The claim (He et al. 2016, "the degradation problem"): stacking more layers onto a plain network —
even with batch normalization, so gradients do not simply vanish — makes its *training* error
higher, not lower; adding identity shortcuts (each block learns a residual ``F(x)`` and outputs
``F(x) + x``) lets the deeper network train at least as well as the shallower one.

Measured on CIFAR-style networks of depth ``6n + 2`` (8, 20 and 56 layers by default) sized for
MNIST on a CPU: a strided 3x3 stem, three stages of ``n`` two-convolution blocks with ``width``,
``2 * width`` and ``4 * width`` channels, global average pooling and a linear classifier. The plain
and the residual network of a depth have the same layers and parameters — the only difference is
the parameter-free shortcut (option A of the paper: identity, or subsample and zero-pad where a
stage changes shape). Reported: the training error and loss at the end against depth, the loss of
every step, and the test error.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from deepzen.experiments.common import CosineDecay, evaluate, load_data, smooth, smoothing_window, train
from deepzen.experiments.report import (TRAINING_COLUMNS, Column, ExperimentResult, join, percent, save_figure,
                                        write_report)


class Block(nn.Module):
    """Two 3x3 convolutions with batch normalization, plus (when residual) a shortcut:
    ``relu(bn(conv(relu(bn(conv(x))))) [+ shortcut(x)])``.

    Args:
        in_channels, out_channels: channels in and out.
        stride: stride of the first convolution (2 halves H and W).
        residual: add the option-A shortcut (identity, or subsample + zero channels).

    Call arguments:
        x: (N, in_channels, H, W). Returns (N, out_channels, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, residual: bool):
        from deepzen.vision.models.resnet import make_shortcut

        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = make_shortcut("zero_pad", in_channels, out_channels, stride) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return torch.relu(out)


class DepthNet(nn.Module):
    """A plain or residual CNN of ``depth = 6n + 2`` weighted layers (stem, 6n convolutions, classifier).

    Args:
        depth: 8, 14, 20, ... (``(depth - 2) % 6 == 0``).
        residual: use shortcuts.
        width: channels of the first stage (then 2x and 4x).
        in_channels, num_classes: image channels and classes.

    Call arguments:
        x: (N, in_channels, H, W). Returns (N, num_classes) logits.
    """

    def __init__(self, depth: int, residual: bool, width: int = 8, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"Expected depth = 6n + 2 with n >= 1 (8, 14, 20, ...). Received: depth={depth}")
        blocks_per_stage = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())  # (N, width, H/2, W/2)
        blocks, channels = [], width
        for stage, stage_width in enumerate((width, 2 * width, 4 * width)):
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(Block(channels, stage_width, stride, residual))
                channels = stage_width
        self.blocks = nn.Sequential(*blocks)  # (N, 4 * width, H/8, W/8)
        self.classifier = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.blocks(self.stem(x)).mean(dim=(2, 3))  # (N, 4 * width)
        return self.classifier(features)


def depth_model(data, depth: int, residual: bool, width: int):
    """A :class:`DepthNet` for ``data``'s images and classes, with the ``fit`` verbs (``deepzen.models.Model``)."""
    from deepzen.models import Model

    kind = "residual" if residual else "plain"
    return Model(DepthNet(depth, residual, width, data.input_shape[0], data.num_classes), name=f"{kind}_{depth}")


def run(run_dir: str | Path, *, dataset: str = "auto", train_samples: int | None = 10000,
        test_samples: int | None = None, depths: Sequence[int] = (8, 20, 56), width: int = 8,
        optimizer: str = "momentum", learning_rate: float = 0.05, cosine_decay: bool = True, epochs: int = 3,
        batch_size: int = 64, seed: int = 0, verbose: int = 1) -> ExperimentResult:
    """Trains a plain and a residual network of each depth and compares their training error.

    Args:
        run_dir: the run folder.
        dataset: "auto", "mnist" or "digits".
        train_samples, test_samples: subset sizes (None: all).
        depths: network depths ``6n + 2``.
        width: channels of the first stage.
        optimizer, learning_rate: the same for every network.
        cosine_decay: lower the learning rate to 0 along a cosine over training (so the final
            training error is not that of a noisy last step); False keeps it constant.
        epochs, batch_size: training length.
        seed: seeds data subsets, weights and shuffling.
        verbose: 1 prints a line per network.
    """
    from deepzen import optimizers

    start = time.perf_counter()
    run_dir = Path(run_dir)
    data = load_data(dataset, train_samples=train_samples, test_samples=test_samples, seed=seed)
    window = smoothing_window(data, batch_size)
    rows, curves = [], {}
    for residual in (False, True):
        for depth in depths:
            kind = "residual" if residual else "plain"
            label = f"{kind}-{depth}"
            trained = train(partial(depth_model, data, depth, residual, width), data,
                            optimizer=optimizers.get(optimizer, learning_rate=learning_rate), epochs=epochs,
                            batch_size=batch_size, seed=seed, callbacks=[CosineDecay()] if cosine_decay else [])
            curves[label] = smooth(trained.steps.losses, window)
            train_loss, train_accuracy = evaluate(trained.model, data.x_train, data.y_train)
            _, test_accuracy = evaluate(trained.model, data.x_test, data.y_test)
            done = trained.diverged_at is None
            rows.append({"variant": label, "kind": kind, "depth": depth,
                         "parameters": sum(p.numel() for p in trained.model.parameters()),
                         "train_error": 1.0 - train_accuracy,
                         "train_loss": train_loss if done else None,
                         "last_epoch_loss": trained.history["loss"][-1] if done else None,
                         "test_error": 1.0 - test_accuracy, "diverged_at": trained.diverged_at,
                         "seconds": trained.seconds})
            if verbose:
                print(f"residual: {label}: training error {percent(rows[-1]['train_error'])}, test error "
                      f"{percent(rows[-1]['test_error'])} ({trained.seconds:.0f} s)")

    figure = plot(rows, curves, run_dir / "residual.png")
    columns = [Column("kind", "network", "text"),
               Column("depth", "layers", "integer"),
               Column("parameters", "parameters", "integer"),
               Column("train_error", "training error", "percent"),
               Column("train_loss", "training loss"),
               Column("last_epoch_loss", f"mean step loss, epoch {epochs}"),
               Column("test_error", "test error", "percent"),
               *TRAINING_COLUMNS]
    result = ExperimentResult(
        name="residual", title="Plain vs residual networks of growing depth",
        claim="A deeper plain network (with batch normalization) reaches a higher training error than a shallower "
              "one — the degradation problem; with identity shortcuts the deeper network trains at least as well.",
        data=data.describe(),
        settings={"depths": list(depths), "width": width, "optimizer": optimizer, "learning_rate": learning_rate,
                  "cosine_decay": cosine_decay, "epochs": epochs, "batch_size": batch_size,
                  "smoothing_window": window, "seed": seed},
        columns=columns, rows=rows, finding=finding(rows, epochs),
        figures=[(figure.name, "Training error (end of training, all training images) against depth, and the "
                               f"training loss of every step (moving average over {window} steps).")],
        run_dir=run_dir, notes=[data.note] if data.note else [])
    result.seconds = time.perf_counter() - start
    write_report(result)
    return result


def _trend(rows: list[dict]) -> str:
    """How the training error changed from the shallowest to the deepest network of one kind."""
    errors = [row["train_error"] for row in rows]
    if all(b > a for a, b in zip(errors, errors[1:])):
        return "rose with every step in depth"
    if all(b < a for a, b in zip(errors, errors[1:])):
        return "fell with every step in depth"
    return "rose overall" if errors[-1] > errors[0] else "fell overall" if errors[-1] < errors[0] else "was unchanged"


def finding(rows: list[dict], epochs: int) -> str:
    """The paragraph of the report, from the measurements."""
    sentences = []
    by_kind = {kind: sorted((row for row in rows if row["kind"] == kind), key=lambda row: row["depth"])
               for kind in ("plain", "residual")}
    for kind, group in by_kind.items():
        if not group:
            continue
        errors = join([f"{percent(row['train_error'])} at {row['depth']} layers" for row in group])
        trend = f"; it {_trend(group)}" if len(group) > 1 else ""
        sentences.append(f"After {epochs} epoch{'s' * (epochs != 1)} the {kind} networks' training error was "
                         f"{errors}{trend}.")
    pairs = [(plain, next((r for r in by_kind["residual"] if r["depth"] == plain["depth"]), None))
             for plain in by_kind["plain"]]
    pairs = [(plain, residual) for plain, residual in pairs if residual is not None]
    if pairs:
        lower = [str(plain["depth"]) for plain, residual in pairs if residual["train_error"] < plain["train_error"]]
        compared = join([str(plain["depth"]) for plain, _ in pairs])
        sentences.append(f"The residual network had the lower training error at "
                         f"{join(lower) + ' layers' if lower else 'no depth'} (of {compared}).")
        plain, residual = pairs[-1]
        sentences.append(f"At {plain['depth']} layers: plain {percent(plain['train_error'])} vs residual "
                         f"{percent(residual['train_error'])} training error, {percent(plain['test_error'])} vs "
                         f"{percent(residual['test_error'])} test error.")
    diverged = [f"{row['variant']} (step {row['diverged_at']})" for row in rows if row["diverged_at"] is not None]
    if diverged:
        sentences.append(f"The loss became non-finite in: {join(diverged)}.")
    return " ".join(sentences)


def plot(rows: list[dict], curves: dict[str, np.ndarray], path: Path) -> Path:
    """Two panels: training error against depth (plain vs residual), smoothed step losses."""
    from deepzen.training.plots import pyplot

    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    depths = sorted({row["depth"] for row in rows})
    for kind, style, color in (("plain", "--", "grey"), ("residual", "-", "black")):
        group = sorted((row for row in rows if row["kind"] == kind), key=lambda row: row["depth"])
        axes[0].plot([row["depth"] for row in group], [100 * row["train_error"] for row in group], style, marker="o",
                     color=color, label=kind)
    axes[0].set_xticks(depths)
    axes[0].set_xlabel("layers")
    axes[0].set_ylabel("training error (%)")
    axes[0].set_title("training error against depth")
    for label, losses in curves.items():
        kind, depth = label.split("-")
        shown = np.where(np.isfinite(losses) & (losses > 0), losses, np.nan)
        axes[1].plot(np.arange(1, len(shown) + 1), shown, "--" if kind == "plain" else "-",
                     color=f"C{depths.index(int(depth)) % 10}", label=label)
    axes[1].set_yscale("log")
    axes[1].set_xlabel("step")
    axes[1].set_title("training loss (dashed: plain, solid: residual)")
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)

