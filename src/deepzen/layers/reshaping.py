"""Reshaping layers: RepeatVector, Permute and Cropping1D/2D/3D (Flatten and Reshape are in ``core``).

Example:
    >>> import torch
    >>> RepeatVector(3)(torch.zeros(2, 5)).shape
    torch.Size([2, 3, 5])
    >>> Permute((2, 1))(torch.zeros(2, 10, 64)).shape
    torch.Size([2, 64, 10])
    >>> Cropping2D(((1, 0), (2, 2)))(torch.zeros(1, 3, 28, 28)).shape
    torch.Size([1, 3, 27, 24])
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from deepzen.layers.base import Layer, shape_str
from deepzen.layers.conv import check_input_rank, describe, spatial_rank
from deepzen.layers.image_layout import ImageLayer, normalize_pairs


class RepeatVector(Layer):
    """Repeats each input vector ``n`` times: ``(N, F)`` -> ``(N, n, F)`` (e.g. an encoder's summary fed
    to every step of a decoder).

    Args:
        n: the number of repetitions.
    """

    def __init__(self, n: int, **kwargs):
        super().__init__(**kwargs)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"RepeatVector expects n to be a positive integer. Received: n={n!r}")
        self.n = n

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"Layer '{self.display_name}' (RepeatVector) expects inputs of shape (batch, features). "
                             f"Received: input_shape={shape_str((None, *input_shape[1:]))}")

    def forward(self, x):
        return x.unsqueeze(1).expand(-1, self.n, -1)  # (N, n, F), a view


class Permute(Layer):
    """Permutes the axes of each sample, e.g. ``Permute((2, 1))`` swaps the two axes of ``(N, T, F)``.

    Args:
        dims: a permutation of ``1 .. rank`` (the batch axis, 0, stays first), as in Keras.
    """

    def __init__(self, dims: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        dims = tuple(dims)
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(f"Permute expects dims to be a permutation of 1..{len(dims)} (the batch axis is "
                             f"not permuted). Received: dims={dims}")
        self.dims = dims

    def build(self, input_shape):
        if len(input_shape) != len(self.dims) + 1:
            raise ValueError(f"Layer '{self.display_name}' (Permute) with dims={self.dims} expects inputs with "
                             f"{len(self.dims)} axes after the batch axis. "
                             f"Received: input_shape={shape_str((None, *input_shape[1:]))}")

    def forward(self, x):
        return x.permute(0, *self.dims)


class BaseCropping(ImageLayer):
    """Removes rows/columns at the start and end of each spatial axis (the inverse of ZeroPadding).

    Args:
        cropping: an int (every side), ``rank`` ints (symmetric per axis), ``rank`` (before, after)
            pairs, e.g. ``((top, bottom), (left, right))``; in 1-d also one pair ``(start, end)``.
        data_format: ``"channels_first"`` / ``"channels_last"`` (default: the global setting).

    Call arguments:
        x: ``(N, C, *spatial)`` (or ``(N, *spatial, C)``). Returns the cropped tensor (a view).
    """

    default_cropping: Any = 1

    def __init__(self, cropping: Any = None, **kwargs):
        super().__init__(**kwargs)
        cropping = self.default_cropping if cropping is None else cropping
        self.cropping = normalize_pairs(cropping, spatial_rank(self), "cropping", describe(self))
        self._init_arguments["cropping"] = self.cropping
        self._slices = (Ellipsis, *(slice(before, -after if after else None) for before, after in self.cropping))

    def build_channels_first(self, input_shape):
        check_input_rank(self, input_shape, self.rank)
        if any(size < 1 for size in self.output_shape_channels_first(input_shape)[2:]):
            raise ValueError(f"Layer '{self.display_name}' ({type(self).__name__}) crops cropping={self.cropping} "
                             f"from input_shape={shape_str((None, *self.layout_shape(input_shape)[1:]))}: "
                             f"nothing would be left")

    def output_shape_channels_first(self, input_shape):
        return (*input_shape[:2], *(d - before - after for d, (before, after) in zip(input_shape[2:], self.cropping)))

    def call_channels_first(self, x):
        return x[self._slices]


class Cropping1D(BaseCropping):
    """Cropping of ``(N, C, L)`` (channels first; Keras's default is ``(N, L, C)``); default ``(1, 1)``."""

    rank = 1
    default_cropping = (1, 1)


class Cropping2D(BaseCropping):
    """Cropping of ``(N, C, H, W)`` (channels first); default ``((0, 0), (0, 0))``, as in Keras."""

    rank = 2
    default_cropping = 0


class Cropping3D(BaseCropping):
    """Cropping of ``(N, C, D, H, W)`` (channels first); default 1 on every side, as in Keras."""

    rank = 3
    default_cropping = 1
