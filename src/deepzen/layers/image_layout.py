"""Image layers' layout: ``data_format``, Keras's global setting, and the channels-last warning.

Every image layer (convolutions, pooling, upsampling, padding, cropping) subclasses :class:`ImageLayer`.
It computes channels first, ``(N, C, *spatial)``, PyTorch's layout; with
``data_format="channels_last"`` it takes and returns ``(N, *spatial, C)`` and moves the channel axis
on the way in and out. Those moves are views, and an ``(N, H, W, C)`` tensor seen as ``(N, C, H, W)`` is
exactly PyTorch's ``channels_last`` memory format, which cuDNN convolves without a copy. The weights
keep PyTorch's layout in both formats, so one state dict serves both.

``data_format=None`` means the global :func:`deepzen.config.image_data_format` at construction
(default ``"channels_first"``); the resolved value is what ``get_config`` saves.

Under ``channels_first`` an input whose per-sample shape looks channels-last — ``(28, 28, 1)``,
``(32, 32, 3)`` — would be read as 28 channels of 28x1 images, so the layer warns when it builds
(:class:`ImageLayoutWarning`), naming the setting that fixes it.
"""

from __future__ import annotations

import warnings

from deepzen import config
from deepzen.layers.base import STEPS_FEATURES, Layer, shape_str

LIKELY_CHANNELS = (1, 3, 4)  # grey, RGB, RGBA


def normalize_pairs(value, rank: int, arg: str, where: str) -> tuple[tuple[int, int], ...]:
    """Keras's padding/cropping amounts -> one (before, after) pair of integers >= 0 per spatial axis.

    Accepts an int (every side), ``rank`` ints (symmetric per axis), ``rank`` pairs, and in 1-d also
    one pair ``(before, after)``, as Keras's ZeroPadding1D/Cropping1D do.
    """
    def integer(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    items = tuple(value) if isinstance(value, (tuple, list)) else None
    if integer(value):
        pairs = [(value, value)] * rank
    elif rank == 1 and items is not None and len(items) == 2 and all(map(integer, items)):
        pairs = [items]
    elif items is not None and len(items) == rank and all(map(integer, items)):
        pairs = [(v, v) for v in items]
    elif items is not None and len(items) == rank and all(
            isinstance(p, (tuple, list)) and len(p) == 2 and all(map(integer, p)) for p in items):
        pairs = [tuple(p) for p in items]
    else:
        raise ValueError(f"{where} expects {arg} as {rank} (before, after) pairs, {rank} integers >= 0 or one "
                         f"integer >= 0. Received: {arg}={value!r}")
    return tuple((int(a), int(b)) for a, b in pairs)


class ImageLayoutWarning(UserWarning):
    """An image layer under channels_first received a shape that looks channels-last."""


def looks_channels_last(sample_shape: tuple[int, ...], rank: int) -> bool:
    """Whether a per-sample shape of a ``rank``-d image layer looks like ``(*spatial, channels)``.

    The heuristic: 2-d or 3-d images, a last axis of 1, 3 or 4 (grey, RGB, RGBA) and every other axis at
    least 8 (``(28, 28, 1)``, ``(8, 8, 1)``, ``(32, 32, 3)``; few channels-first feature maps are 1-4 wide).
    """
    return (rank >= 2 and len(sample_shape) == rank + 1 and sample_shape[-1] in LIKELY_CHANNELS
            and all(size >= 8 for size in sample_shape[:-1]))


class ImageLayer(Layer):
    """Base of layers over ``rank`` spatial axes with a channel axis; see the module docstring.

    Subclasses implement ``build_channels_first(input_shape)``, ``call_channels_first(x)`` and
    ``output_shape_channels_first(input_shape)`` on channels-first shapes and tensors.

    Args:
        data_format: ``"channels_first"`` (``(N, C, *spatial)``) or ``"channels_last"``
            (``(N, *spatial, C)``); default: :func:`deepzen.config.image_data_format`.
    """

    rank: int = 0

    def __init__(self, *, data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = config.normalize_data_format(data_format, type(self).__name__)
        self.channels_last = self.data_format == "channels_last"
        if "_init_arguments" in self.__dict__:
            self._init_arguments["data_format"] = self.data_format  # saved resolved: independent of the global

    def channels_first_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(N, *spatial, C)`` -> ``(N, C, *spatial)`` under channels_last; unchanged otherwise."""
        shape = tuple(shape)
        return (shape[0], shape[-1], *shape[1:-1]) if self.channels_last and len(shape) > 2 else shape

    def layout_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The inverse of :meth:`channels_first_shape`: a channels-first shape in this layer's layout."""
        shape = tuple(shape)
        return (shape[0], *shape[2:], shape[1]) if self.channels_last and len(shape) > 2 else shape

    def build_for(self, x):
        if not self.built and self.rank == 1 and not self.channels_last and getattr(x, STEPS_FEATURES, False):
            steps, features = x.shape[1:]
            warnings.warn(
                f"Layer '{self.display_name}' ({type(self).__name__}) received {shape_str((None, steps, features))} "
                f"from an Embedding or a recurrent layer, which gives (batch, steps, features), but it reads "
                f"(batch, channels, steps) because data_format='channels_first' (deepzen's default, PyTorch's "
                f"layout): {steps} channels of {features} steps. Keras's 1-d layers read (batch, steps, features): "
                f"pass data_format='channels_last' to the 1-d layers, call "
                f"deepzen.config.set_image_data_format('channels_last') before building the model, or put "
                f"Permute((2, 1)) in front.", ImageLayoutWarning, stacklevel=2)
        super().build_for(x)

    def build(self, input_shape):
        if not self.channels_last and looks_channels_last(tuple(input_shape[1:]), self.rank):
            warnings.warn(
                f"Layer '{self.display_name}' ({type(self).__name__}) received input_shape="
                f"{shape_str((None, *input_shape[1:]))}, which looks channels-last (spatial axes, then "
                f"{input_shape[-1]} channel(s)), but it reads (batch, channels, *spatial) because "
                f"data_format='channels_first' (deepzen's default, PyTorch's layout). If the last axis holds "
                f"the channels, pass data_format='channels_last' to the image layers or call "
                f"deepzen.config.set_image_data_format('channels_last') before building the model; or feed "
                f"{shape_str((None, input_shape[-1], *input_shape[1:-1]))}.", ImageLayoutWarning, stacklevel=2)
        self.build_channels_first(self.channels_first_shape(input_shape))

    def build_channels_first(self, input_shape: tuple[int, ...]) -> None:
        """Creates weights / checks shapes for the channels-first ``input_shape``."""

    def compute_output_shape(self, input_shape):
        """The output shape for ``input_shape``, both in this layer's ``data_format``."""
        return self.layout_shape(self.output_shape_channels_first(self.channels_first_shape(input_shape)))

    def output_shape_channels_first(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(input_shape)

    def forward(self, x):
        if self.channels_last:
            return self.call_channels_first(x.movedim(-1, 1)).movedim(1, -1)  # (N, *spatial, C) views
        return self.call_channels_first(x)

    def call_channels_first(self, x):
        raise NotImplementedError
