"""Video classifiers: C3D-style and R(2+1)D-style 3D CNNs, and a 2D CNN averaged over the frames.

Clips are ``(N, C, T, H, W)``, PyTorch's layout for 3D convolutions. A 3D convolution slides its
kernel over time as well as space, so it sees how the picture changes from frame to frame: motion.
The baseline, :func:`frame_average`, applies one 2D CNN to every frame and averages the frames'
features, so it sees which things appear but not in which order: it cannot tell a digit moving
left from the same clip played backwards, moving right.

- :func:`c3d`: Tran et al. (2015): 3x3x3 convolutions throughout, the first pooling spatial only
  (1x2x2) so early layers keep the temporal detail, then 2x2x2 poolings.
- :func:`r2plus1d`: Tran et al. (2018): every 3x3x3 convolution factored into a 1x3x3 spatial one
  and a 3x1x1 temporal one, with a ReLU between (twice the non-linearities at the same parameter
  count), in residual blocks.
- :func:`frame_average`: the same number of 2D stages, per frame, then the mean over time.

All three take ``(N, C, T, H, W)`` pixels (rescaled by ``scale`` first) and return
``(N, *output_shape)`` logits; ``output_shape=(10, 5)`` gives one 5-way prediction per digit class
(see :mod:`deepzen.data.moving_mnist`).

Example:
    >>> clips = np.zeros((2, 1, 8, 32, 32), np.float32)
    >>> [create(name, (10, 5), clips.shape[1:], filters=4).predict(clips).shape
    ...  for name in ("c3d", "r2plus1d", "frame_average")]
    [(2, 10, 5), (2, 10, 5), (2, 10, 5)]
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from deepzen.layers import (Activation, Add, BatchNormalization, Conv2D, Conv3D, Dense, GlobalAveragePooling1D,
                            GlobalAveragePooling2D, GlobalAveragePooling3D, Input, MaxPooling2D, MaxPooling3D, Permute,
                            Rescaling, Reshape, TimeDistributed)
from deepzen.models import Model
from deepzen.vision.segmentation import BN_MOMENTUM


def _conv_bn_relu(x, conv_class, filters: int, kernel, strides, name: str):
    x = conv_class(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return Activation("relu", name=f"{name}_relu")(x)


def _head(features, output_shape: Sequence[int], inputs, name: str) -> Model:
    """Dense logits ``(N, prod(output_shape))`` reshaped to ``(N, *output_shape)``."""
    x = Dense(math.prod(output_shape), name="logits")(features)
    if len(output_shape) > 1:
        x = Reshape(tuple(output_shape), name="logits_by_slot")(x)
    return Model(inputs, x, name=name)


def _check(input_shape: Sequence[int], filters: int, where: str) -> None:
    if len(input_shape) != 4 or filters < 1:
        raise ValueError(f"{where} expects input_shape (C, T, H, W) and filters >= 1. "
                         f"Received: input_shape={tuple(input_shape)}, filters={filters}")


def c3d(output_shape: Sequence[int], input_shape: Sequence[int] = (1, 20, 64, 64), *, filters: int = 16,
        scale: float = 1 / 255, name: str = "c3d") -> Model:
    """A small C3D: four 3x3x3 conv stages (the first with a 1x2x2 stride), pooling, global average, dense.

    Shapes for the default 20x64x64 grey clips, f = ``filters``:
    ``(N, 1, 20, 64, 64)`` -> conv stride 1x2x2 ``(N, f, 20, 32, 32)`` -> pool 1x2x2 ``(N, f, 20, 16, 16)``
    -> conv, pool 2x2x2 ``(N, 2f, 10, 8, 8)`` -> conv, pool 2x2x2 ``(N, 4f, 5, 4, 4)`` -> conv
    ``(N, 8f, 5, 4, 4)`` -> global average ``(N, 8f)`` -> logits.

    Args:
        output_shape: the logits' shape per clip, e.g. ``(10,)`` or ``(10, 5)``.
        input_shape: ``(C, T, H, W)``.
        filters: the first stage's filters, doubled at each stage.
        scale: the inputs are multiplied by it first (1/255 for uint8 pixels).
        name: the model's name.
    """
    _check(input_shape, filters, "c3d")
    inputs = Input(tuple(input_shape), name="clip")
    x = Rescaling(scale, name="rescale")(inputs)
    x = _conv_bn_relu(x, Conv3D, filters, 3, (1, 2, 2), "stage1")
    x = MaxPooling3D((1, 2, 2), name="pool1")(x)  # keep every frame: motion is read in the next stages
    for stage in (2, 3):
        x = _conv_bn_relu(x, Conv3D, filters * 2 ** (stage - 1), 3, 1, f"stage{stage}")
        x = MaxPooling3D(2, padding="same", name=f"pool{stage}")(x)
    x = _conv_bn_relu(x, Conv3D, filters * 8, 3, 1, "stage4")
    return _head(GlobalAveragePooling3D(name="pool")(x), output_shape, inputs, name)


def _r2plus1d_unit(x, filters: int, strides, name: str, in_filters: int):
    """A (2+1)D convolution: 1x3x3 spatial then 3x1x1 temporal, with batch norm and ReLU between.

    The middle width keeps the parameters of a full 3x3x3 convolution (Tran et al. 2018, eq. 1):
    ``M = floor(27 * N_in * N_out / (9 * N_in + 3 * N_out))``.
    """
    middle = max(1, (27 * in_filters * filters) // (9 * in_filters + 3 * filters))
    time_stride, space_stride = (strides, strides) if isinstance(strides, int) else (strides[0], strides[1])
    x = _conv_bn_relu(x, Conv3D, middle, (1, 3, 3), (1, space_stride, space_stride), f"{name}_spatial")
    x = Conv3D(filters, (3, 1, 1), strides=(time_stride, 1, 1), padding="same", use_bias=False,
               name=f"{name}_temporal_conv")(x)
    return BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_temporal_bn")(x)


def _r2plus1d_block(x, filters: int, strides, name: str, in_filters: int):
    """A residual block of two (2+1)D units; a strided 1x1x1 projection when the shape changes."""
    shortcut = x
    x = Activation("relu", name=f"{name}_relu1")(_r2plus1d_unit(x, filters, strides, f"{name}_a", in_filters))
    x = _r2plus1d_unit(x, filters, 1, f"{name}_b", filters)
    if strides != 1 or in_filters != filters:
        shortcut = Conv3D(filters, 1, strides=strides, use_bias=False, name=f"{name}_project")(shortcut)
        shortcut = BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_project_bn")(shortcut)
    return Activation("relu", name=f"{name}_relu2")(Add(name=f"{name}_add")([x, shortcut]))


def r2plus1d(output_shape: Sequence[int], input_shape: Sequence[int] = (1, 20, 64, 64), *, filters: int = 16,
             scale: float = 1 / 255, name: str = "r2plus1d") -> Model:
    """A small R(2+1)D: a (2+1)D stem with a 1x2x2 stride, three residual stages, global average, dense.

    Shapes for the default 20x64x64 grey clips, f = ``filters``: stem ``(N, f, 20, 32, 32)``, pool 1x2x2
    ``(N, f, 20, 16, 16)``, stage 1 ``(N, f, 20, 16, 16)``, stage 2 (stride 2) ``(N, 2f, 10, 8, 8)``,
    stage 3 (stride 2) ``(N, 4f, 5, 4, 4)``, global average ``(N, 4f)``, logits.

    Args: as for :func:`c3d`.
    """
    _check(input_shape, filters, "r2plus1d")
    inputs = Input(tuple(input_shape), name="clip")
    x = Rescaling(scale, name="rescale")(inputs)
    x = Activation("relu", name="stem_relu")(_r2plus1d_unit(x, filters, (1, 2), "stem", input_shape[0]))
    x = MaxPooling3D((1, 2, 2), name="stem_pool")(x)
    in_filters = filters
    for stage, (stage_filters, strides) in enumerate([(filters, 1), (filters * 2, 2), (filters * 4, 2)], start=1):
        x = _r2plus1d_block(x, stage_filters, strides, f"stage{stage}", in_filters)
        in_filters = stage_filters
    return _head(GlobalAveragePooling3D(name="pool")(x), output_shape, inputs, name)


def frame_average(output_shape: Sequence[int], input_shape: Sequence[int] = (1, 20, 64, 64), *, filters: int = 16,
                  scale: float = 1 / 255, name: str = "frame_average") -> Model:
    """The baseline: one 2D CNN applied to every frame, its features averaged over the frames, dense logits.

    The 2D CNN mirrors :func:`c3d` with 3x3 kernels: a stride-2 conv, pooling, two conv + pool
    stages and a last conv (f, 2f, 4f, 8f filters), then a global average per frame ``(N, T, 8f)``
    and the mean over the T frames ``(N, 8f)``. The mean ignores the frames' order.

    Args: as for :func:`c3d`.
    """
    _check(input_shape, filters, "frame_average")
    inputs = Input(tuple(input_shape), name="clip")
    x = Rescaling(scale, name="rescale")(inputs)
    x = Permute((2, 1, 3, 4), name="frames_first")(x)  # (N, T, C, H, W): TimeDistributed runs over axis 1
    frame = lambda layer: TimeDistributed(layer, name=f"frames_{layer.name}")  # noqa: E731
    x = frame(Conv2D(filters, 3, strides=2, padding="same", activation="relu", name="stage1"))(x)
    x = frame(MaxPooling2D(2, name="pool1"))(x)
    for stage in (2, 3):
        x = frame(Conv2D(filters * 2 ** (stage - 1), 3, padding="same", activation="relu", name=f"stage{stage}"))(x)
        x = frame(MaxPooling2D(2, padding="same", name=f"pool{stage}"))(x)
    x = frame(Conv2D(filters * 8, 3, padding="same", activation="relu", name="stage4"))(x)
    x = frame(GlobalAveragePooling2D(name="pool"))(x)  # (N, T, 8f)
    x = GlobalAveragePooling1D(data_format="channels_last", name="mean_over_frames")(x)  # (N, 8f)
    return _head(x, output_shape, inputs, name)


MODELS: dict[str, Callable[..., Model]] = {"c3d": c3d, "r2plus1d": r2plus1d, "frame_average": frame_average}


def create(name: str, output_shape: Sequence[int], input_shape: Sequence[int] = (1, 20, 64, 64), **options) -> Model:
    """One of :data:`MODELS` by name: ``create("c3d", (10, 5))``.

    Raises:
        ValueError: for an unknown name (listing the known ones).
    """
    if name not in MODELS:
        raise ValueError(f"Unknown video model {name!r}. Expected one of: {', '.join(MODELS)}")
    return MODELS[name](output_shape, input_shape, **options)
