"""Training curves as PNG files (matplotlib, imported only when a plot is drawn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (works without a screen)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: Any, path: str | Path, title: str | None = None) -> Path:
    """Draws each metric of a History (or its ``.history`` dict) against the epoch, train and validation
    in one panel per metric, and writes a PNG."""
    logs = getattr(history, "history", history)
    names = [key for key in logs if not key.startswith("val_") and key != "learning_rate"]
    if not names:
        raise ValueError("The history has no metrics to plot")
    plt = pyplot()
    figure, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for axis, name in zip(axes[0], names):
        epochs = range(1, len(logs[name]) + 1)
        axis.plot(epochs, logs[name], marker="o", markersize=3, label="train")
        if f"val_{name}" in logs:
            axis.plot(epochs, logs[f"val_{name}"], marker="o", markersize=3, label="validation")
        axis.set_xlabel("epoch")
        axis.set_title(name)
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return save_figure(figure, path)


def save_figure(figure: Any, path: str | Path) -> Path:
    """Writes a matplotlib figure as a PNG (creating the folder) and closes it, so nothing accumulates
    in pyplot; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    pyplot().close(figure)
    return path
