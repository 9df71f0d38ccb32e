"""Seeing inside a trained classifier: which inputs it gets wrong, and which pixels (or words) decide.

Functions return arrays; the ``plot_*`` functions write PNGs; :func:`interpret_images` writes them
all for a set of images (what ``deepzen interpret RUN [IMAGES]`` calls)::

    order = top_losses(model, x_test, y_test, k=9)          # the confident mistakes first
    heat = grad_cam(model, x_test[:8])                       # (8, H, W), last conv layer by default
    heat = saliency_map(model, x_test[:8], target=y_test[:8])
    drop = occlusion_sensitivity(model, x_test[:8], window=7, stride=3)
    plot_heatmaps(x_test[:8], heat, "grad_cam.png")

- :func:`saliency_map`: the largest absolute gradient of the class score over the channels of
  each pixel (Simonyan, Vedaldi & Zisserman 2014).
- :func:`grad_cam`: the feature maps of a convolution weighted by the spatially averaged gradient of
  the class score, summed over channels, ReLU (Selvaraju et al. 2017).
- :func:`occlusion_sensitivity`: how much the class probability drops when a square patch is
  replaced by a constant (Zeiler & Fergus 2014).
- :func:`top_losses`: the images with the largest cross-entropy loss (as fastai's ``top_losses``).
- :func:`attention_weights`: a text classifier's attention over its tokens (any model whose
  ``forward`` takes ``return_attention_scores=True``, e.g. the BiLSTM-attention classifier).

The models take inputs as they were trained (e.g. normalized images); every function runs the
model in eval mode and restores its mode. For run folders, :func:`interpret_run` (images) and
:func:`interpret_text_run` (texts) read the model, the preprocessing and, where :func:`run_test_set`
can rebuild it, the test set, and write the PNGs into ``RUN/interpret``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepzen.data.images import load_digits_split
from deepzen.data.text import Vocab, WordTokenizer, pad_ids
from deepzen.runs import model_file, read_json
from deepzen.training.plots import pyplot, save_figure
from deepzen.training.serialization import load_model
from deepzen.vision import plots
from deepzen.vision.plots import conv_layer
from deepzen.vision.tasks import DATASETS, RunImages, confusion_matrix, load_image_data, network, run_images

ArrayLike = np.ndarray | torch.Tensor


# -- helpers --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _as_batch(model: nn.Module, images: ArrayLike, where: str) -> torch.Tensor:
    """``(N, C, H, W)`` (or one ``(C, H, W)`` image) as a float tensor on the model's device.

    Models with channels-last image layers are refused: their maps are (N, H, W, C), and reading them as
    channels first would give wrong maps without an error.
    """
    last = next((name for name, module in model.named_modules() if getattr(module, "channels_last", False) is True),
                None)
    if last is not None:
        raise ValueError(f"{where} expects a channels-first model (PyTorch's layout, deepzen's default). "
                         f"Received: layer {last!r} with data_format='channels_last'")
    batch = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if batch.dim() == 3:
        batch = batch[None]
    if batch.dim() != 4:
        raise ValueError(f"{where} expects images (N, C, H, W). Received: shape {tuple(batch.shape)}")
    parameter = next(model.parameters(), None)
    return batch.to(parameter.device if parameter is not None else "cpu", torch.float32)


def _logits(model: nn.Module, batch: torch.Tensor, where: str) -> torch.Tensor:
    logits = model(batch)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"{where} expects a classifier returning (N, classes) logits. Received: {shape}")
    return logits


def _targets(target: int | Sequence[int] | ArrayLike | None, logits: torch.Tensor, where: str) -> torch.Tensor:
    """``(N,)`` class ids: the predicted classes for ``None``, one id for every image, or one id per image."""
    count, classes = logits.shape
    if target is None:
        return logits.argmax(-1)
    ids = torch.as_tensor(np.asarray(target) if not isinstance(target, torch.Tensor) else target).long()
    ids = ids.reshape(-1).to(logits.device)
    if ids.numel() == 1:
        ids = ids.expand(count)
    if ids.numel() != count or bool(((ids < 0) | (ids >= classes)).any()):
        raise ValueError(f"{where} expects target to be None, one class id or {count} class ids in [0, {classes}). "
                         f"Received: {ids.tolist()}")
    return ids


# -- attributions ---------------------------------------------------------------------------------------
def saliency_map(model: nn.Module, images: ArrayLike, target: int | ArrayLike | None = None) -> np.ndarray:
    """Vanilla gradient saliency: ``max_c |d score_target / d x[c, i, j]|``.

    Args:
        model: a classifier on ``(N, C, H, W)`` returning ``(N, classes)`` logits.
        images: ``(N, C, H, W)`` or ``(C, H, W)``, prepared as the model expects.
        target: the class whose logit is explained: ``None`` (the predicted class), one id, or N ids.

    Returns:
        ``(N, H, W)`` float32, non-negative.
    """
    model = network(model)
    batch = _as_batch(model, images, "saliency_map").requires_grad_(True)
    with _eval_mode(model), torch.enable_grad():
        logits = _logits(model, batch, "saliency_map")
        scores = logits.gather(1, _targets(target, logits, "saliency_map")[:, None])  # (N, 1)
        # Images are independent in eval mode, so the gradient of the sum is each image's own gradient.
        (gradient,) = torch.autograd.grad(scores.sum(), batch)
    return gradient.abs().amax(dim=1).cpu().numpy()  # (N, H, W)


def grad_cam(model: nn.Module, images: ArrayLike, target: int | ArrayLike | None = None,
             layer: str | nn.Module | None = None, *, upsample: bool = True) -> np.ndarray:
    """Grad-CAM: ``relu(sum_k alpha_k A_k)`` with ``alpha_k`` the mean over positions of ``d score / d A_k``.

    ``A`` is the output of ``layer`` (what the module returns, before any activation that follows it
    as a separate module; an in-place activation after it does not change what is read).

    Args:
        model: a classifier on ``(N, C, H, W)`` returning ``(N, classes)`` logits.
        images: ``(N, C, H, W)`` or ``(C, H, W)``, prepared as the model expects.
        target: the class explained: ``None`` (the predicted class), one id, or N ids.
        layer: a convolution by name (``model.named_modules()``) or the module; default the last one.
        upsample: resize the maps bilinearly to the input's H x W (else keep the layer's H' x W').

    Returns:
        ``(N, H, W)`` (or ``(N, H', W')``) float32, non-negative, not normalized.
    """
    model = network(model)
    name, module = conv_layer(model, layer)
    batch = _as_batch(model, images, "grad_cam")
    captured: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise ValueError(f"grad_cam expects layer {name!r} to output (N, C, H, W) maps")
        captured.append(output)
        return output.clone()  # later in-place activations change the clone, not the maps read here

    handle = module.register_forward_hook(keep)
    try:
        with _eval_mode(model), torch.enable_grad():
            logits = _logits(model, batch, "grad_cam")
            scores = logits.gather(1, _targets(target, logits, "grad_cam")[:, None])
            (gradient,) = torch.autograd.grad(scores.sum(), captured[0])  # (N, K, H', W')
    finally:
        handle.remove()
    weights = gradient.mean(dim=(2, 3), keepdim=True)  # (N, K, 1, 1)
    cam = torch.relu((weights * captured[0].detach()).sum(dim=1, keepdim=True))  # (N, 1, H', W')
    if upsample:
        cam = F.interpolate(cam, size=batch.shape[-2:], mode="bilinear", align_corners=False)
    return cam[:, 0].cpu().numpy()


def occlusion_sensitivity(model: nn.Module, images: ArrayLike, target: int | ArrayLike | None = None, *,
                          window: int | None = None, stride: int | None = None, baseline: float = 0.0,
                          batch_size: int = 256) -> np.ndarray:
    """How much the target's probability drops when a ``window`` x ``window`` patch is set to ``baseline``.

    The window slides with ``stride`` (the last position touches the border, so every pixel is
    covered); each pixel gets the mean drop of the windows that cover it.

    Args:
        model: a classifier on ``(N, C, H, W)`` returning ``(N, classes)`` logits.
        images: ``(N, C, H, W)`` or ``(C, H, W)``, prepared as the model expects.
        target: the class explained: ``None`` (the predicted class), one id, or N ids.
        window: patch size (default a quarter of the smaller side, at least 1).
        stride: step between patches (default half the window, at least 1).
        baseline: the value the patch is filled with; for images normalized per channel 0 is the
            training set's mean colour.
        batch_size: occluded images per forward pass.

    Returns:
        ``(N, H, W)`` float32: ``p(target | image) - mean p(target | occluded image)`` over the windows
        covering each pixel (positive where hiding the pixel hurts the class).
    """
    model = network(model)
    batch = _as_batch(model, images, "occlusion_sensitivity")
    count, _, height, width = batch.shape
    window = window or max(1, min(height, width) // 4)
    stride = stride or max(1, window // 2)
    if not (isinstance(window, int) and isinstance(stride, int) and 1 <= window <= min(height, width) and stride >= 1):
        raise ValueError(f"occlusion_sensitivity expects 1 <= window <= {min(height, width)} and stride >= 1. "
                         f"Received: window={window}, stride={stride}")

    def starts(size: int) -> list[int]:
        return sorted(set(range(0, size - window + 1, stride)) | {size - window})

    positions = [(top, left) for top in starts(height) for left in starts(width)]
    drop = torch.zeros(count, height, width)
    covered = torch.zeros(height, width)
    with _eval_mode(model), torch.no_grad():
        logits = _logits(model, batch, "occlusion_sensitivity")
        classes = _targets(target, logits, "occlusion_sensitivity")
        original = torch.softmax(logits.float(), -1).gather(1, classes[:, None])[:, 0].cpu()  # (N,)
        for index in range(count):
            occluded = batch[index].expand(len(positions), -1, -1, -1).clone()  # (P, C, H, W)
            for row, (top, left) in enumerate(positions):
                occluded[row, :, top:top + window, left:left + window] = baseline
            probabilities = torch.cat([torch.softmax(model(part).float(), -1)[:, classes[index]]
                                       for part in occluded.split(batch_size)]).cpu()  # (P,)
            for (top, left), probability in zip(positions, (original[index] - probabilities).tolist()):
                drop[index, top:top + window, left:left + window] += probability
    for top, left in positions:
        covered[top:top + window, left:left + window] += 1
    return (drop / covered).numpy()


def predict_logits(model: nn.Module, x: ArrayLike, batch_size: int = 256, *,
                   where: str = "predict_logits") -> torch.Tensor:
    """``(N, classes)`` float32 logits on the CPU, computed in eval mode in batches without gradients."""
    model = network(model)
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    inputs = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    with _eval_mode(model), torch.no_grad():
        return torch.cat([_logits(model, part.to(device, torch.float32 if part.is_floating_point() else part.dtype),
                                  where).float().cpu() for part in inputs.split(batch_size)])


@dataclass
class TopLosses:
    """The images with the largest loss, largest first.

    Attributes:
        indices: ``(k,)`` positions in the data.
        losses: ``(k,)`` cross-entropy of each.
        y_true: ``(k,)`` labels.
        y_pred: ``(k,)`` predicted classes.
        confidence: ``(k,)`` probability of the predicted class.
        true_probability: ``(k,)`` probability of the true class.
    """

    indices: np.ndarray
    losses: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    confidence: np.ndarray
    true_probability: np.ndarray


def top_losses(model: nn.Module, x: ArrayLike, y: ArrayLike, k: int = 9, batch_size: int = 256) -> TopLosses:
    """The ``k`` examples with the largest cross-entropy loss, as fastai's ``top_losses``.

    The loss is ``-log p(true class)``, so the top of the list is the mistakes the model makes with
    most confidence; ties keep the data's order.

    Args:
        model: a classifier returning ``(N, classes)`` logits.
        x: ``(N, ...)`` inputs as the model expects them.
        y: ``(N,)`` integer labels.
        k: how many (at most N).
        batch_size: examples per forward pass.
    """
    if len(x) != len(np.asarray(y).reshape(-1)):
        raise ValueError(f"top_losses expects one label per example. Received: {len(x)} examples, "
                         f"{len(np.asarray(y).reshape(-1))} labels")
    return rank_losses(predict_logits(model, x, batch_size, where="top_losses"), y, k)


def rank_losses(logits: torch.Tensor, y: ArrayLike, k: int = 9) -> TopLosses:
    """:func:`top_losses` from ``(N, classes)`` logits already computed."""
    labels = torch.as_tensor(np.asarray(y)).long().reshape(-1)
    if len(labels) != len(logits) or not len(labels):
        raise ValueError(f"top_losses expects one label per example and at least one example. Received: "
                         f"{len(logits)} examples, {len(labels)} labels")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"top_losses expects k to be a positive integer. Received: k={k!r}")
    logits = logits.float().cpu()
    if bool(((labels < 0) | (labels >= logits.shape[1])).any()):
        raise ValueError(f"top_losses expects labels in [0, {logits.shape[1]}). Received: values "
                         f"{labels.min().item()}..{labels.max().item()}")
    losses = F.cross_entropy(logits, labels, reduction="none")  # (N,)
    order = torch.argsort(losses, descending=True, stable=True)[:k]
    probabilities = torch.softmax(logits[order], -1)
    return TopLosses(indices=order.numpy(), losses=losses[order].numpy(), y_true=labels[order].numpy(),
                     y_pred=probabilities.argmax(-1).numpy(), confidence=probabilities.amax(-1).numpy(),
                     true_probability=probabilities.gather(1, labels[order][:, None])[:, 0].numpy())


def attention_weights(model: nn.Module, ids: ArrayLike) -> np.ndarray:
    """The attention a text classifier pays to each token: ``(N, T)``, rows sum to 1 over real tokens.

    Args:
        model: a classifier whose ``forward(ids, return_attention_scores=True)`` returns
            ``(logits, weights)`` (the BiLSTM-attention classifier does).
        ids: ``(N, T)`` token ids, post-padded with 0.
    """
    module = network(model)
    ids = torch.as_tensor(np.asarray(ids) if not isinstance(ids, torch.Tensor) else ids).long()
    parameter = next(module.parameters(), None)
    ids = ids.to(parameter.device if parameter is not None else "cpu")
    with _eval_mode(module), torch.no_grad():
        try:
            output = module(ids, return_attention_scores=True)
        except TypeError as error:
            raise ValueError(f"attention_weights expects a classifier with attention (its forward takes "
                             f"return_attention_scores=True). Received: {type(module).__name__} ({error})") from error
    if not (isinstance(output, tuple) and len(output) == 2 and output[1].shape == ids.shape):
        raise ValueError(f"attention_weights expects (logits, (N, T) weights) from {type(module).__name__}")
    return output[1].float().cpu().numpy()


# -- plots ----------------------------------------------------------------------------------------------
def plot_heatmaps(images: ArrayLike, maps: ArrayLike, path: str | Path, *, titles: Sequence[str] | None = None,
                  title: str = "", columns: int = 4, alpha: float = 0.5):
    """Each image beside itself with its heat map laid over it (each map scaled to its own maximum).

    Args:
        images: ``(N, C, H, W)`` with C = 1 or 3.
        maps: ``(N, H, W)`` attributions (saliency, Grad-CAM, occlusion).
        path: the PNG to write.
        titles: one title per image.
        title: the figure's title.
        columns: image/overlay pairs per row.
        alpha: opacity of the heat map.

    Returns:
        The figure, with 2N panels.
    """
    images = plots.check_images(images, "plot_heatmaps")
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"plot_heatmaps expects maps (N, H, W) = {(images.shape[0], *images.shape[2:])}. "
                         f"Received: {maps.shape}")
    figure, axes = plots.image_panels(2 * len(images), 2 * columns, panel_size=2.0)
    for index, image in enumerate(images):
        picture, options = plots.display_image(image, None)
        axes[2 * index].imshow(picture, **options)
        axes[2 * index + 1].imshow(picture, **options)
        scale = float(np.abs(maps[index]).max()) or 1.0
        axes[2 * index + 1].imshow(maps[index] / scale, cmap="jet", alpha=alpha, vmin=min(0.0, maps[index].min()
                                   / scale), vmax=1.0)
        if titles is not None:
            axes[2 * index].set_title(str(titles[index]), fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    save_figure(figure, path)
    return figure


def plot_top_losses(images: ArrayLike, found: TopLosses, path: str | Path, *,
                    class_names: Sequence[str] | None = None, columns: int = 6):
    """The top-loss images titled "predicted / true / loss / probability of the true class" (fastai's layout).

    Args:
        images: ``(k, C, H, W)``: the images at ``found.indices``, ready to show.
        found: what :func:`top_losses` returned.
        path: the PNG to write.
        class_names: names of the class ids.
        columns: panels per row.
    """
    images = plots.check_images(images, "plot_top_losses")
    if len(images) != len(found.indices):
        raise ValueError(f"plot_top_losses expects one image per top loss ({len(found.indices)}). "
                         f"Received: {len(images)}")
    name = (lambda c: str(int(c))) if class_names is None else (lambda c: str(class_names[int(c)]))  # noqa: E731
    figure, axes = plots.image_panels(len(images), columns, panel_size=1.9)
    for index, axis in enumerate(axes):
        picture, options = plots.display_image(images[index], None)
        axis.imshow(picture, **options)
        axis.set_title(f"{name(found.y_pred[index])} / {name(found.y_true[index])}\n"
                       f"{found.losses[index]:.2f} / {found.true_probability[index]:.2f}", fontsize=8,
                       color="firebrick" if found.y_pred[index] != found.y_true[index] else "black")
    figure.suptitle("top losses: predicted / true / loss / probability of the true class", fontsize=10)
    figure.tight_layout()
    save_figure(figure, path)
    return figure


def plot_filters(model: nn.Module, path: str | Path, *, layer: str | nn.Module | None = None,
                 max_filters: int = 64, columns: int = 8):
    """The kernels of a convolution (default the first), one panel per output channel.

    One- and three-channel kernels are shown as grey and colour images; other kernels as the mean
    over their input channels. Each kernel is scaled to its own range.

    Returns:
        The figure, with ``min(out_channels, max_filters)`` panels.
    """
    model = network(model)
    name, module = conv_layer(model, layer, which="first", where="plot_filters")
    # torch's and deepzen's Conv2D keep the kernel as ``weight`` (K, C, kh, kw); separable ones in a sub-layer.
    kernel = next((m.weight for m in module.modules()
                   if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() == 4), None)
    if kernel is None:
        raise ValueError(f"plot_filters expects layer {name!r} to hold a (K, C, kh, kw) kernel (is it built?)")
    kernels = kernel.detach().float().cpu().numpy()[:max_filters]  # (K, C, kh, kw)
    if kernels.shape[1] not in (1, 3):
        kernels = kernels.mean(axis=1, keepdims=True)
    figure, axes = plots.image_panels(len(kernels), columns, panel_size=1.0)
    for index, axis in enumerate(axes):
        picture, options = plots.display_image(kernels[index], None)
        axis.imshow(picture, **options)
    figure.suptitle(f"filters of {name} {tuple(kernel.shape)}", fontsize=10)
    figure.tight_layout()
    save_figure(figure, path)
    return figure


def plot_attention(tokens: Sequence[Sequence[str]], weights: ArrayLike, path: str | Path, *,
                   titles: Sequence[str] | None = None):
    """Each sentence as a row of tokens shaded by their attention weight (darker = more; the darkest shade is
    the larger of the row's largest weight and twice the uniform weight 1/T).

    Args:
        tokens: N token lists.
        weights: ``(N, T)`` weights, ``T >= max(len(t) for t in tokens)`` (padding is ignored).
        path: the PNG to write.
        titles: one line above each sentence (e.g. the predicted class).
    """
    weights = np.asarray(weights, dtype=np.float32)
    if weights.ndim != 2 or len(weights) != len(tokens) or any(len(t) > weights.shape[1] for t in tokens):
        raise ValueError(f"plot_attention expects (N, T) weights for {len(tokens)} sentences of at most T tokens. "
                         f"Received: weights {weights.shape}, longest sentence {max(map(len, tokens), default=0)}")
    plt = pyplot()
    longest = max(map(len, tokens), default=1)
    figure, axes = plt.subplots(len(tokens), 1, figsize=(max(4.0, 0.9 * longest), 1.1 * len(tokens) + 0.3),
                                squeeze=False)
    for index, (axis, words) in enumerate(zip(axes[:, 0], tokens)):
        row = weights[index, :len(words)]
        # Full colour at twice the uniform weight (or the largest weight): even attention shows as mid-tone.
        top = max(float(row.max()), 2.0 / len(words))
        axis.imshow(row[None], cmap="Reds", vmin=0.0, vmax=top, aspect="auto")
        for position, (word, weight) in enumerate(zip(words, row)):
            axis.text(position, 0, f"{word}\n{weight:.2f}", ha="center", va="center", fontsize=8,
                      color="white" if weight > 0.6 * top else "black")
        axis.set_xticks([])
        axis.set_yticks([])
        if titles is not None:
            axis.set_title(str(titles[index]), fontsize=9)
    figure.suptitle("attention over the tokens", fontsize=10)
    figure.tight_layout()
    save_figure(figure, path)
    return figure


# -- everything at once ---------------------------------------------------------------------------------
def interpret_images(model: nn.Module, images: ArrayLike, out_dir: str | Path, *,
                     labels: ArrayLike | None = None, test_x: ArrayLike | None = None,
                     test_y: ArrayLike | None = None, class_names: Sequence[str] | None = None,
                     layer: str | None = None, k: int = 12,
                     show: Callable[[np.ndarray], np.ndarray] | None = None) -> list[Path]:
    """Writes the interpretation PNGs of an image classifier into ``out_dir``.

    Files: ``saliency.png``, ``grad_cam.png``, ``occlusion.png`` (for ``images``, explaining the
    predicted class), ``filters.png`` (first convolution), ``feature_maps.png`` (first convolution,
    first image) and, with a labelled test set, ``confusion_matrix.png`` and ``top_losses.png``.

    Args:
        model: the classifier (a deepzen ``Model`` or an ``nn.Module``).
        images: ``(N, C, H, W)`` prepared as the model expects.
        out_dir: the folder written (created if needed).
        labels: optional ``(N,)`` true classes of ``images`` (shown in the titles).
        test_x, test_y: a labelled test set for the confusion matrix and the top losses.
        class_names: names of the class ids.
        layer: Grad-CAM's convolution (default the last).
        k: how many top losses.
        show: maps prepared images back to displayable ones (e.g. undoing the normalization).

    Returns:
        The paths written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = network(model)
    show = show or (lambda batch: np.asarray(batch))
    batch = _as_batch(net, images, "interpret_images")
    with _eval_mode(net), torch.no_grad():
        predicted = _logits(net, batch, "interpret_images").argmax(-1).cpu().numpy()
    name = (lambda c: str(int(c))) if class_names is None else (lambda c: str(class_names[int(c)]))  # noqa: E731
    titles = [f"predicted {name(p)}" + ("" if labels is None else f" (true {name(t)})")
              for p, t in zip(predicted, predicted if labels is None else np.asarray(labels))]
    pixels = show(batch.cpu().numpy())
    layer_name = conv_layer(net, layer)[0]
    written = []
    for file, heat, what in (("saliency.png", saliency_map(net, batch), "saliency (|input gradient|)"),
                             ("grad_cam.png", grad_cam(net, batch, layer=layer), f"Grad-CAM of {layer_name}"),
                             ("occlusion.png", occlusion_sensitivity(net, batch), "occlusion: probability drop")):
        plot_heatmaps(pixels, heat, out_dir / file, titles=titles, title=what)
        written.append(out_dir / file)
    plot_filters(net, out_dir / "filters.png")
    plots.plot_feature_maps(net, batch[0].cpu(), out_dir / "feature_maps.png")
    written += [out_dir / "filters.png", out_dir / "feature_maps.png"]
    if test_x is not None and test_y is not None:
        logits = predict_logits(net, test_x)  # (N, classes), once for both plots
        found = rank_losses(logits, test_y, k=min(k, len(test_y)))
        plot_top_losses(show(np.asarray(test_x)[found.indices]), found, out_dir / "top_losses.png",
                        class_names=class_names)
        matrix = confusion_matrix(np.asarray(test_y), logits.numpy())
        accuracy = float(np.trace(matrix) / max(matrix.sum(), 1))
        plots.plot_confusion_matrix(matrix, out_dir / "confusion_matrix.png", class_names=class_names,
                                    title=f"test accuracy {accuracy:.2%}")
        written += [out_dir / "top_losses.png", out_dir / "confusion_matrix.png"]
    return written


# -- run folders (what `deepzen interpret RUN` reads) ----------------------------------------------------
def run_test_set(run_dir: str | Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The prepared test images and labels of a run, rebuilt from its config, or ``None`` if unknown.

    Known: ``digits-cnn`` (the 8x8 digits' test split) and runs whose config names an image dataset
    (``dataset=mnist``, ``fashion-mnist``, ``kmnist``, ``cifar10``) and which wrote ``preprocessing.json``
    (the same subset draw and normalization as in training).
    """
    run_dir = Path(run_dir)
    saved = read_json(run_dir / "config.json", "the run's config")
    recipe, config = saved.get("recipe"), saved.get("config") or {}
    if recipe == "digits-cnn":
        _, _, x_test, y_test = load_digits_split(test_fraction=0.2, seed=config.get("seed", 0))  # the recipe's split
        return x_test, y_test
    if config.get("dataset") in DATASETS and (run_dir / "preprocessing.json").is_file():
        prepared = run_images(run_dir)
        data = load_image_data(config["dataset"], config.get("data"), train_samples=config.get("train_samples") or None,
                               test_samples=config.get("test_samples") or None, seed=config.get("seed", 0),
                               statistics=(prepared.mean.ravel().tolist(), prepared.std.ravel().tolist()))
        return data.x_test, data.y_test
    return None


def interpret_run(run_dir: str | Path, pixels: np.ndarray | None = None, *, model: nn.Module | None = None,
                  which: str = "auto", test_set: tuple[np.ndarray, np.ndarray] | None = None,
                  layer: str | None = None, k: int = 12, count: int = 8,
                  out_dir: str | Path | None = None) -> list[Path]:
    """Writes the PNGs of :func:`interpret_images` for an image classifier's run, in ``RUN/interpret``.

    Args:
        run_dir: the run folder.
        pixels: ``(N, C, H, W)`` images to explain, pixel values in [0, 1] (normalized here as the run's
            ``preprocessing.json`` says); default the first ``count`` test images.
        model: the run's model, if already loaded (default: loaded from the run's ``which`` model file).
        which: "auto", "final", "best" or "last" (see :func:`deepzen.runs.model_file`).
        test_set: ``(pixels in [0, 1], labels)`` for the confusion matrix and the top losses; default the
            run's own test set when :func:`run_test_set` knows it.
        layer: Grad-CAM's convolution (default the last).
        k: how many top losses.
        count: test images explained when ``pixels`` is None.
        out_dir: where the PNGs go (default ``RUN/interpret``).

    Raises:
        ValueError: no images were given and the run's test set is unknown.
    """
    run_dir = Path(run_dir)
    model = model if model is not None else load_model(model_file(run_dir, which), compile=False)
    seen = run_images(run_dir, model)
    if test_set is not None:
        test_x, test_y = seen.prepare(test_set[0]), np.asarray(test_set[1])
    else:
        test_x, test_y = run_test_set(run_dir) or (None, None)
    labels = None
    if pixels is not None:
        images = seen.prepare(pixels)
    elif test_x is not None:
        images, labels = test_x[:count], test_y[:count]
    else:
        raise ValueError(f"{run_dir}: the test set of this run is unknown here; give images to explain (or a test "
                         f"set: --data X.npy --labels Y.npy)")
    return interpret_images(model, images, out_dir or run_dir / "interpret", labels=labels, test_x=test_x,
                            test_y=test_y, class_names=seen.class_names, layer=layer, k=k, show=seen.show)


def interpret_text_run(run_dir: str | Path, texts: Sequence[str], *, which: str = "auto",
                       out_dir: str | Path | None = None) -> Path:
    """Writes ``attention.png``: the attention of a text classification run's model over each text's words.

    The texts are encoded as in training (the run's ``vocabulary.json``); the model must have attention
    (``mr-bilstm-attention``, ``sst2-bilstm-attention``).
    """
    run_dir = Path(run_dir)
    encoding = read_json(run_dir / "vocabulary.json", "the classifier's vocabulary")
    vocab = Vocab.from_config(encoding["vocab"])
    tokenize = WordTokenizer(lower=encoding["lower"], split_punctuation=encoding["split_punctuation"])
    model = load_model(model_file(run_dir, which), compile=False)
    tokens = [tokenize(text) for text in texts]
    empty = next((text for text, words in zip(texts, tokens) if not words), None)
    if empty is not None or not tokens:
        raise ValueError(f"interpret expects texts with at least one word. Received: {empty!r}")
    ids = pad_ids([vocab.encode(words) for words in tokens])  # (N, T)
    weights = attention_weights(model, ids)
    probabilities = torch.softmax(predict_logits(model, ids), -1)
    classes = encoding["classes"]
    titles = [f"{classes[int(p.argmax())]} ({float(p.max()):.0%})" for p in probabilities]
    out_dir = Path(out_dir or run_dir / "interpret")
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_attention(tokens, weights, out_dir / "attention.png", titles=titles)
    return out_dir / "attention.png"
