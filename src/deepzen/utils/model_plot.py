"""``plot_model(model, "model.png")``: a picture of a model's layer graph, drawn with matplotlib (Keras's
``keras.utils.plot_model`` needs graphviz; deepzen does not).

Each layer is a box (name, class and, with ``show_shapes``, the output shape); an arrow runs from each layer
to every layer that takes its output. Layers are placed in rows by their distance from the inputs.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn


def _graph(model: nn.Module) -> tuple[list[nn.Module], list[tuple[nn.Module, nn.Module]], dict[int, str]]:
    """(layers, edges between them, output shape text per layer) of a graph model, or a chain for others."""
    if hasattr(model, "connections"):
        return model.connections()
    layers = list(getattr(model, "layers", None) or list(model.children()) or [model])
    return layers, list(zip(layers, layers[1:])), {}


def plot_model(model: nn.Module, to_file: str | os.PathLike = "model.png", show_shapes: bool = False,
               show_dtype: bool = False, show_layer_names: bool = True, rankdir: str = "TB", dpi: int = 200,
               **kwargs: Any):
    """Draws ``model``'s layers and their connections to ``to_file`` (any format matplotlib writes: .png,
    .svg, .pdf) and returns the matplotlib ``Figure``.

    Args:
        model: a deepzen model (a graph model shows its graph; others show their layers in order).
        to_file: where to write the picture.
        show_shapes: add each layer's output shape.
        show_dtype: accepted for Keras compatibility (dtypes are not drawn).
        show_layer_names: put the layer's name above its class.
        rankdir: "TB" (top to bottom, the default) or "LR" (left to right).
        dpi: resolution of raster formats.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if rankdir not in ("TB", "LR"):
        raise ValueError(f"plot_model expects rankdir 'TB' or 'LR'. Received: rankdir={rankdir!r}")
    layers, edges, shapes = _graph(model)
    depth = {id(layer): 0 for layer in layers}
    for _ in range(len(layers)):  # longest path from the inputs; edges come in graph order
        changed = False
        for source, target in edges:
            if source is not target and depth[id(target)] < depth[id(source)] + 1 <= len(layers):
                depth[id(target)] = depth[id(source)] + 1
                changed = True
        if not changed:
            break
    rows: dict[int, list[nn.Module]] = {}
    for layer in layers:
        rows.setdefault(depth[id(layer)], []).append(layer)
    width = max(len(row) for row in rows.values())
    across: dict[int, float] = {}
    sources: dict[int, list[nn.Module]] = {}
    for source, target in edges:
        sources.setdefault(id(target), []).append(source)
    for level in sorted(rows):  # each row ordered by where its inputs sit, so fewer arrows cross
        placed = lambda layer: [across[id(s)] for s in sources.get(id(layer), []) if id(s) in across]  # noqa: E731
        row = sorted(rows[level], key=lambda layer: sum(placed(layer)) / len(placed(layer)) if placed(layer) else 0)
        for index, layer in enumerate(row):
            across[id(layer)] = (index + 0.5) * width / len(row)
    position = {key: (value, -depth[key]) if rankdir == "TB" else (depth[key], -value) for key, value in across.items()}

    def label(layer):
        name = getattr(layer, "name", None) or type(layer).__name__
        lines = [f"{name} ({type(layer).__name__})" if show_layer_names else type(layer).__name__]
        if show_shapes and id(layer) in shapes:
            lines.append(shapes[id(layer)])
        return "\n".join(lines)

    across_size, along_size = width * 3.2, len(rows) * 1.1
    figure = Figure(figsize=(across_size, along_size) if rankdir == "TB" else (along_size * 2.8, across_size / 2.2))
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_axis_off()
    xs = [p[0] for p in position.values()]
    ys = [p[1] for p in position.values()]
    axes.set_xlim(min(xs) - 0.9, max(xs) + 0.9)
    axes.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    boxes = {}
    for layer in layers:
        x, y = position[id(layer)]
        boxes[id(layer)] = axes.text(x, y, label(layer), ha="center", va="center", fontsize=8, zorder=2,
                                     bbox={"boxstyle": "round,pad=0.4", "facecolor": "#e8eef7", "edgecolor": "#34495e"})
    for source, target in edges:
        axes.annotate("", xy=position[id(target)], xytext=position[id(source)], zorder=3,
                      arrowprops={"arrowstyle": "-|>", "color": "#34495e", "patchA": boxes[id(source)],
                                  "patchB": boxes[id(target)], "shrinkA": 2, "shrinkB": 2,
                                  "connectionstyle": "arc3,rad=0.3" if source is target else "arc3"})
    figure.savefig(os.fspath(to_file), dpi=dpi)
    return figure
