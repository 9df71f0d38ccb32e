"""Semantic segmentation: a U-Net (or an FCN) that up-samples with transposed convolutions, and mask overlays.

Pooling halves the feature maps, so a classifier's last maps are coarse; a segmentation network must
give a class to every input pixel. :func:`unet` recovers the resolution with ``Conv2DTranspose``
(a learned up-sampling, Long et al. 2015's "deconvolution"), and, as in Ronneberger et al. (2015),
concatenates each up-sampled map with the encoder's map of the same size, whose fine detail pooling
had thrown away. With ``skips=False`` it is a plain encoder-decoder FCN that up-samples from the
bottleneck alone.

The network ends with the class axis LAST, ``(N, H, W, C)`` logits, which is what deepzen's losses
and metrics take (``sparse_categorical_crossentropy``, :class:`deepzen.losses.Dice`,
:class:`deepzen.metrics.MeanIoU`) with ``(N, H, W)`` class-id masks.

Example:
    >>> model = unet(num_classes=3, input_shape=(1, 32, 32), filters=4, depth=2)
    >>> model.predict(np.zeros((2, 1, 32, 32), np.float32)).shape
    (2, 32, 32, 3)
"""

from __future__ import annotations

import numpy as np

from deepzen.layers import (Activation, BatchNormalization, Concatenate, Conv2D, Conv2DTranspose, Dense,
                            GlobalAveragePooling2D, Input, MaxPooling2D, Permute, Rescaling)
from deepzen.models import Model

PALETTE = np.array([
    [0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128],
    [220, 190, 255], [170, 110, 40], [128, 0, 0], [170, 255, 195], [128, 128, 0], [0, 0, 128],
], np.uint8)
"""RGB colour of each class id (background black); ids past the table wrap around (skipping black)."""


BN_MOMENTUM = 0.9  # PyTorch's default update (Keras's is 0.99): the moving statistics settle in a short CPU run


def _conv_block(x, filters: int, name: str):
    """Two 3x3 convolutions with batch normalization and ReLU; the spatial size is kept."""
    for index in (1, 2):
        x = Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{index}")(x)
        x = BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn{index}")(x)
        x = Activation("relu", name=f"{name}_relu{index}")(x)
    return x


def unet(num_classes: int, input_shape: tuple[int, int, int] = (1, 64, 64), *, filters: int = 16, depth: int = 3,
         skips: bool = True, scale: float = 1 / 255, name: str | None = None) -> Model:
    """A U-Net (Ronneberger et al. 2015) built from deepzen layers, small enough for a CPU.

    Each of the ``depth`` encoder levels is a conv block (two 3x3 convolutions, batch norm, ReLU)
    followed by 2x2 max pooling, doubling the filters; the bottleneck is a conv block; each decoder
    level up-samples by 2 with a 2x2 ``Conv2DTranspose`` of stride 2, concatenates the encoder's map
    of that size (``skips=True``), and applies a conv block; a 1x1 convolution gives the class
    scores, and a ``Permute`` puts the class axis last.

    Args:
        num_classes: C, the classes of a pixel (background included).
        input_shape: ``(channels, height, width)``; height and width divisible by ``2 ** depth``.
        filters: the first level's filters (the bottleneck has ``filters * 2 ** depth``).
        depth: the number of poolings (and of up-samplings).
        skips: concatenate the encoder's maps into the decoder (U-Net); False: a plain FCN decoder.
        scale: the inputs are multiplied by it first (1/255 for uint8 pixels; 1.0 for scaled ones).
        name: the model's name (default "unet" or "fcn").

    Returns:
        A functional :class:`~deepzen.models.Model`: ``(N, channels, H, W)`` -> ``(N, H, W, C)`` logits.
    """
    channels, height, width = input_shape
    if num_classes < 2 or depth < 1 or filters < 1:
        raise ValueError(f"unet expects num_classes >= 2, depth >= 1 and filters >= 1. Received: "
                         f"num_classes={num_classes}, depth={depth}, filters={filters}")
    if height % 2 ** depth or width % 2 ** depth:
        raise ValueError(f"unet with depth={depth} expects a height and width divisible by {2 ** depth}. "
                         f"Received: input_shape={tuple(input_shape)}")
    inputs = Input((channels, height, width), name="image")
    x = Rescaling(scale, name="rescale")(inputs)
    encoder_maps = []
    for level in range(depth):
        x = _conv_block(x, filters * 2 ** level, f"down{level + 1}")    # (N, f * 2^l, H / 2^l, W / 2^l)
        encoder_maps.append(x)
        x = MaxPooling2D(2, name=f"pool{level + 1}")(x)
    x = _conv_block(x, filters * 2 ** depth, "bottleneck")               # (N, f * 2^d, H / 2^d, W / 2^d)
    for level in reversed(range(depth)):
        x = Conv2DTranspose(filters * 2 ** level, 2, strides=2, name=f"up{level + 1}_transpose")(x)  # size x 2
        if skips:
            x = Concatenate(axis=1, name=f"up{level + 1}_skip")([x, encoder_maps[level]])
        x = _conv_block(x, filters * 2 ** level, f"up{level + 1}")
    x = Conv2D(num_classes, 1, name="classifier")(x)                    # (N, C, H, W)
    outputs = Permute((2, 3, 1), name="classes_last")(x)                # (N, H, W, C)
    return Model(inputs, outputs, name=name or ("unet" if skips else "fcn"))


def encoder_classifier(model: Model, num_classes: int, input_shape: tuple[int, int, int]) -> Model:
    """An image classifier built on the encoder of a :func:`unet` model, sharing its layers and weights.

    The input goes through the U-Net's rescaling, down blocks and bottleneck, then a global average
    and a new dense layer. Training it on labelled images (MNIST's digits for the digit scenes)
    teaches the encoder what the classes look like, which per-pixel labels teach slowly: the
    segmentation network starts from those weights, as U-Nets start from ImageNet encoders.

    Args:
        model: a :func:`unet` model.
        num_classes: the classifier's classes.
        input_shape: ``(channels, height, width)`` of its images (channels as the U-Net's).

    Returns:
        ``(N, *input_shape)`` -> ``(N, num_classes)`` logits.
    """
    inputs = Input(tuple(input_shape), name="classifier_image")
    x = model.get_layer("rescale")(inputs)
    blocks = [f"down{level}" for level in range(1, 100) if _has_layer(model, f"down{level}_conv1")] + ["bottleneck"]
    for block in blocks:
        for index in (1, 2):
            for part in ("conv", "bn", "relu"):
                x = model.get_layer(f"{block}_{part}{index}")(x)
        if block != "bottleneck":
            x = model.get_layer(f"pool{block[4:]}")(x)
    x = GlobalAveragePooling2D(name="classifier_pool")(x)
    return Model(inputs, Dense(num_classes, name="classifier_logits")(x), name=f"{model.name}_encoder_classifier")


def _has_layer(model: Model, name: str) -> bool:
    return any(getattr(module, "name", None) == name for module in model.modules())


def colour_mask(mask: np.ndarray) -> np.ndarray:
    """Class ids ``(..., H, W)`` -> RGB ``(..., H, W, 3)`` uint8 with :data:`PALETTE`'s colours."""
    mask = np.asarray(mask)
    if mask.size and mask.min() < 0:
        raise ValueError(f"colour_mask expects class ids >= 0. Received: {mask.min()}")
    wrapped = np.where(mask < len(PALETTE), mask, 1 + (mask - 1) % (len(PALETTE) - 1))
    return PALETTE[wrapped]


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """An image with its mask's colours blended in where the mask is not background (class 0).

    Args:
        image: ``(H, W)`` grey or ``(H, W, 3)`` RGB, uint8.
        mask: ``(H, W)`` class ids.
        alpha: the colour's weight on a labelled pixel.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    image = np.asarray(image)
    rgb = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image
    if rgb.shape[:2] != np.shape(mask) or rgb.shape[-1] != 3:
        raise ValueError(f"overlay expects an image (H, W) or (H, W, 3) and a mask (H, W) of the same size. "
                         f"Received: image {image.shape}, mask {np.shape(mask)}")
    labelled = (np.asarray(mask) > 0)[..., None]
    blended = (1 - alpha) * rgb.astype(np.float32) + alpha * colour_mask(mask).astype(np.float32)
    return np.where(labelled, blended, rgb).round().clip(0, 255).astype(np.uint8)
