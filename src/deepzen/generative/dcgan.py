"""DCGAN (Radford, Metz & Chintala 2016): a generator and a discriminator sized by the image shape.

The generator projects noise with a dense layer onto a small feature map and doubles its size with
stride-2 transposed convolutions until it has the image's size; the discriminator mirrors it with
stride-2 convolutions and ends in one logit. The paper's recipe is kept: batch normalization in
both networks except the generator's output and the discriminator's input layer, ReLU in the
generator, leaky ReLU (slope 0.2) in the discriminator, tanh output (images in [-1, 1]), no
pooling, and weights drawn from N(0, 0.02) (batch-norm scales from N(1, 0.02)).

How many stride-2 stages an image shape gets: its height and width are halved while both stay
even and at least 4, so 28x28 (MNIST) starts from 7x7 (2 stages), 32x32 from 4x4 (3 stages) and
64x64 from 4x4 (4 stages, the paper's LSUN network). Channels double at each stage down from the
image, starting at ``base_filters``.

Example:
    >>> import torch
    >>> generator = dcgan_generator((1, 28, 28), latent_dim=16, base_filters=8)
    >>> images = generator(torch.randn(4, 16))
    >>> tuple(images.shape)
    (4, 1, 28, 28)
    >>> tuple(dcgan_discriminator((1, 28, 28), base_filters=8)(images).shape)
    (4, 1)
"""

from __future__ import annotations

from typing import Sequence

import torch

from deepzen.initializers import RandomNormal
from deepzen.layers import (Activation, BatchNormalization, Conv2D, Conv2DTranspose, Dense, Flatten, Input, Layer,
                            Reshape, SpectralNormalization)
from deepzen.models import Sequential

KERNEL_SIZE = 4  # the paper's 4x4 kernels: stride 2 then covers each pixel exactly twice
SMALLEST_START = 4  # the generator's first feature map is at least 4x4


def dcgan_weights() -> RandomNormal:
    """The paper's initialization of every convolution and dense kernel: N(0, 0.02)."""
    return RandomNormal(0.0, 0.02)


def _batch_norm() -> BatchNormalization:
    # PyTorch's momentum and epsilon (Keras momentum 0.9 = torch's 0.1): the moving statistics that
    # generate() uses follow the fast-changing generator closely.
    return BatchNormalization(momentum=0.9, epsilon=1e-5, gamma_initializer=RandomNormal(1.0, 0.02))


def check_image_shape(image_shape: Sequence[int], where: str) -> tuple[int, int, int]:
    """``(channels, height, width)`` as a tuple of positive integers, or a ``ValueError``."""
    shape = tuple(image_shape) if isinstance(image_shape, (tuple, list)) else ()
    if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ValueError(f"{where} expects image_shape=(channels, height, width), channels first, with positive "
                         f"integers. Received: image_shape={image_shape!r}")
    return shape


def upsampling_plan(image_shape: Sequence[int]) -> tuple[int, tuple[int, int]]:
    """How many stride-2 stages an image gets, and the (height, width) of the first feature map.

    Example:
        >>> upsampling_plan((1, 28, 28)), upsampling_plan((3, 64, 64))
        ((2, (7, 7)), (4, (4, 4)))
    """
    _, height, width = check_image_shape(image_shape, "upsampling_plan")
    stages = 0
    while all(size % 2 == 0 and size // 2 >= SMALLEST_START for size in (height, width)):
        height, width, stages = height // 2, width // 2, stages + 1
    if stages == 0:
        raise ValueError(f"DCGAN expects an image height and width that are even and at least {2 * SMALLEST_START} "
                         f"(e.g. 28, 32 or 64), so they can be halved at least once. "
                         f"Received: image_shape={tuple(image_shape)}")
    return stages, (height, width)


class MinibatchStdDev(Layer):
    """Appends a channel holding the batch's mean standard deviation (Karras et al. 2018, ProGAN).

    The discriminator sees real and generated batches separately, so this one number tells it how
    varied a batch is: a generator that draws the same few digits gets caught, which pushes it to
    cover every mode. The standard deviation of each feature over the batch is averaged into one
    scalar and broadcast as an extra channel.

    Call arguments:
        x: (N, C, *spatial) feature maps.

    Returns:
        (N, C + 1, *spatial).

    Example:
        >>> x = torch.tensor([[[[0.0]]], [[[2.0]]]])   # (2, 1, 1, 1): standard deviation 1
        >>> MinibatchStdDev()(x)[:, 1].flatten().tolist()
        [1.0, 1.0]
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spread = (x.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()  # scalar
        return torch.cat([x, spread.expand(x.shape[0], 1, *x.shape[2:])], dim=1)  # (N, C + 1, *spatial)


def dcgan_generator(image_shape: Sequence[int] = (1, 28, 28), latent_dim: int = 100,
                    base_filters: int = 64) -> Sequential:
    """The DCGAN generator: noise -> dense projection -> stride-2 transposed convolutions -> tanh image.

    Args:
        image_shape: ``(channels, height, width)`` of the images to generate, channels first.
        latent_dim: size of the noise vector z.
        base_filters: channels of the last hidden feature map (the paper's 64 for 64x64 images);
            each earlier stage has twice as many.

    Call arguments:
        z: (N, latent_dim) noise, N(0, 1) in the paper.

    Returns:
        A :class:`~deepzen.models.Sequential` mapping (N, latent_dim) -> (N, *image_shape) in [-1, 1].
    """
    for arg, value in (("latent_dim", latent_dim), ("base_filters", base_filters)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"dcgan_generator expects {arg} to be a positive integer. Received: {arg}={value!r}")
    channels = check_image_shape(image_shape, "dcgan_generator")[0]
    stages, (height, width) = upsampling_plan(image_shape)
    filters = base_filters * 2 ** (stages - 1)
    layers = [
        Input((latent_dim,)),
        Dense(filters * height * width, use_bias=False, kernel_initializer=dcgan_weights()),
        Reshape((filters, height, width)),  # (N, filters, h0, w0)
        _batch_norm(),
        Activation("relu"),
    ]
    for _ in range(stages - 1):
        filters //= 2
        layers += [Conv2DTranspose(filters, KERNEL_SIZE, strides=2, padding="same", use_bias=False,
                                   kernel_initializer=dcgan_weights()),  # (N, filters, 2h, 2w)
                   _batch_norm(),
                   Activation("relu")]
    layers.append(Conv2DTranspose(channels, KERNEL_SIZE, strides=2, padding="same", activation="tanh",
                                  kernel_initializer=dcgan_weights()))  # (N, *image_shape)
    return Sequential(layers, name="dcgan_generator")


def dcgan_discriminator(image_shape: Sequence[int] = (1, 28, 28), base_filters: int = 64,
                        minibatch_std: bool = False, spectral_norm: bool = False) -> Sequential:
    """The DCGAN discriminator: stride-2 convolutions with leaky ReLU -> one logit per image.

    Args:
        image_shape: ``(channels, height, width)`` of the images, channels first.
        base_filters: channels of the first convolution; each later stage has twice as many.
        minibatch_std: add a :class:`MinibatchStdDev` channel before the output layer (not in the
            DCGAN paper; helps the generator cover all modes).
        spectral_norm: normalize every convolution and the output layer by its largest singular value
            (:class:`~deepzen.layers.SpectralNormalization`, Miyato et al. 2018) instead of batch norm.

    Call arguments:
        images: (N, *image_shape) in [-1, 1].

    Returns:
        A :class:`~deepzen.models.Sequential` mapping images to (N, 1) logits (real > 0 > fake).
    """
    if not isinstance(base_filters, int) or isinstance(base_filters, bool) or base_filters < 1:
        raise ValueError(f"dcgan_discriminator expects base_filters to be a positive integer. "
                         f"Received: base_filters={base_filters!r}")
    image_shape = check_image_shape(image_shape, "dcgan_discriminator")
    stages, _ = upsampling_plan(image_shape)
    normalized = SpectralNormalization if spectral_norm else (lambda layer: layer)
    layers = [
        Input(image_shape),
        # No batch norm on the input layer (the paper: it made samples oscillate).
        normalized(Conv2D(base_filters, KERNEL_SIZE, strides=2, padding="same", activation="leaky_relu",
                          kernel_initializer=dcgan_weights())),  # (N, base_filters, H/2, W/2)
    ]
    for stage in range(1, stages):
        layers.append(normalized(Conv2D(base_filters * 2 ** stage, KERNEL_SIZE, strides=2, padding="same",
                                        use_bias=spectral_norm, kernel_initializer=dcgan_weights())))
        # (N, base_filters * 2^stage, H/2^(stage+1), W/2^(stage+1))
        layers += [Activation("leaky_relu")] if spectral_norm else [_batch_norm(), Activation("leaky_relu")]
    if minibatch_std:
        layers.append(MinibatchStdDev())  # one more channel
    layers += [Flatten(), normalized(Dense(1, kernel_initializer=dcgan_weights()))]  # (N, 1) logits
    return Sequential(layers, name="dcgan_discriminator")


def build_dcgan(image_shape: Sequence[int] = (1, 28, 28), latent_dim: int = 100, base_filters: int = 64,
                minibatch_std: bool = False, spectral_norm: bool = False, generator_average: float = 0.0):
    """A :class:`~deepzen.generative.trainer.GAN` of a DCGAN generator and discriminator, ready to compile.

    ``generator_average`` is the decay of the generator's weight average that the GAN samples from
    (0: none; see :class:`~deepzen.generative.trainer.GAN`).

    Example:
        >>> gan = build_dcgan((1, 28, 28), latent_dim=16, base_filters=8)
        >>> tuple(gan.generate(3).shape)
        (3, 1, 28, 28)
    """
    from deepzen.generative.trainer import GAN

    return GAN(dcgan_generator(image_shape, latent_dim, base_filters),
               dcgan_discriminator(image_shape, base_filters, minibatch_std, spectral_norm),
               generator_average=generator_average, name="dcgan")
