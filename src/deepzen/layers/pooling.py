"""Pooling, upsampling and padding layers over channels-first inputs.

Max/average pooling (1D/2D/3D), global pooling, UpSampling and ZeroPadding, each one rank-generic
class whose public 1D/2D/3D names fix only the number of spatial axes. Inputs are channels first by
default, as in PyTorch: ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``; every layer takes
``data_format="channels_last"`` for Keras's ``(N, *spatial, C)`` (see :mod:`deepzen.layers.image_layout`).

``padding="same"`` follows Keras: ``ceil(size / stride)`` outputs, the odd padding row at the end,
and padded positions never win a max nor count in an average.

Example:
    >>> import torch
    >>> MaxPooling2D(2)(torch.randn(8, 6, 28, 28)).shape
    torch.Size([8, 6, 14, 14])
    >>> GlobalAveragePooling2D()(torch.randn(8, 6, 7, 7)).shape
    torch.Size([8, 6])
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F

from deepzen.layers.base import Layer
from deepzen.layers.image_layout import ImageLayer, normalize_pairs
from deepzen.layers.conv import (check_input_rank, conv_output_length, describe, normalize_padding, normalize_tuple,
                                 plan_padding, spatial_rank)


class BasePooling(ImageLayer):
    """Sliding-window pooling over ``rank`` spatial axes (set by the subclasses).

    Args:
        pool_size: window size, int or tuple of ``rank`` ints (default 2).
        strides: window step, int or tuple; default ``pool_size`` (non-overlapping windows).
        padding: ``"valid"`` (windows inside the input) or ``"same"`` (``ceil(size / stride)`` outputs).

    Call arguments:
        x: ``(N, C, *spatial)``, channels first. Returns ``(N, C, *out_spatial)``.
    """

    rank: int = 0
    pool_functions: dict = {}  # rank -> F.max_pool1d/2d/3d or F.avg_pool1d/2d/3d
    pad_value = 0.0  # what SamePadding fills the asymmetric "same" padding with

    def __init__(self, pool_size=2, strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        where, rank = describe(self), spatial_rank(self)
        self.pool_size = normalize_tuple(pool_size, rank, "pool_size", where)
        self.strides = self.pool_size if strides is None else normalize_tuple(strides, rank, "strides", where)
        self.padding = normalize_padding(padding, rank, where, explicit=False)
        self._pool = self.pool_functions[rank]
        # Decided once: symmetric "same" padding is the pooling op's own; the rest goes through F.pad.
        self._padding, self._same_pad = plan_padding(self.padding, self.pool_size, self.strides, (1,) * rank,
                                                     self.pad_value)

    def build_channels_first(self, input_shape):
        check_input_rank(self, input_shape, self.rank)
        if any(size < 1 for size in self.output_shape_channels_first(input_shape)[2:]):
            raise ValueError(f"Layer '{self.display_name}' ({type(self).__name__}) with padding='valid' needs "
                             f"inputs at least pool_size={self.pool_size}. Received: input_shape={tuple(input_shape)}")

    def output_shape_channels_first(self, input_shape):
        """``(N, C, *spatial)`` -> ``(N, C, *out_spatial)``."""
        spatial = [conv_output_length(size, k, s, self.padding)
                   for size, k, s in zip(input_shape[2:], self.pool_size, self.strides)]
        return (*input_shape[:2], *spatial)


class BaseMaxPooling(BasePooling):
    """Max over each window; see :class:`BasePooling`. "same" padding is ``-inf``, so it never wins."""

    pool_functions = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
    pad_value = float("-inf")

    def call_channels_first(self, x):
        if self._same_pad is not None:
            x = self._same_pad(x)
        return self._pool(x, self.pool_size, self.strides, self._padding)  # (N, C, *out_spatial)


class BaseAveragePooling(BasePooling):
    """Mean over each window; see :class:`BasePooling`. Padded positions do not count in the mean."""

    pool_functions = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}

    def call_channels_first(self, x):
        pool, size, strides = self._pool, self.pool_size, self.strides
        if self._same_pad is None:
            return pool(x, size, strides, self._padding, False, False)  # count_include_pad=False
        padded = self._same_pad(x)
        if padded is x:  # this input size needs no padding
            return pool(x, size, strides)
        # Asymmetric padding: mean over the zero-padded input, divided by each window's share of real pixels.
        inside = self._same_pad(x.new_ones((1, 1, *x.shape[2:])))
        return pool(padded, size, strides) / pool(inside, size, strides)  # (N, C, *out_spatial)


class MaxPooling1D(BaseMaxPooling):
    """Max pooling over ``(N, C, L)`` (channels first). See :class:`BasePooling`."""

    rank = 1


class MaxPooling2D(BaseMaxPooling):
    """Max pooling over ``(N, C, H, W)`` (channels first). See :class:`BasePooling`."""

    rank = 2


class MaxPooling3D(BaseMaxPooling):
    """Max pooling over ``(N, C, D, H, W)`` (channels first). See :class:`BasePooling`."""

    rank = 3


class AveragePooling1D(BaseAveragePooling):
    """Average pooling over ``(N, C, L)`` (channels first). See :class:`BasePooling`."""

    rank = 1


class AveragePooling2D(BaseAveragePooling):
    """Average pooling over ``(N, C, H, W)`` (channels first), LeNet-5's subsampling. See :class:`BasePooling`."""

    rank = 2


class AveragePooling3D(BaseAveragePooling):
    """Average pooling over ``(N, C, D, H, W)`` (channels first). See :class:`BasePooling`."""

    rank = 3


class BaseGlobalPooling(ImageLayer):
    """Pools each channel over all ``rank`` spatial axes.

    Args:
        keepdims: keep the spatial axes with size 1 (``(N, C, 1, 1)``) instead of dropping them (``(N, C)``).

    Call arguments:
        x: ``(N, C, *spatial)``, channels first. Returns ``(N, C)`` (or ``(N, C, 1, ...)`` with ``keepdims``).
    """

    rank: int = 0

    def __init__(self, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.keepdims = bool(keepdims)
        self._axes = tuple(range(2, 2 + spatial_rank(self)))

    def build_channels_first(self, input_shape):
        check_input_rank(self, input_shape, self.rank)

    def output_shape_channels_first(self, input_shape):
        return (*input_shape[:2], *(1,) * self.rank) if self.keepdims else tuple(input_shape[:2])


class BaseGlobalAveragePooling(BaseGlobalPooling):
    def call_channels_first(self, x):
        return x.mean(self._axes, keepdim=self.keepdims)


class BaseGlobalMaxPooling(BaseGlobalPooling):
    def call_channels_first(self, x):
        return x.amax(self._axes, keepdim=self.keepdims)


class GlobalAveragePooling1D(BaseGlobalAveragePooling):
    """Mean over the length axis: ``(N, C, L)`` -> ``(N, C)`` (channels first). See :class:`BaseGlobalPooling`."""

    rank = 1


class GlobalAveragePooling2D(BaseGlobalAveragePooling):
    """Mean over height and width: ``(N, C, H, W)`` -> ``(N, C)``. See :class:`BaseGlobalPooling`."""

    rank = 2


class GlobalAveragePooling3D(BaseGlobalAveragePooling):
    """Mean over depth, height and width: ``(N, C, D, H, W)`` -> ``(N, C)``. See :class:`BaseGlobalPooling`."""

    rank = 3


class GlobalMaxPooling1D(BaseGlobalMaxPooling):
    """Max over the length axis: ``(N, C, L)`` -> ``(N, C)`` (channels first). See :class:`BaseGlobalPooling`."""

    rank = 1


class GlobalMaxPooling2D(BaseGlobalMaxPooling):
    """Max over height and width: ``(N, C, H, W)`` -> ``(N, C)``. See :class:`BaseGlobalPooling`."""

    rank = 2


class GlobalMaxPooling3D(BaseGlobalMaxPooling):
    """Max over depth, height and width: ``(N, C, D, H, W)`` -> ``(N, C)``. See :class:`BaseGlobalPooling`."""

    rank = 3


_LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


class BaseUpSampling(ImageLayer):
    """Repeats (``"nearest"``) or interpolates each spatial axis ``size`` times.

    Args:
        size: integer factor per spatial axis, int or tuple (default 2).
        interpolation: ``"nearest"`` or the rank's linear mode (``"linear"``, ``"bilinear"``,
            ``"trilinear"``), with half-pixel centres as in Keras (PyTorch's ``align_corners=False``).

    Call arguments:
        x: ``(N, C, *spatial)``, channels first. Returns ``(N, C, *(spatial * size))``.
    """

    rank: int = 0

    def __init__(self, size=2, interpolation: str = "nearest", **kwargs):
        super().__init__(**kwargs)
        where, rank = describe(self), spatial_rank(self)
        self.size = normalize_tuple(size, rank, "size", where)
        valid = ("nearest", _LINEAR_MODES[rank])
        if interpolation not in valid:
            raise ValueError(f"{where} expects interpolation to be one of {valid}. "
                             f"Received: interpolation={interpolation!r}")
        self.interpolation = interpolation
        self._align_corners = None if interpolation == "nearest" else False
        self._scale = tuple(float(s) for s in self.size)

    def build_channels_first(self, input_shape):
        check_input_rank(self, input_shape, self.rank)

    def output_shape_channels_first(self, input_shape):
        return (*input_shape[:2], *(d * s for d, s in zip(input_shape[2:], self.size)))

    def call_channels_first(self, x):
        return F.interpolate(x, scale_factor=self._scale, mode=self.interpolation,
                             align_corners=self._align_corners)  # (N, C, *(spatial * size))


class UpSampling1D(BaseUpSampling):
    """Upsampling of ``(N, C, L)`` (channels first). See :class:`BaseUpSampling`."""

    rank = 1


class UpSampling2D(BaseUpSampling):
    """Upsampling of ``(N, C, H, W)`` (channels first); ``interpolation`` "nearest" or "bilinear".

    See :class:`BaseUpSampling`.

    Example:
        >>> import torch
        >>> UpSampling2D(2)(torch.arange(4.0).reshape(1, 1, 2, 2))
        tensor([[[[0., 0., 1., 1.],
                  [0., 0., 1., 1.],
                  [2., 2., 3., 3.],
                  [2., 2., 3., 3.]]]])
    """

    rank = 2


class UpSampling3D(BaseUpSampling):
    """Upsampling of ``(N, C, D, H, W)`` (channels first). See :class:`BaseUpSampling`."""

    rank = 3


class BaseZeroPadding(ImageLayer):
    """Adds rows/columns of zeros around each spatial axis.

    Args:
        padding: an int (the same on every side), a tuple of ``rank`` ints (symmetric per axis), or
            a tuple of ``rank`` (before, after) pairs, e.g. ``((top, bottom), (left, right))`` in 2-D; in 1-D
            also one pair ``(left, right)``, as in Keras.

    Call arguments:
        x: ``(N, C, *spatial)``, channels first. Returns ``(N, C, *(spatial + before + after))``.
    """

    rank: int = 0

    def __init__(self, padding: Any = 1, **kwargs):
        super().__init__(**kwargs)
        pairs = normalize_pairs(padding, spatial_rank(self), "padding", describe(self))
        self.padding = pairs
        self._pad = tuple(p for pair in reversed(pairs) for p in pair)  # F.pad order: last axis first

    def build_channels_first(self, input_shape):
        check_input_rank(self, input_shape, self.rank)

    def output_shape_channels_first(self, input_shape):
        return (*input_shape[:2], *(d + before + after for d, (before, after) in zip(input_shape[2:], self.padding)))

    def call_channels_first(self, x):
        return F.pad(x, self._pad)  # (N, C, *(spatial + before + after))


class ZeroPadding1D(BaseZeroPadding):
    """Zero padding of ``(N, C, L)`` (channels first). See :class:`BaseZeroPadding`."""

    rank = 1


class ZeroPadding2D(BaseZeroPadding):
    """Zero padding of ``(N, C, H, W)`` (channels first). See :class:`BaseZeroPadding`.

    Example:
        >>> import torch
        >>> ZeroPadding2D(((1, 0), (2, 3)))(torch.ones(1, 1, 2, 2)).shape
        torch.Size([1, 1, 3, 7])
    """

    rank = 2


class ZeroPadding3D(BaseZeroPadding):
    """Zero padding of ``(N, C, D, H, W)`` (channels first). See :class:`BaseZeroPadding`."""

    rank = 3
