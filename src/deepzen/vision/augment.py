"""Batched image augmentation: random crops, flips, rotations, zooms and translations as tensor math.

Every transform is an ``nn.Module`` on a batch of float images ``(N, C, H, W)`` (channels first).
In training mode it draws its random parameters for all N images at once, as tensors on the batch's
device, and applies them with batched ops — ``torch.where`` for flips, one ``gather`` for crops,
one ``F.grid_sample`` on per-image affine sampling grids for the geometric transforms — never a
Python loop over images. In eval mode the random transforms are the identity (:class:`RandomCrop`
takes the central window), while :class:`Normalize` applies in both modes.

:class:`Augment` chains transforms and owns the randomness: with ``seed=`` it draws from its own
``torch.Generator`` (one per device), so two runs with the same seed augment identically; under
torchrun, process ``r`` draws from ``seed + r``, so the processes augment their slices of a batch
independently (and process 0 exactly as a single process would). Inside it,
consecutive rotations, zooms and translations are multiplied into one affine matrix per image and the
batch is resampled once: one interpolation instead of three, and no border filled twice.

Geometry follows Keras's preprocessing layers: a rotation ``factor`` is a fraction of a full turn
(``0.25`` = 90°), positive angles turn the image counter-clockwise; a positive zoom factor zooms
out; a positive translation moves the image down / right; the fill modes are Keras's "reflect",
"nearest" and "constant" (zeros).

Example:
    >>> import torch
    >>> augment = Augment(RandomCrop(32, padding=4), RandomFlip("horizontal"), RandomRotation(0.05),
    ...                   Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), seed=0)
    >>> augment(torch.rand(128, 3, 32, 32)).shape
    torch.Size([128, 3, 32, 32])
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deepzen.training import distributed

_FILL_MODES = {"reflect": "reflection", "nearest": "border", "constant": "zeros"}  # Keras name -> grid_sample's
_INTERPOLATIONS = ("bilinear", "nearest")


def _check_images(images: torch.Tensor, where: str) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        received = (f"a {images.dim()}-d {images.dtype} tensor of shape {tuple(images.shape)}"
                    if isinstance(images, torch.Tensor) else type(images).__name__)
        raise ValueError(f"{where} expects a float batch of images (N, C, H, W). Received: {received}")


def _pair(value: Any, arg: str, where: str) -> tuple[int, int]:
    """``32`` -> ``(32, 32)``; checks two non-negative integers."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in pair):
        raise ValueError(f"{where} expects {arg} to be an integer >= 0 or a pair of them. Received: {arg}={value!r}")
    return pair


def _factor_range(factor: Any, arg: str, where: str, lowest: float = -math.inf) -> tuple[float, float]:
    """Keras's factor convention: ``f`` -> ``(-|f|, |f|)``; ``(lo, hi)`` with ``lo <= hi`` as given."""
    if isinstance(factor, (int, float)) and not isinstance(factor, bool):
        low, high = -abs(float(factor)), abs(float(factor))
    elif isinstance(factor, (tuple, list)) and len(factor) == 2 and all(isinstance(f, (int, float)) for f in factor):
        low, high = float(factor[0]), float(factor[1])
    else:
        raise ValueError(f"{where} expects {arg} to be a number or a (low, high) pair. Received: {arg}={factor!r}")
    if low > high or low <= lowest:
        bound = f" and low > {lowest}" if lowest > -math.inf else ""
        raise ValueError(f"{where} expects {arg} with low <= high{bound}. Received: {arg}={factor!r}")
    return low, high


def _uniform(low: float, high: float, n: int, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """``n`` draws from U(low, high) on ``like``'s device, in its dtype."""
    return torch.rand(n, generator=generator, device=like.device, dtype=like.dtype) * (high - low) + low


class Transform(nn.Module):
    """Base of the augmentations: ``augment`` in training mode, ``inference`` in eval mode.

    Call arguments:
        images: ``(N, C, H, W)`` float.
        generator: the ``torch.Generator`` to draw from (on the images' device); ``None`` uses
            torch's global generator. :class:`Augment` passes its own.
    """

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_images(images, type(self).__name__)
        return self.augment(images, generator) if self.training else self.inference(images)

    def augment(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def inference(self, images: torch.Tensor) -> torch.Tensor:
        return images


class RandomFlip(Transform):
    """Mirrors each image with probability 1/2, left-right and/or top-bottom (independent draws).

    Args:
        mode: ``"horizontal"``, ``"vertical"`` or ``"horizontal_and_vertical"`` (Keras's default).
    """

    _AXES = {"horizontal": (3,), "vertical": (2,), "horizontal_and_vertical": (3, 2)}

    def __init__(self, mode: str = "horizontal_and_vertical"):
        super().__init__()
        if mode not in self._AXES:
            raise ValueError(f"RandomFlip expects mode to be one of {tuple(self._AXES)}. Received: mode={mode!r}")
        self.mode = mode
        self._axes = self._AXES[mode]

    def augment(self, images, generator):
        for axis in self._axes:
            flip = torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5  # (N,)
            images = torch.where(flip.view(-1, 1, 1, 1), images.flip(axis), images)
        return images

    def extra_repr(self):
        return f"mode={self.mode!r}"


class RandomCrop(Transform):
    """Pads each image, then cuts a ``size`` window at a random position (one per image).

    The CIFAR recipe is ``RandomCrop(32, padding=4)``: shifts of up to 4 pixels, borders zero.

    Args:
        size: output ``(height, width)`` or an int for a square.
        padding: pixels added on each side first: an int, or ``(vertical, horizontal)``.
        padding_mode: ``F.pad``'s mode: ``"constant"`` (zeros), ``"reflect"``, ``"replicate"`` or ``"circular"``.

    In eval mode it returns the central window of the padded image: the input itself when ``size``
    equals the input size (and the padding is symmetric, as it always is here).
    """

    def __init__(self, size: int | Sequence[int], padding: int | Sequence[int] = 0, padding_mode: str = "constant"):
        super().__init__()
        self.size = _pair(size, "size", "RandomCrop")
        if min(self.size) < 1:
            raise ValueError(f"RandomCrop expects a positive size. Received: size={size!r}")
        self.padding = _pair(padding, "padding", "RandomCrop")
        if padding_mode not in ("constant", "reflect", "replicate", "circular"):
            raise ValueError(f"RandomCrop expects padding_mode 'constant', 'reflect', 'replicate' or 'circular'. "
                             f"Received: padding_mode={padding_mode!r}")
        self.padding_mode = padding_mode
        vertical, horizontal = self.padding
        self._pad = (horizontal, horizontal, vertical, vertical)

    def _padded(self, images: torch.Tensor) -> torch.Tensor:
        padded = F.pad(images, self._pad, mode=self.padding_mode) if any(self._pad) else images
        if padded.shape[2] < self.size[0] or padded.shape[3] < self.size[1]:
            raise ValueError(f"RandomCrop(size={self.size}, padding={self.padding}) needs padded images at least "
                             f"that large. Received: images of shape {tuple(images.shape)}")
        return padded

    def augment(self, images, generator):
        padded = self._padded(images)  # (N, C, Hp, Wp)
        (n, channels, padded_height, padded_width), (height, width) = padded.shape, self.size
        device = images.device
        top = torch.randint(padded_height - height + 1, (n,), generator=generator, device=device)
        left = torch.randint(padded_width - width + 1, (n,), generator=generator, device=device)
        rows = top[:, None] + torch.arange(height, device=device)  # (N, h)
        cols = left[:, None] + torch.arange(width, device=device)  # (N, w)
        index = (rows[:, :, None] * padded_width + cols[:, None, :]).view(n, 1, height * width)
        crops = padded.flatten(2).gather(2, index.expand(n, channels, height * width))  # (N, C, h * w)
        return crops.view(n, channels, height, width)

    def inference(self, images):
        if tuple(images.shape[2:]) == self.size:
            return images
        padded = self._padded(images)
        top, left = (padded.shape[2] - self.size[0]) // 2, (padded.shape[3] - self.size[1]) // 2
        return padded[:, :, top:top + self.size[0], left:left + self.size[1]]

    def extra_repr(self):
        return f"size={self.size}, padding={self.padding}, padding_mode={self.padding_mode!r}"


def warp(images: torch.Tensor, matrices: torch.Tensor, interpolation: str = "bilinear",
         fill_mode: str = "reflect") -> torch.Tensor:
    """Resamples each image through its own affine map.

    Args:
        images: ``(N, C, H, W)`` float.
        matrices: ``(N, 3, 3)``, mapping each *output* pixel to the input point it samples, in pixel
            units with the origin at the image centre, x to the right and y down.
        interpolation: ``"bilinear"`` or ``"nearest"``.
        fill_mode: Keras's ``"reflect"``, ``"nearest"`` or ``"constant"`` (zeros) for points outside.

    Returns:
        ``(N, C, H, W)``.
    """
    height, width = images.shape[2:]
    like = {"device": images.device, "dtype": images.dtype}
    x = torch.arange(width, **like) + (0.5 - width / 2)  # (W,) pixel centres, origin at the image centre
    y = (torch.arange(height, **like) + (0.5 - height / 2))[:, None]  # (H, 1)
    m = matrices[:, :2, :, None, None]  # (N, 2, 3, 1, 1)
    points = m[:, :, 0] * x + m[:, :, 1] * y + m[:, :, 2]  # (N, 2, H, W): the sampled input points
    # grid_sample wants them scaled to [-1, 1] across each axis (align_corners=False: pixel edges).
    grid = (points * images.new_tensor([2.0 / width, 2.0 / height]).view(1, 2, 1, 1)).permute(0, 2, 3, 1)
    return F.grid_sample(images, grid, mode=interpolation, padding_mode=_FILL_MODES[fill_mode], align_corners=False)


class AffineTransform(Transform):
    """A random affine resampling; subclasses draw the per-image matrices.

    Args:
        fill_mode: ``"reflect"`` (default, as Keras), ``"nearest"`` (repeat the edge) or ``"constant"`` (zeros).
        interpolation: ``"bilinear"`` or ``"nearest"``.
    """

    def __init__(self, fill_mode: str = "reflect", interpolation: str = "bilinear"):
        super().__init__()
        if fill_mode not in _FILL_MODES:
            raise ValueError(f"{type(self).__name__} expects fill_mode to be one of {tuple(_FILL_MODES)}. "
                             f"Received: fill_mode={fill_mode!r}")
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(f"{type(self).__name__} expects interpolation to be one of {_INTERPOLATIONS}. "
                             f"Received: interpolation={interpolation!r}")
        self.fill_mode, self.interpolation = fill_mode, interpolation

    def sampling_matrices(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """``(N, 3, 3)`` output-pixel -> input-point maps (see :func:`warp`) in ``images``' dtype and device."""
        raise NotImplementedError

    def augment(self, images, generator):
        return warp(images, self.sampling_matrices(images, generator), self.interpolation, self.fill_mode)


def _affine(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(3, device=like.device, dtype=like.dtype).repeat(n, 1, 1)  # (N, 3, 3)


class RandomRotation(AffineTransform):
    """Rotates each image about its centre by a random angle.

    Args:
        factor: a fraction of a full turn (Keras's convention): ``f`` draws from ``[-f, f]``,
            ``(low, high)`` from ``[low, high]``; ``0.25`` is 90°, ``(0.25, 0.25)`` always turns 90°.
            Positive angles turn counter-clockwise.
        fill_mode, interpolation: see :class:`AffineTransform`.
    """

    def __init__(self, factor: float | Sequence[float], fill_mode: str = "reflect", interpolation: str = "bilinear"):
        super().__init__(fill_mode, interpolation)
        self.factor = _factor_range(factor, "factor", "RandomRotation")

    def sampling_matrices(self, images, generator):
        angle = _uniform(*self.factor, images.shape[0], generator, images) * (2 * math.pi)  # (N,)
        cos, sin = angle.cos(), angle.sin()
        matrices = _affine(images.shape[0], images)
        # The output pixel (x, y) shows the input point turned clockwise (on screen, y down) by the angle.
        matrices[:, 0, 0], matrices[:, 0, 1] = cos, -sin
        matrices[:, 1, 0], matrices[:, 1, 1] = sin, cos
        return matrices

    def extra_repr(self):
        return f"factor={self.factor}, fill_mode={self.fill_mode!r}, interpolation={self.interpolation!r}"


class RandomZoom(AffineTransform):
    """Zooms each image about its centre by a random amount.

    Args:
        height_factor: fraction ``z`` of the height, ``f`` draws from ``[-f, f]`` or ``(low, high)``;
            the image is resampled at ``1 + z`` times the spacing: positive zooms out (content
            shrinks), negative zooms in. Low must be > -1.
        width_factor: the same for the width; ``None`` (default) zooms both axes by the same draw,
            keeping the aspect ratio.
        fill_mode, interpolation: see :class:`AffineTransform`.
    """

    def __init__(self, height_factor: float | Sequence[float], width_factor: float | Sequence[float] | None = None,
                 fill_mode: str = "reflect", interpolation: str = "bilinear"):
        super().__init__(fill_mode, interpolation)
        self.height_factor = _factor_range(height_factor, "height_factor", "RandomZoom", lowest=-1.0)
        self.width_factor = None if width_factor is None else _factor_range(width_factor, "width_factor",
                                                                            "RandomZoom", lowest=-1.0)

    def sampling_matrices(self, images, generator):
        n = images.shape[0]
        zoom_y = 1 + _uniform(*self.height_factor, n, generator, images)  # (N,)
        zoom_x = zoom_y if self.width_factor is None else 1 + _uniform(*self.width_factor, n, generator, images)
        matrices = _affine(n, images)
        matrices[:, 0, 0], matrices[:, 1, 1] = zoom_x, zoom_y
        return matrices

    def extra_repr(self):
        return (f"height_factor={self.height_factor}, width_factor={self.width_factor}, "
                f"fill_mode={self.fill_mode!r}, interpolation={self.interpolation!r}")


class RandomTranslation(AffineTransform):
    """Shifts each image by a random fraction of its height and width.

    Args:
        height_factor: ``f`` draws from ``[-f, f]``, or ``(low, high)``; positive moves the image down.
        width_factor: the same along the width; positive moves the image right.
        fill_mode, interpolation: see :class:`AffineTransform`.
    """

    def __init__(self, height_factor: float | Sequence[float], width_factor: float | Sequence[float],
                 fill_mode: str = "reflect", interpolation: str = "bilinear"):
        super().__init__(fill_mode, interpolation)
        self.height_factor = _factor_range(height_factor, "height_factor", "RandomTranslation")
        self.width_factor = _factor_range(width_factor, "width_factor", "RandomTranslation")

    def sampling_matrices(self, images, generator):
        n, (height, width) = images.shape[0], images.shape[2:]
        matrices = _affine(n, images)
        # An image moved by +t shows, at each pixel, the input point t before it.
        matrices[:, 1, 2] = -height * _uniform(*self.height_factor, n, generator, images)
        matrices[:, 0, 2] = -width * _uniform(*self.width_factor, n, generator, images)
        return matrices

    def extra_repr(self):
        return (f"height_factor={self.height_factor}, width_factor={self.width_factor}, "
                f"fill_mode={self.fill_mode!r}, interpolation={self.interpolation!r}")


class Normalize(Transform):
    """``(x - mean[c]) / std[c]`` per channel, in training *and* eval mode (it is not random).

    Args:
        mean, std: one value per channel, or one value for all.
    """

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]):
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        if (std <= 0).any():
            raise ValueError(f"Normalize expects std > 0. Received: std={std.flatten().tolist()}")
        self.register_buffer("mean", mean)  # (1, C, 1, 1)
        self.register_buffer("std", std)

    def inference(self, images):
        # .to() is a no-op once the buffers match the batch (move the pipeline with .to(device)).
        return (images - self.mean.to(images)).div_(self.std.to(images))

    def augment(self, images, generator):
        return self.inference(images)

    def inverse(self, images: torch.Tensor) -> torch.Tensor:
        """Undoes the normalization: ``x * std + mean`` (to show normalized images)."""
        return images * self.std.to(images) + self.mean.to(images)


class Augment(nn.Module):
    """An augmentation pipeline: the transforms in order, drawing from one seeded generator.

    Consecutive :class:`AffineTransform`s with the same fill mode and interpolation are fused: their
    matrices are multiplied per image and the batch is resampled once.

    Args:
        *transforms: :class:`Transform`s, applied in order.
        seed: seeds the pipeline's own ``torch.Generator`` (one per device, created on the first batch
            there), so the same seed gives the same augmentations; under torchrun the process of rank
            ``r`` uses ``seed + r`` (rank 0 matches a single process). ``None`` draws from torch's
            global generator (seeded by ``torch.manual_seed``).

    Call arguments:
        images: ``(N, C, H, W)`` float. Returns the augmented batch, same dtype and device.

    Like every module it augments in training mode (``augment.train()``, the default) and is the
    identity — apart from :class:`Normalize` and :class:`RandomCrop`'s central window — after
    ``augment.eval()``.
    """

    def __init__(self, *transforms: Transform, seed: int | None = None):
        super().__init__()
        for transform in transforms:
            if not isinstance(transform, Transform):
                raise TypeError(f"Augment expects deepzen.vision.augment transforms. "
                                f"Received: {type(transform).__name__}")
        self.transforms = nn.ModuleList(transforms)
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def generator(self, device: torch.device) -> torch.Generator | None:
        """The pipeline's generator on ``device`` (None without a seed: torch's global one), seeded with
        ``seed + rank`` so that DDP processes do not all draw the same augmentations."""
        if self.seed is None:
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed + distributed.rank())
        return self._generators[device]

    def stages(self) -> list[Transform | list[AffineTransform]]:
        """The transforms in order, runs of affine ones with the same fill and interpolation as lists."""
        stages: list[Transform | list[AffineTransform]] = []
        for transform in self.transforms:
            previous = stages[-1] if stages else None
            if (isinstance(transform, AffineTransform) and isinstance(previous, list)
                    and (previous[0].fill_mode, previous[0].interpolation) == (transform.fill_mode,
                                                                               transform.interpolation)):
                previous.append(transform)
            else:
                stages.append([transform] if isinstance(transform, AffineTransform) else transform)
        return stages

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images, "Augment")
        generator = self.generator(images.device)
        for stage in self.stages():
            if not isinstance(stage, list):
                images = stage(images, generator)
                continue
            active = [transform for transform in stage if transform.training]
            if active:
                matrices = active[0].sampling_matrices(images, generator)
                for transform in active[1:]:  # applying A then B samples the input at A @ B @ p
                    matrices = matrices @ transform.sampling_matrices(images, generator)
                images = warp(images, matrices, active[0].interpolation, active[0].fill_mode)
        return images


Compose = Augment  # torchvision's name for the same pipeline


# -- looking at augmentations ------------------------------------------------------------------------
def _grid(images: torch.Tensor, nrow: int, padding: int, pad_value: float) -> torch.Tensor:
    """``(N, C, H, W)`` -> one ``(C, rows * (H + p) + p, cols * (W + p) + p)`` image, row by row."""
    n, channels, height, width = images.shape
    cols = max(1, min(nrow, n))
    rows = -(-n // cols)
    tiles = F.pad(images, (padding, 0, padding, 0), value=pad_value)  # (N, C, H + p, W + p)
    blank = tiles.new_full((rows * cols - n, *tiles.shape[1:]), pad_value)
    tiles = torch.cat([tiles, blank]).view(rows, cols, channels, height + padding, width + padding)
    grid = tiles.permute(2, 0, 3, 1, 4).reshape(channels, rows * (height + padding), cols * (width + padding))
    return F.pad(grid, (0, padding, 0, padding), value=pad_value)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8,
              value_range: tuple[float, float] | None = (0.0, 1.0), padding: int = 2) -> Path:
    """Writes a batch of images as one PNG grid, ``nrow`` images per row.

    Args:
        images: ``(N, C, H, W)`` with C = 1 (grey) or 3 (RGB); any device and float dtype.
        path: the PNG file to write (parent folders are created).
        nrow: images per row.
        value_range: the values shown as black and white (clipped outside); ``None`` uses the
            batch's minimum and maximum.
        padding: white pixels between and around the images.

    Returns:
        The path written.
    """
    from matplotlib import image as mpimg  # lazily: plotting is optional at runtime

    _check_images(images, "save_grid")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"save_grid expects 1 (grey) or 3 (RGB) channels. Received: images of shape "
                         f"{tuple(images.shape)}")
    images = images.detach().to("cpu", torch.float32)
    low, high = value_range if value_range is not None else (images.min().item(), images.max().item())
    images = ((images - low) / max(high - low, 1e-12)).clamp(0.0, 1.0)
    grid = _grid(images, nrow, padding, pad_value=1.0)  # (C, H', W')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Grey is written as RGB: exact 8-bit levels, where a colormap would quantize once more.
    mpimg.imsave(path, grid.expand(3, -1, -1).permute(1, 2, 0).contiguous().numpy(), format="png")
    return path


def augmentation_grid(augment: nn.Module, images: torch.Tensor, path: str | Path, samples: int = 4,
                      value_range: tuple[float, float] | None = (0.0, 1.0)) -> Path:
    """One PNG showing ``images`` in the first row and ``samples`` augmented versions below.

    The pipeline runs in training mode (its mode is restored afterwards); :class:`Normalize` steps
    are undone for display. Augmented images of another size (e.g. a smaller crop) are padded at
    the bottom-right with white to the originals' size (or the originals to theirs).

    Args:
        augment: an :class:`Augment` pipeline or a single :class:`Transform`.
        images: ``(N, C, H, W)``, a few images (one column each).
        path: the PNG file to write.
        samples: augmented rows.
        value_range: as in :func:`save_grid`.
    """
    was_training = augment.training
    augment.train()
    try:
        with torch.no_grad():
            rows = [augment(images) for _ in range(samples)]
    finally:
        augment.train(was_training)
    normalizers = [module for module in augment.modules() if isinstance(module, Normalize)]
    for normalize in reversed(normalizers):
        rows = [normalize.inverse(row) for row in rows]
    rows = [images.detach(), *(row.to(images.device) for row in rows)]
    height, width = max(row.shape[2] for row in rows), max(row.shape[3] for row in rows)
    fill = value_range[1] if value_range is not None else max(float(row.max()) for row in rows)  # white
    rows = [F.pad(row, (0, width - row.shape[3], 0, height - row.shape[2]), value=fill) for row in rows]
    return save_grid(torch.cat(rows), path, nrow=images.shape[0], value_range=value_range)
