"""Convolution layers: Conv1D/2D/3D, their transposes, depthwise and depthwise-separable convolutions.

One rank-generic implementation (:class:`BaseConv`) runs PyTorch's ``F.conv1d/2d/3d``; the public
classes only fix the number of spatial axes. The number of input channels is learned on the first
call (lazy build), like Keras.

Layout: **channels first** by default, as in PyTorch — inputs are ``(N, C, L)``, ``(N, C, H, W)`` or
``(N, C, D, H, W)``; ``data_format="channels_last"`` (or ``deepzen.config.set_image_data_format``) gives
Keras's ``(N, H, W, C)`` (see :mod:`deepzen.layers.image_layout`). Kernels are stored as
``weight`` in PyTorch's layout ``(filters, in_channels // groups, *kernel_size)``, as in ``nn.Conv2d``.

Padding ``"same"`` follows Keras (and TensorFlow) exactly, also for strides > 1: the output has
``ceil(size / stride)`` positions and, when the total padding is odd, the extra row/column goes at
the end. Where that padding is symmetric the convolution's own ``padding`` argument does it;
otherwise the input is padded with ``F.pad`` first (see :class:`SamePadding`).

Example:
    >>> import torch
    >>> conv = Conv2D(8, 3, strides=2, padding="same", activation="relu")
    >>> conv(torch.randn(4, 3, 15, 15)).shape   # ceil(15 / 2) = 8
    torch.Size([4, 8, 8, 8])
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from deepzen.layers.base import Layer, shape_str
from deepzen.layers.image_layout import ImageLayer

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
SPATIAL_AXES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}


# -- argument checks shared by the convolution and pooling layers -----------------------------------
def describe(layer: Layer) -> str:
    """How errors name a layer: its class, and its name when the user gave one."""
    name = layer.__dict__.get("name")  # also before Layer.__init__ has run
    return type(layer).__name__ + (f" '{name}'" if name else "")


def normalize_tuple(value: Any, rank: int, arg: str, where: str, minimum: int = 1) -> tuple[int, ...]:
    """``3`` -> ``(3, 3)`` for rank 2; checks a tuple has ``rank`` integers, each ``>= minimum``."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * rank
    if len(values) != rank or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum
                                      for v in values):
        raise ValueError(f"{where} expects {arg} to be an integer >= {minimum} or a tuple of {rank} such "
                         f"integers. Received: {arg}={value!r}")
    return values


def normalize_padding(padding: Any, rank: int, where: str, explicit: bool = True) -> str | tuple[int, ...]:
    """``"valid"``/``"same"`` (any case), or with ``explicit`` an int / tuple of symmetric paddings."""
    if isinstance(padding, str) and padding.lower() in ("valid", "same"):
        return padding.lower()
    if explicit and not isinstance(padding, str):
        try:
            return normalize_tuple(padding, rank, "padding", where, minimum=0)
        except ValueError:
            pass
    expected = "'valid', 'same' or an integer >= 0 (or a tuple of such integers)" if explicit else "'valid' or 'same'"
    raise ValueError(f"{where} expects padding to be {expected}. Received: padding={padding!r}")


def check_input_rank(layer: ImageLayer, input_shape: tuple[int, ...], rank: int) -> None:
    """Raises if the channels-first ``input_shape`` is not ``(batch, channels, *rank spatial axes)``."""
    if len(input_shape) != rank + 2:
        axes = ("batch", *SPATIAL_AXES[rank], "channels") if layer.channels_last else \
            ("batch", "channels", *SPATIAL_AXES[rank])
        received = layer.layout_shape(input_shape)
        raise ValueError(f"Layer '{layer.display_name}' ({type(layer).__name__}) expects inputs of shape "
                         f"({', '.join(axes)}), {layer.data_format.replace('_', ' ')} (data_format={layer.data_format!r}). "
                         f"Received: input_shape={shape_str((None, *received[1:]))}")


def conv_output_length(size: int, kernel: int, stride: int, padding: str | int, dilation: int = 1) -> int:
    """Output positions of a convolution or pooling window along one axis."""
    if padding == "same":
        return -(-size // stride)
    pad = 0 if padding == "valid" else padding
    return (size + 2 * pad - (kernel - 1) * dilation - 1) // stride + 1


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """Keras's "same" padding along one axis: (before, after), the odd one at the end.

    The output has ``ceil(size / stride)`` positions; the last window must end inside the padded input.
    """
    effective = (kernel - 1) * dilation + 1
    total = max((-(-size // stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class SamePadding:
    """Pads ``(N, C, *spatial)`` inputs with ``F.pad`` for Keras "same" windows.

    With stride 1 the padding does not depend on the input size and is computed here, once; with
    larger strides it depends on ``size % stride`` and is computed per call from the input's shape.

    Args:
        kernel_size, strides, dilation_rate: one integer per spatial axis.
        value: the padding value (``-inf`` for max pooling).
    """

    def __init__(self, kernel_size: Sequence[int], strides: Sequence[int], dilation_rate: Sequence[int],
                 value: float = 0.0):
        self.kernel_size, self.strides, self.dilation_rate = tuple(kernel_size), tuple(strides), tuple(dilation_rate)
        self.value = value
        # Any size gives the same padding when every stride is 1; 1 stands for "any".
        self.fixed = self.pad_arg((1,) * len(self.strides)) if all(s == 1 for s in self.strides) else None

    def pad_arg(self, spatial: Sequence[int]) -> tuple[int, ...]:
        """The ``F.pad`` argument for inputs of spatial size ``spatial`` (last axis first)."""
        pads = [same_padding(*axis) for axis in zip(spatial, self.kernel_size, self.strides, self.dilation_rate)]
        return tuple(p for pair in reversed(pads) for p in pair)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.fixed if self.fixed is not None else self.pad_arg(x.shape[2:])
        return F.pad(x, pad, value=self.value) if any(pad) else x


def plan_padding(padding: str | tuple[int, ...], kernel_size, strides, dilation_rate,
                 value: float = 0.0) -> tuple[tuple[int, ...], SamePadding | None]:
    """Decides once how a conv/pool layer pads: (the op's own symmetric padding, an F.pad step or None).

    "same" with stride 1 and an odd effective kernel is symmetric, so the op pads by itself; any other
    "same" (even kernels, strides > 1) needs :class:`SamePadding` first.
    """
    rank = len(kernel_size)
    if padding == "valid":
        return (0,) * rank, None
    if padding != "same":
        return tuple(padding), None
    pads = [same_padding(1, k, 1, d) for k, d in zip(kernel_size, dilation_rate)]  # stride 1: any size gives these
    if all(s == 1 for s in strides) and all(before == after for before, after in pads):
        return tuple(before for before, _ in pads), None
    return (0,) * rank, SamePadding(kernel_size, strides, dilation_rate, value)


def spatial_rank(layer: Layer, valid=(1, 2, 3)) -> int:
    """The class's number of spatial axes; the rank-generic base classes themselves are not for use."""
    if layer.rank not in valid:
        raise TypeError(f"{describe(layer)}: use its 1D/2D/3D subclasses (they set the number of spatial "
                        f"axes). Received: rank={layer.rank}")
    return layer.rank


def transpose_padding(padding: str, kernel: int, stride: int, dilation: int,
                      output_padding: int | None) -> tuple[int, int, int]:
    """How ``conv_transpose`` makes the adjoint of a "valid"/"same" convolution along one axis.

    Returns ``(padding, output_padding, cut)`` for the op, ``cut`` being 1 where the result is one
    row too long: odd "same" padding puts its extra row at the end, which conv_transpose (symmetric
    ``padding``, ``output_padding >= 0``) cannot express, so that row is sliced off.
    """
    effective = (kernel - 1) * dilation + 1
    if padding == "valid":
        return 0, max(stride - effective, 0) if output_padding is None else output_padding, 0
    extra = stride - 1 if output_padding is None else output_padding  # output = (size - 1) * stride + 1 + extra
    before = max(effective - 1 - extra, 0) // 2  # the matching convolution's "same" padding before
    surplus = 1 + extra - effective + 2 * before  # the op's output length minus the wanted one
    return before, max(surplus, 0), max(-surplus, 0)


def _activation(identifier: Any) -> Callable | None:
    """None stays None (the forward skips the call); names resolve through ``deepzen.activations``."""
    if identifier is None:
        return None
    from deepzen import activations

    return activations.get(identifier)


def _regularizer(identifier: Any) -> Callable | None:
    if identifier is None:
        return None
    from deepzen import regularizers

    return regularizers.get(identifier)


def _regularization_terms(*pairs) -> list[tuple[torch.Tensor, Callable]]:
    return [(param, penalty) for param, penalty in pairs if param is not None and penalty is not None]


# -- convolutions ---------------------------------------------------------------------------------------
class BaseConv(ImageLayer):
    """An N-d convolution (N = the class attribute ``rank``); Conv1D/2D/3D set only ``rank``.

    Args:
        filters: output channels.
        kernel_size: int or tuple of ``rank`` ints.
        strides: int or tuple; default 1.
        padding: ``"valid"`` (none), ``"same"`` (Keras semantics: output ``ceil(size / stride)``), or an
            int / tuple of symmetric zero paddings as in PyTorch.
        dilation_rate: int or tuple; spacing between kernel taps.
        groups: input and output channels split into this many independent groups (both divisible by it).
        activation: name or callable applied to the output (default: none).
        use_bias: whether to add a per-filter bias.
        kernel_initializer / bias_initializer: names or callables (``deepzen.initializers``).
        kernel_regularizer / bias_regularizer / activity_regularizer: penalties added to the training
            loss (``deepzen.regularizers``).

        data_format: ``"channels_first"`` or ``"channels_last"`` (default: the global
            :func:`deepzen.config.image_data_format`, itself ``"channels_first"`` by default).

    Call arguments:
        x: ``(N, C_in, *spatial)`` channels first (``(N, *spatial, C_in)`` channels last).
            Returns ``(N, filters, *out_spatial)`` (``(N, *out_spatial, filters)``).

    Weights: ``weight`` ``(filters, C_in // groups, *kernel_size)``, ``bias`` ``(filters,)``.
    """

    rank: int = 0
    explicit_padding = True  # integer paddings allowed (not for transposed convolutions)

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", dilation_rate=1, groups: int = 1,
                 activation: Any = None, use_bias: bool = True, kernel_initializer: Any = "glorot_uniform",
                 bias_initializer: Any = "zeros", kernel_regularizer: Any = None, bias_regularizer: Any = None,
                 activity_regularizer: Any = None, **kwargs):
        super().__init__(**kwargs)
        where, rank = describe(self), spatial_rank(self)
        for arg, value in (("filters", filters), ("groups", groups)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{where} expects {arg} to be a positive integer. Received: {arg}={value!r}")
        if filters % groups:
            raise ValueError(f"{where} expects filters to be divisible by groups. "
                             f"Received: filters={filters}, groups={groups}")
        self.filters, self.groups = filters, groups
        self.kernel_size = normalize_tuple(kernel_size, rank, "kernel_size", where)
        self.strides = normalize_tuple(strides, rank, "strides", where)
        self.dilation_rate = normalize_tuple(dilation_rate, rank, "dilation_rate", where)
        self.padding = normalize_padding(padding, rank, where, self.explicit_padding)
        self.activation = _activation(activation)
        self.use_bias = use_bias
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.kernel_regularizer = _regularizer(kernel_regularizer)
        self.bias_regularizer = _regularizer(bias_regularizer)
        self.activity_regularizer = _regularizer(activity_regularizer)
        self.weight = self.bias = None
        self._conv = _CONV[rank]
        # Decided once: the op's own (symmetric) padding, plus an F.pad only where "same" needs one.
        self._padding, self._same_pad = plan_padding(self.padding, self.kernel_size, self.strides, self.dilation_rate)

    def kernel_shape(self, channels: int) -> tuple[int, ...]:
        return (self.filters, channels // self.groups, *self.kernel_size)

    def build_channels_first(self, input_shape):
        check_input_rank(self, input_shape, self.rank)
        where, received = f"Layer '{self.display_name}' ({type(self).__name__})", shape_str((None, *input_shape[1:]))
        if input_shape[1] % self.groups:
            raise ValueError(f"{where} expects input channels divisible by groups={self.groups}. "
                             f"Received: input_shape={received}")
        output_shape = self.output_shape_channels_first(input_shape)
        if any(size < 1 for size in output_shape[2:]):
            raise ValueError(f"{where}: input_shape={received} is smaller than its kernel (kernel_size="
                             f"{self.kernel_size}, dilation_rate={self.dilation_rate}, padding={self.padding!r}); "
                             f"the output would be {shape_str((None, *output_shape[1:]))}")
        self.create_weights(input_shape[1])

    def create_weights(self, channels: int) -> None:
        self.weight = self.new_parameter(self.kernel_shape(channels), self.kernel_initializer)
        self.bias = self.new_parameter((self.filters,), self.bias_initializer) if self.use_bias else None

    def output_shape_channels_first(self, input_shape):
        """``(N, C, *spatial)`` -> ``(N, filters, *out_spatial)``."""
        paddings = (self.padding,) * self.rank if isinstance(self.padding, str) else self.padding
        spatial = [conv_output_length(*axis) for axis in zip(input_shape[2:], self.kernel_size, self.strides, paddings,
                                                             self.dilation_rate)]
        return (input_shape[0], self.filters, *spatial)

    def convolve(self, x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None, groups: int) -> torch.Tensor:
        """The spatial convolution with this layer's strides, padding and dilation."""
        if self._same_pad is not None:
            x = self._same_pad(x)
        return self._conv(x, kernel, bias, self.strides, self._padding, self.dilation_rate, groups)

    def finish(self, out: torch.Tensor) -> torch.Tensor:
        """Activation, and the activity penalty when one is set."""
        if self.activation is not None:
            out = self.activation(out)
        if self.activity_regularizer is not None:
            self.record_activity(out, self.activity_regularizer)
        return out

    def call_channels_first(self, x):
        return self.finish(self.convolve(x, self.weight, self.bias, self.groups))  # (N, filters, *out_spatial)

    def regularization_terms(self):
        return _regularization_terms((self.weight, self.kernel_regularizer), (self.bias, self.bias_regularizer))


class Conv1D(BaseConv):
    """1-d convolution over ``(N, C, L)`` (channels first; Keras's default is ``(N, L, C)``). See :class:`BaseConv`."""

    rank = 1


class Conv2D(BaseConv):
    """2-d convolution over ``(N, C, H, W)`` (channels first; Keras's default is ``(N, H, W, C)``).

    See :class:`BaseConv` for the arguments.

    Example:
        >>> import torch
        >>> Conv2D(6, 5)(torch.randn(2, 1, 32, 32)).shape   # LeNet-5's C1
        torch.Size([2, 6, 28, 28])
    """

    rank = 2


class Conv3D(BaseConv):
    """3-d convolution over ``(N, C, D, H, W)`` (channels first). See :class:`BaseConv`."""

    rank = 3


class BaseConvTranspose(BaseConv):
    """An N-d transposed convolution: the gradient of the matching convolution w.r.t. its input.

    ``ConvNDTranspose(filters, k, strides=s, padding=p)`` maps ``(N, C, *spatial)`` to
    ``(N, filters, *out_spatial)`` such that ``ConvND(C, k, strides=s, padding=p)`` maps
    ``out_spatial`` back to ``spatial``; with the same weights it is that convolution's
    vector-Jacobian product (TensorFlow's ``conv2d_transpose``). Per axis, with
    ``k_eff = (k - 1) * dilation + 1``:

    - ``"valid"``: ``out = (size - 1) * s + k_eff + output_padding``, ``output_padding`` by default
      ``max(s - k_eff, 0)``;
    - ``"same"``: ``out = (size - 1) * s + 1 + output_padding``, by default ``s - 1``: ``out = size * s``.

    Args:
        filters, kernel_size, strides, dilation_rate, activation, use_bias, initializers, regularizers:
            as in :class:`BaseConv`.
        padding: ``"valid"`` or ``"same"``.
        output_padding: int or tuple in ``[0, strides)``: which of the ``strides`` output sizes that
            convolve to the same input size to produce (default: see above).

    Weights: ``weight`` ``(C_in, filters, *kernel_size)`` (PyTorch's transposed layout), ``bias`` ``(filters,)``.
    """

    explicit_padding = False

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", output_padding=None,
                 dilation_rate=1, activation: Any = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, bias_regularizer: Any = None, activity_regularizer: Any = None,
                 **kwargs):
        super().__init__(filters, kernel_size, strides, padding, dilation_rate, 1, activation, use_bias,
                         kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
                         activity_regularizer, **kwargs)
        where, rank = describe(self), self.rank
        if output_padding is not None:
            output_padding = normalize_tuple(output_padding, rank, "output_padding", where, minimum=0)
            if any(p >= s for p, s in zip(output_padding, self.strides)):
                raise ValueError(f"{where} expects each output_padding to be smaller than its stride. "
                                 f"Received: output_padding={output_padding}, strides={self.strides}")
        self.output_padding = output_padding
        # Replaces the plan BaseConv made for a forward convolution: conv_transpose pads nothing itself.
        self._conv, self._same_pad = _CONV_TRANSPOSE[rank], None
        plans = [transpose_padding(self.padding, k, s, d, None if output_padding is None else output_padding[i])
                 for i, (k, s, d) in enumerate(zip(self.kernel_size, self.strides, self.dilation_rate))]
        self._padding, self._output_padding, self._cut = (tuple(axis) for axis in zip(*plans))
        self._crop = (Ellipsis, *(slice(None, -c) if c else slice(None) for c in self._cut)) if any(self._cut) else None

    def kernel_shape(self, channels: int) -> tuple[int, ...]:
        return (channels, self.filters, *self.kernel_size)

    def output_shape_channels_first(self, input_shape):
        """``(N, C, *spatial)`` -> ``(N, filters, *out_spatial)``."""
        spatial = [(size - 1) * s - 2 * p + (k - 1) * d + 1 + op - c
                   for size, k, s, d, p, op, c in zip(input_shape[2:], self.kernel_size, self.strides,
                                                      self.dilation_rate, self._padding, self._output_padding,
                                                      self._cut)]
        return (input_shape[0], self.filters, *spatial)

    def call_channels_first(self, x):
        out = self._conv(x, self.weight, self.bias, self.strides, self._padding, self._output_padding, 1,
                         self.dilation_rate)  # (N, filters, *out_spatial (+1 where cut))
        if self._crop is not None:
            out = out[self._crop]
        return self.finish(out)


class Conv1DTranspose(BaseConvTranspose):
    """Transposed 1-d convolution over ``(N, C, L)`` (channels first). See :class:`BaseConvTranspose`."""

    rank = 1


class Conv2DTranspose(BaseConvTranspose):
    """Transposed 2-d convolution over ``(N, C, H, W)`` (channels first), e.g. a DCGAN generator's upsampling.

    See :class:`BaseConvTranspose` for the arguments and output sizes.

    Example:
        >>> import torch
        >>> Conv2DTranspose(16, 4, strides=2, padding="same")(torch.randn(2, 32, 7, 7)).shape
        torch.Size([2, 16, 14, 14])
    """

    rank = 2


class Conv3DTranspose(BaseConvTranspose):
    """Transposed 3-d convolution over ``(N, C, D, H, W)`` (channels first). See :class:`BaseConvTranspose`."""

    rank = 3


def _check_depth_multiplier(layer: Layer, depth_multiplier: Any) -> None:
    if not isinstance(depth_multiplier, int) or isinstance(depth_multiplier, bool) or depth_multiplier < 1:
        raise ValueError(f"{describe(layer)} expects depth_multiplier to be a positive integer. "
                         f"Received: depth_multiplier={depth_multiplier!r}")


class BaseDepthwiseConv(BaseConv):
    """Depthwise convolution: each input channel is convolved with its own ``depth_multiplier`` filters.

    A grouped convolution with ``groups = C_in`` and ``filters = C_in * depth_multiplier``, both set
    when the layer learns ``C_in`` on its first call.

    Args:
        kernel_size, strides, padding, dilation_rate, activation, use_bias: as in :class:`BaseConv`.
        bias_initializer, bias_regularizer, activity_regularizer: as in :class:`BaseConv`.
        depth_multiplier: output channels per input channel.
        depthwise_initializer / depthwise_regularizer: for the kernel.

    Call arguments:
        x: ``(N, C, *spatial)``. Returns ``(N, C * depth_multiplier, *out_spatial)``; output channel
        ``c * depth_multiplier + m`` is filter ``m`` of input channel ``c``.

    Weights: ``weight`` ``(C * depth_multiplier, 1, *kernel_size)``, ``bias`` ``(C * depth_multiplier,)``.
    """

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier: int = 1, dilation_rate=1,
                 activation: Any = None, use_bias: bool = True, depthwise_initializer: Any = "glorot_uniform",
                 bias_initializer: Any = "zeros", depthwise_regularizer: Any = None, bias_regularizer: Any = None,
                 activity_regularizer: Any = None, **kwargs):
        _check_depth_multiplier(self, depth_multiplier)
        super().__init__(depth_multiplier, kernel_size, strides, padding, dilation_rate, 1, activation, use_bias,
                         depthwise_initializer, bias_initializer, depthwise_regularizer, bias_regularizer,
                         activity_regularizer, **kwargs)
        self.depth_multiplier = depth_multiplier

    def output_shape_channels_first(self, input_shape):
        """``(N, C, *spatial)`` -> ``(N, C * depth_multiplier, *out_spatial)``."""
        batch, _, *spatial = super().output_shape_channels_first(input_shape)
        return (batch, input_shape[1] * self.depth_multiplier, *spatial)

    def build_channels_first(self, input_shape):
        if len(input_shape) >= 2:
            self.groups, self.filters = input_shape[1], input_shape[1] * self.depth_multiplier
        super().build_channels_first(input_shape)


class DepthwiseConv1D(BaseDepthwiseConv):
    """Depthwise 1-d convolution over ``(N, C, L)`` (channels first). See :class:`BaseDepthwiseConv`."""

    rank = 1


class DepthwiseConv2D(BaseDepthwiseConv):
    """Depthwise 2-d convolution over ``(N, C, H, W)`` (channels first), MobileNet's spatial filter.

    See :class:`BaseDepthwiseConv` for the arguments.

    Example:
        >>> import torch
        >>> DepthwiseConv2D(3, depth_multiplier=2, padding="same")(torch.randn(1, 4, 8, 8)).shape
        torch.Size([1, 8, 8, 8])
    """

    rank = 2


class BaseSeparableConv(BaseConv):
    """Depthwise-separable convolution: a depthwise convolution, then a 1x1 ("pointwise") convolution.

    Far fewer weights than a full convolution of the same shape (Xception, MobileNet):
    ``C * depth_multiplier * prod(kernel_size) + C * depth_multiplier * filters`` (+ ``filters`` biases).

    Args:
        filters: output channels of the pointwise convolution.
        kernel_size, strides, padding, dilation_rate: of the depthwise convolution (see :class:`BaseConv`).
        depth_multiplier: depthwise output channels per input channel.
        activation, use_bias, bias_initializer, bias_regularizer, activity_regularizer: as in
            :class:`BaseConv`; the bias is added after the pointwise convolution only.
        depthwise_initializer / pointwise_initializer, depthwise_regularizer / pointwise_regularizer:
            for the two kernels.

    Call arguments:
        x: ``(N, C, *spatial)``. Returns ``(N, filters, *out_spatial)``.

    Weights: ``depthwise_weight`` ``(C * depth_multiplier, 1, *kernel_size)``, ``pointwise_weight``
    ``(filters, C * depth_multiplier, 1, ..., 1)``, ``bias`` ``(filters,)``.
    """

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", depth_multiplier: int = 1,
                 dilation_rate=1, activation: Any = None, use_bias: bool = True,
                 depthwise_initializer: Any = "glorot_uniform", pointwise_initializer: Any = "glorot_uniform",
                 bias_initializer: Any = "zeros", depthwise_regularizer: Any = None, pointwise_regularizer: Any = None,
                 bias_regularizer: Any = None, activity_regularizer: Any = None, **kwargs):
        _check_depth_multiplier(self, depth_multiplier)
        super().__init__(filters, kernel_size, strides, padding, dilation_rate, 1, activation, use_bias,
                         depthwise_initializer, bias_initializer, depthwise_regularizer, bias_regularizer,
                         activity_regularizer, **kwargs)
        self.depth_multiplier = depth_multiplier
        self.pointwise_initializer = pointwise_initializer
        self.pointwise_regularizer = _regularizer(pointwise_regularizer)
        self.depthwise_weight = self.pointwise_weight = None

    def create_weights(self, channels: int) -> None:
        self.groups = channels  # of the depthwise step
        depth = channels * self.depth_multiplier
        self.depthwise_weight = self.new_parameter((depth, 1, *self.kernel_size), self.kernel_initializer)
        self.pointwise_weight = self.new_parameter((self.filters, depth, *(1,) * self.rank),
                                                   self.pointwise_initializer)
        self.bias = self.new_parameter((self.filters,), self.bias_initializer) if self.use_bias else None

    def call_channels_first(self, x):
        depthwise = self.convolve(x, self.depthwise_weight, None, self.groups)  # (N, C * multiplier, *out_spatial)
        return self.finish(self._conv(depthwise, self.pointwise_weight, self.bias))  # (N, filters, *out_spatial)

    def regularization_terms(self):
        return _regularization_terms((self.depthwise_weight, self.kernel_regularizer),
                                     (self.pointwise_weight, self.pointwise_regularizer),
                                     (self.bias, self.bias_regularizer))


class SeparableConv1D(BaseSeparableConv):
    """Depthwise-separable 1-d convolution over ``(N, C, L)`` (channels first). See :class:`BaseSeparableConv`."""

    rank = 1


class SeparableConv2D(BaseSeparableConv):
    """Depthwise-separable 2-d convolution over ``(N, C, H, W)`` (channels first).

    See :class:`BaseSeparableConv` for the arguments.

    Example:
        >>> import torch
        >>> SeparableConv2D(16, 3, padding="same")(torch.randn(2, 8, 10, 10)).shape
        torch.Size([2, 16, 10, 10])
    """

    rank = 2


# -- Keras 1 names ------------------------------------------------------------------------------------
def _deprecated_convolution(old_name: str, layer_class: type, rank: int):
    """Keras 1's ``old_name(nb_filter, *kernel axes, **kwargs)``: builds a ``layer_class`` and warns."""
    new_name = layer_class.__name__

    def convolution(*args, **kwargs):
        warnings.warn(f"{old_name} is Keras 1's name; use {new_name} instead", DeprecationWarning, stacklevel=2)
        if rank > 1 and len(args) == rank + 1:  # Convolution2D(32, 3, 3): one kernel size per axis
            args = (args[0], tuple(args[1:]))
        return layer_class(*args, **kwargs)

    convolution.__name__ = convolution.__qualname__ = old_name
    convolution.__doc__ = (f"Keras 1's name of :class:`deepzen.layers.{new_name}` (also its positional "
                           f"kernel axes); returns a {new_name} and warns.")
    return convolution


Convolution1D = _deprecated_convolution("Convolution1D", Conv1D, 1)
Convolution2D = _deprecated_convolution("Convolution2D", Conv2D, 2)
Convolution3D = _deprecated_convolution("Convolution3D", Conv3D, 3)
AtrousConvolution1D = _deprecated_convolution("AtrousConvolution1D", Conv1D, 1)  # atrous_rate= -> dilation_rate=
AtrousConvolution2D = _deprecated_convolution("AtrousConvolution2D", Conv2D, 2)
Deconvolution2D = _deprecated_convolution("Deconvolution2D", Conv2DTranspose, 2)
