"""DCGAN generator and discriminator: sizes for several image shapes, the paper's layers and init."""

import doctest
import math

import pytest
import torch

import deepzen.generative.dcgan as dcgan_module
from deepzen.generative.dcgan import (MinibatchStdDev, build_dcgan, dcgan_discriminator, dcgan_generator,
                                      upsampling_plan)
from deepzen.layers import BatchNormalization, Conv2D, Conv2DTranspose, SpectralNormalization

# (image shape, stride-2 stages, first feature map): halve while even and >= 4
SHAPES = [((1, 28, 28), 2, (7, 7)), ((3, 32, 32), 3, (4, 4)), ((3, 64, 64), 4, (4, 4)),
          ((1, 28, 32), 2, (7, 8)), ((2, 8, 8), 1, (4, 4))]


@pytest.mark.parametrize("image_shape, stages, start", SHAPES)
def test_upsampling_plan(image_shape, stages, start):
    assert upsampling_plan(image_shape) == (stages, start)
    assert start[0] * 2 ** stages == image_shape[1] and start[1] * 2 ** stages == image_shape[2]


@pytest.mark.parametrize("image_shape, stages, start", SHAPES)
def test_generator_and_discriminator_shapes(image_shape, stages, start):
    torch.manual_seed(0)
    generator = dcgan_generator(image_shape, latent_dim=12, base_filters=4)
    discriminator = dcgan_discriminator(image_shape, base_filters=4)
    images = generator(torch.randn(3, 12))
    assert images.shape == (3, *image_shape)
    assert images.abs().max() <= 1.0  # tanh output
    assert discriminator(images).shape == (3, 1)

    transposed = [m for m in generator.modules() if isinstance(m, Conv2DTranspose)]
    convs = [m for m in discriminator.modules() if isinstance(m, Conv2D)]
    assert len(transposed) == len(convs) == stages
    # Channels halve towards the image in G and double away from it in D, meeting at base_filters.
    assert [m.filters for m in transposed] == [4 * 2 ** (stages - 2 - i) for i in range(stages - 1)] + [image_shape[0]]
    assert [m.filters for m in convs] == [4 * 2 ** i for i in range(stages)]
    assert generator.dense.weight.shape == (4 * 2 ** (stages - 1) * start[0] * start[1], 12)


def test_batch_norm_placement():
    """The paper: batch norm everywhere except the generator's output and the discriminator's input layer."""
    generator, discriminator = dcgan_generator((3, 64, 64)), dcgan_discriminator((3, 64, 64))
    g_layers, d_layers = generator.layers, discriminator.layers
    # G: Dense, Reshape, BN, ReLU, then (ConvT, BN, ReLU) x 3, then the tanh ConvT (model.layers leaves out the Input)
    assert sum(isinstance(m, BatchNormalization) for m in g_layers) == 4
    assert isinstance(g_layers[-1], Conv2DTranspose) and g_layers[-1].activation.__name__ == "tanh"
    # D: Conv (leaky ReLU, no BN), then (Conv, BN, leaky ReLU) x 3, Flatten, Dense
    assert isinstance(d_layers[0], Conv2D) and not isinstance(d_layers[1], BatchNormalization)
    assert sum(isinstance(m, BatchNormalization) for m in d_layers) == 3
    slope = d_layers[0].activation(torch.tensor([-1.0]))
    assert slope.item() == pytest.approx(-0.2)


def test_dcgan_initialization():
    """Kernels ~ N(0, 0.02), batch-norm scales ~ N(1, 0.02), biases 0."""
    torch.manual_seed(0)
    generator = dcgan_generator((1, 28, 28), latent_dim=100, base_filters=64)
    discriminator = dcgan_discriminator((1, 28, 28), base_filters=64)
    for network in (generator, discriminator):
        for name, parameter in network.named_parameters():
            values = parameter.detach()
            if name.endswith("bias"):
                assert torch.all(values == 0), name
                continue
            is_scale = values.dim() == 1
            expected_mean = 1.0 if is_scale else 0.0
            n = values.numel()
            # sample mean and standard deviation within 5 standard errors of the truth
            assert abs(values.mean().item() - expected_mean) < 5 * 0.02 / math.sqrt(n), name
            assert abs(values.std().item() - 0.02) < 5 * 0.02 / math.sqrt(2 * (n - 1)) + 1e-4, name


@pytest.mark.parametrize("image_shape", [(1, 6, 6), (1, 7, 7), (28, 28), (1, 0, 28), "28x28"])
def test_unsuitable_image_shapes_are_rejected(image_shape):
    with pytest.raises(ValueError, match="image_shape"):
        dcgan_generator(image_shape)
    with pytest.raises(ValueError, match="image_shape"):
        dcgan_discriminator(image_shape)


@pytest.mark.parametrize("arg", ["latent_dim", "base_filters"])
def test_bad_sizes_are_rejected(arg):
    with pytest.raises(ValueError, match=f"{arg}=0"):
        dcgan_generator((1, 28, 28), **{arg: 0})


def test_minibatch_std_appends_the_mean_standard_deviation_over_the_batch():
    x = torch.randn(6, 3, 4, 5, dtype=torch.float64)
    out = MinibatchStdDev()(x)
    expected = x.numpy().std(axis=0).mean()  # numpy's std is the population (biased) one
    assert out.shape == (6, 4, 4, 5)
    torch.testing.assert_close(out[:, :3], x)
    torch.testing.assert_close(out[:, 3], torch.full((6, 4, 5), float(expected), dtype=torch.float64))
    # Identical samples (a collapsed generator) show up as a near-zero channel.
    assert MinibatchStdDev()(x[:1].expand(6, -1, -1, -1))[:, 3].abs().max() < 1e-3


def test_discriminator_with_minibatch_std_reads_one_more_channel():
    discriminator = dcgan_discriminator((1, 28, 28), base_filters=4, minibatch_std=True)
    assert isinstance(discriminator.layers[-3], MinibatchStdDev)
    assert discriminator(torch.randn(5, 1, 28, 28)).shape == (5, 1)
    assert discriminator.dense.weight.shape == (1, (8 + 1) * 7 * 7)


def test_build_dcgan_wires_both_networks():
    gan = build_dcgan((3, 32, 32), latent_dim=10, base_filters=4)
    assert gan.latent_dim == 10 and gan.image_shape == (3, 32, 32)
    z = torch.randn(2, 10)
    gan.eval()
    assert torch.equal(gan(z), gan.generator(z))
    assert gan.discriminator(gan(z)).shape == (2, 1)


def test_docstring_examples():
    assert doctest.testmod(dcgan_module).failed == 0


def test_discriminator_with_spectral_norm_has_no_batch_norm():
    discriminator = dcgan_discriminator((1, 28, 28), base_filters=4, spectral_norm=True)
    wrapped = [layer for layer in discriminator.layers if isinstance(layer, SpectralNormalization)]
    # built as the layers were added: torch's parametrization subclasses the wrapped layer's class
    assert [type(layer.layer).__mro__[1].__name__ for layer in wrapped] == ["Conv2D", "Conv2D", "Dense"]
    assert not any(isinstance(layer, BatchNormalization) for layer in discriminator.layers)
    assert discriminator(torch.randn(5, 1, 28, 28)).shape == (5, 1)
