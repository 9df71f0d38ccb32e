"""Plots for image classifiers, as PNG files: a confusion matrix, misclassified examples, and the
feature maps of a convolution for one image. (Training curves: :func:`deepzen.training.plots.plot_history`.)

Each function writes its PNG and returns the matplotlib ``Figure`` (closed, so nothing accumulates
in pyplot; its axes can still be inspected or the figure saved again)::

    figure = plot_misclassified(images, y_true, y_pred, "misclassified.png", class_names=names)
    len(figure.axes)  # one panel per image
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from deepzen.training.plots import pyplot, save_figure


def display_image(image: np.ndarray, value_range: tuple[float, float] | None) -> tuple[np.ndarray, dict]:
    """``(C, H, W)`` -> what ``imshow`` takes: ``(H, W)`` grey with vmin/vmax, or ``(H, W, 3)`` in [0, 1]."""
    low, high = value_range if value_range is not None else (float(image.min()), float(image.max()))
    if image.shape[0] == 1:
        return image[0], {"cmap": "gray", "vmin": low, "vmax": high}
    return np.clip((image.transpose(1, 2, 0) - low) / max(high - low, 1e-12), 0.0, 1.0), {}


def image_panels(count: int, columns: int, panel_size: float = 1.6):
    """A figure with ``count`` image panels (axes off) in rows of ``columns``; unused cells removed."""
    plt = pyplot()
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(panel_size * columns, panel_size * rows + 0.4),
                                squeeze=False)
    axes = axes.ravel()
    for axis in axes[count:]:
        figure.delaxes(axis)
    for axis in axes[:count]:
        axis.set_axis_off()
    return figure, axes[:count]


def check_images(images: np.ndarray | torch.Tensor, where: str) -> np.ndarray:
    """``(N, C, H, W)`` images with C = 1 or 3 as a float NumPy array; a ValueError naming ``where`` otherwise."""
    images = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"{where} expects images (N, C, H, W) with C = 1 or 3. Received: shape {images.shape}")
    return images


def plot_confusion_matrix(matrix: np.ndarray | torch.Tensor, path: str | Path, *,
                          class_names: Sequence[str] | None = None, title: str | None = None):
    """Draws a ``(C, C)`` confusion matrix (rows = true class, columns = predicted class).

    Cells are coloured by the fraction of their row (the per-class recall on the diagonal) and
    labelled with the counts, so rare confusions stay visible next to large diagonals.

    Args:
        matrix: ``(C, C)`` counts, e.g. :func:`deepzen.vision.tasks.confusion_matrix` or the
            ``confusion_matrix`` metric's result.
        path: the PNG to write.
        class_names: C tick labels (default 0..C-1).
        title: figure title.

    Returns:
        The figure: one matrix panel and its colour bar.
    """
    matrix = matrix.cpu().numpy() if isinstance(matrix, torch.Tensor) else np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"plot_confusion_matrix expects a square (C, C) matrix. Received: shape {matrix.shape}")
    classes = matrix.shape[0]
    names = [str(c) for c in range(classes)] if class_names is None else [str(n) for n in class_names]
    if len(names) != classes:
        raise ValueError(f"plot_confusion_matrix expects {classes} class names. Received: {len(names)}")
    fractions = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    plt = pyplot()
    size = max(4.0, 0.55 * classes + 2.0)
    figure, axis = plt.subplots(figsize=(size + 1.0, size))
    shown = axis.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.04, label="fraction of the true class")
    axis.set_xticks(range(classes), names, rotation=45 if max(map(len, names)) > 2 else 0, ha="right"
                    if max(map(len, names)) > 2 else "center")
    axis.set_yticks(range(classes), names)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    for row in range(classes):
        for column in range(classes):
            if matrix[row, column]:
                axis.text(column, row, str(int(matrix[row, column])), ha="center", va="center", fontsize=8,
                          color="white" if fractions[row, column] > 0.5 else "black")
    axis.set_title(title or "confusion matrix")
    figure.tight_layout()
    save_figure(figure, path)
    return figure


def plot_misclassified(images: np.ndarray | torch.Tensor, y_true: Sequence[int], y_pred: Sequence[int],
                       path: str | Path, *, class_names: Sequence[str] | None = None,
                       confidences: Sequence[float] | None = None, columns: int = 6,
                       value_range: tuple[float, float] | None = None):
    """A grid of images titled "true → predicted (confidence)", one panel per image.

    Args:
        images: ``(N, C, H, W)`` with C = 1 or 3, e.g. the misclassified test images.
        y_true, y_pred: ``(N,)`` class ids.
        path: the PNG to write.
        class_names: names for the class ids.
        confidences: ``(N,)`` probability the model gave its (wrong) prediction.
        columns: panels per row.
        value_range: pixel values shown as black and white; ``None`` scales each image to its own
            minimum and maximum.

    Returns:
        The figure, with N panels.
    """
    images = check_images(images, "plot_misclassified")
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if not len(images) == len(y_true) == len(y_pred) or (confidences is not None and len(confidences) != len(images)):
        raise ValueError(f"plot_misclassified expects one label, prediction (and confidence) per image. Received: "
                         f"{len(images)} images, {len(y_true)} labels, {len(y_pred)} predictions")
    if not len(images):
        raise ValueError("plot_misclassified expects at least one image. Received: none")
    name = (lambda c: str(c)) if class_names is None else (lambda c: str(class_names[int(c)]))  # noqa: E731
    figure, axes = image_panels(len(images), columns)
    for index, axis in enumerate(axes):
        picture, options = display_image(images[index], value_range)
        axis.imshow(picture, **options)
        label = f"{name(y_true[index])} → {name(y_pred[index])}"
        if confidences is not None:
            label += f" ({float(confidences[index]):.0%})"
        axis.set_title(label, fontsize=8, color="firebrick")
    figure.suptitle("misclassified: true → predicted", fontsize=10)
    figure.tight_layout()
    save_figure(figure, path)
    return figure


def conv_layer_types() -> tuple[type, ...]:
    """The 2-D convolution classes: torch's and deepzen's (plain, depthwise, separable)."""
    from deepzen.layers.conv import Conv2D, DepthwiseConv2D, SeparableConv2D

    return nn.Conv2d, Conv2D, DepthwiseConv2D, SeparableConv2D


def _conv_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, module) for name, module in model.named_modules() if isinstance(module, conv_layer_types())]


def conv_layer(model: nn.Module, layer: str | nn.Module | None = None, *, which: str = "last",
               where: str = "grad_cam") -> tuple[str, nn.Module]:
    """``(name, module)`` of a 2-D convolution: by name, the module itself, or the first/last one.

    Raises:
        ValueError: no convolution in the model, or a name/module that is not in it (the message lists
            the convolutions' names).
    """
    convs = _conv_layers(model)
    names = ", ".join(name for name, _ in convs) or "none"
    if layer is None:
        if not convs:
            raise ValueError(f"{where} found no 2-D convolution in {type(model).__name__}; pass layer=")
        return convs[-1] if which == "last" else convs[0]
    named = dict(model.named_modules())
    if isinstance(layer, str):
        if layer not in named:
            raise ValueError(f"{where} expects layer to name a module of the model (convolutions: {names}). "
                             f"Received: layer={layer!r}")
        return layer, named[layer]
    found = [name for name, module in named.items() if module is layer]
    if not found:
        raise ValueError(f"{where} expects a layer inside the model. Received: a {type(layer).__name__} "
                         f"that is not one of its modules")
    return found[0], layer


def feature_maps(model: nn.Module, image: np.ndarray | torch.Tensor,
                 layer: str | nn.Module | None = None) -> tuple[str, torch.Tensor]:
    """The output of one layer for one image: ``(layer name, (C, H', W') tensor)``.

    Runs ``model`` in eval mode without gradients (its mode is restored) and reads the layer's
    output with a forward hook.

    Args:
        model: any module taking ``(1, C, H, W)`` images.
        image: ``(C, H, W)`` or ``(1, C, H, W)``, prepared as the model expects (e.g. normalized).
        layer: a name from ``model.named_modules()``, the layer itself, or ``None`` for the first
            2-D convolution.
    """
    name, module = conv_layer(model, layer, which="first", where="plot_feature_maps")
    image = torch.as_tensor(image)
    batch = image[None] if image.dim() == 3 else image[:1]  # (1, C, H, W)
    parameter = next(model.parameters(), None)
    if parameter is not None:
        batch = batch.to(parameter.device, parameter.dtype)
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _module, _inputs, output: captured.append(output))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(batch)
    finally:
        handle.remove()
        model.train(was_training)
    output = captured[0]
    if not isinstance(output, torch.Tensor) or output.dim() != 4:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(f"plot_feature_maps expects layer {name!r} to output (1, C, H, W) maps. Received: {shape}")
    return name, output[0].float().cpu()


def plot_feature_maps(model: nn.Module, image: np.ndarray | torch.Tensor, path: str | Path, *,
                      layer: str | nn.Module | None = None, max_maps: int = 32, columns: int = 8):
    """The input image and the first ``max_maps`` feature maps a layer computes from it.

    Args:
        model, image, layer: as for :func:`feature_maps`.
        path: the PNG to write.
        max_maps: at most this many channels are drawn.
        columns: panels per row.

    Returns:
        The figure, with ``1 + min(channels, max_maps)`` panels (the input first); each map is
        scaled to its own range (viridis).
    """
    if max_maps < 1:
        raise ValueError(f"plot_feature_maps expects max_maps >= 1. Received: max_maps={max_maps}")
    pixels = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    source = check_images(pixels.reshape(-1, *pixels.shape[-3:])[:1], "plot_feature_maps")[0]  # (C, H, W)
    name, maps = feature_maps(model, source, layer)
    maps = maps[:max_maps].numpy()  # (K, H', W')
    figure, axes = image_panels(1 + len(maps), columns)
    picture, options = display_image(source, None)
    axes[0].imshow(picture, **options)
    axes[0].set_title("input", fontsize=8)
    for channel, (axis, feature_map) in enumerate(zip(axes[1:], maps)):
        axis.imshow(feature_map, cmap="viridis")
        axis.set_title(f"#{channel}", fontsize=8)
    figure.suptitle(f"feature maps of {name}", fontsize=10)
    figure.tight_layout()
    save_figure(figure, path)
    return figure
