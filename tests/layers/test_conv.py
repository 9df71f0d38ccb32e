"""Convolution layers against direct loops, PyTorch's functional convolutions and autograd."""

import doctest
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from deepzen.layers import conv
from deepzen.layers.conv import (Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, Conv3D, Conv3DTranspose,
                                 DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D)

CONV = {1: Conv1D, 2: Conv2D, 3: Conv3D}
CONV_TRANSPOSE = {1: Conv1DTranspose, 2: Conv2DTranspose, 3: Conv3DTranspose}
FUNCTIONAL = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def keras_same_pad(size, kernel, stride, dilation=1):
    """TensorFlow's rule, written out independently: total padding, the odd row after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def random_bias(layer):
    with torch.no_grad():
        layer.bias.normal_()


def test_same_3x3_conv_matches_a_loop_over_patches():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    layer = Conv2D(4, 3, padding="same")
    layer(x)
    random_bias(layer)
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.zeros((2, 4, 5, 6))
    for n in range(2):
        for o in range(4):
            for i in range(5):
                for j in range(6):
                    expected[n, o, i, j] = np.sum(padded[n, :, i:i + 3, j:j + 3] * w[o]) + b[o]
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rank, kernel, strides, dilation, groups, padding", [
    (2, 3, 2, 1, 1, 1),
    (2, (3, 2), (1, 2), (2, 1), 2, (2, 0)),
    (2, 3, 1, 2, 4, "valid"),
    (1, 5, 3, 1, 2, 2),
    (3, 2, (1, 2, 1), 1, 1, (1, 0, 1)),
])
def test_strides_dilation_groups_and_explicit_padding_match_functional_conv(rank, kernel, strides, dilation,
                                                                           groups, padding):
    torch.manual_seed(1)
    x = torch.randn(2, 4, *(7,) * rank)
    layer = CONV[rank](8, kernel, strides=strides, dilation_rate=dilation, groups=groups, padding=padding)
    out = layer(x)
    random_bias(layer)
    expected = FUNCTIONAL[rank](x, layer.weight, layer.bias, strides, 0 if padding == "valid" else padding,
                                dilation, groups)
    torch.testing.assert_close(layer(x), expected)
    assert layer.weight.shape[1] == 4 // groups and out.shape == expected.shape


@pytest.mark.parametrize("rank, kernel, strides, dilation", [
    (2, 3, 2, 1), (2, 4, 1, 1), (2, (2, 5), (3, 2), 1), (2, 3, 2, 2), (1, 4, 3, 1), (3, 3, 2, 1),
])
def test_same_padding_matches_keras_rule_with_the_extra_pixel_at_the_end(rank, kernel, strides, dilation):
    torch.manual_seed(2)
    layer = CONV[rank](3, kernel, strides=strides, dilation_rate=dilation, padding="same")
    layer(torch.randn(1, 2, *(9,) * rank))
    for size in (7, 8):  # one layer, two input sizes: the padding depends on size % stride
        x = torch.randn(2, 2, *(size,) * rank)
        pads = [keras_same_pad(size, k, s, d) for k, s, d in zip(layer.kernel_size, layer.strides, layer.dilation_rate)]
        padded = F.pad(x, [p for pair in reversed(pads) for p in pair])
        expected = FUNCTIONAL[rank](padded, layer.weight, layer.bias, layer.strides, 0, layer.dilation_rate)
        assert expected.shape[2:] == tuple(math.ceil(size / s) for s in layer.strides)
        torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_same_output_size_is_ceil_of_size_over_stride(rank):
    for kernel in (1, 2, 3, 4):
        layer = CONV[rank](2, kernel, strides=2, padding="same")
        for size in range(3, 9) if rank < 3 else (5, 6):
            out = layer(torch.randn(1, 1, *(size,) * rank))
            assert out.shape[2:] == (math.ceil(size / 2),) * rank, (kernel, size)
            assert layer.compute_output_shape((1, 1, *(size,) * rank))[2:] == tuple(out.shape[2:])


@pytest.mark.parametrize("rank, kernel, strides, padding, output_padding, dilation", [
    (2, 3, 2, "same", None, 1),
    (2, 4, 2, "same", None, 1),
    (2, 3, 2, "valid", None, 1),
    (2, 1, 3, "valid", None, 1),
    (2, (3, 2), (2, 3), "same", (0, 1), 1),
    (2, 3, 3, "valid", 2, 1),
    (2, 3, 1, "same", None, 2),
    (2, 5, 3, "same", 1, 1),
    (1, 4, 3, "same", None, 1),
    (3, 3, 2, "same", None, 1),
])
def test_transposed_conv_is_the_input_gradient_of_the_matching_conv(rank, kernel, strides, padding,
                                                                    output_padding, dilation):
    torch.manual_seed(3)
    x = torch.randn(2, 4, *(4,) * rank, dtype=torch.float64)
    transposed = CONV_TRANSPOSE[rank](3, kernel, strides=strides, padding=padding, output_padding=output_padding,
                                      dilation_rate=dilation, use_bias=False)
    y = transposed(x)  # (2, 3, *out_spatial)
    assert tuple(y.shape) == transposed.compute_output_shape(tuple(x.shape))
    conv = CONV[rank](4, kernel, strides=strides, padding=padding, dilation_rate=dilation, use_bias=False)
    z = torch.randn(y.shape, dtype=torch.float64, requires_grad=True)
    conv(z)
    with torch.no_grad():
        conv.weight.copy_(transposed.weight)  # (4, 3, *k): conv's (out, in) is the transpose's (in, out)
    out = conv(z)
    assert out.shape == x.shape  # the conv maps the transpose's output size back to its input size
    (vjp,) = torch.autograd.grad(out, z, grad_outputs=x)
    torch.testing.assert_close(y, vjp)


def test_transposed_same_default_output_is_size_times_stride():
    layer = Conv2DTranspose(2, 3, strides=2, padding="same")
    assert layer(torch.randn(1, 5, 7, 4)).shape == (1, 2, 14, 8)


def test_depthwise_conv_is_one_conv_per_input_channel():
    torch.manual_seed(4)
    x = torch.randn(2, 3, 6, 7)
    layer = DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same")
    layer(x)
    random_bias(layer)
    pads = [keras_same_pad(size, 3, 2) for size in (6, 7)]
    padded = F.pad(x, [p for pair in reversed(pads) for p in pair])
    expected = torch.cat([F.conv2d(padded[:, c:c + 1], layer.weight[2 * c + m:2 * c + m + 1],
                                   layer.bias[2 * c + m:2 * c + m + 1], stride=2)
                          for c in range(3) for m in range(2)], dim=1)
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("rank", [1, 2])
def test_separable_conv_is_depthwise_then_pointwise(rank):
    torch.manual_seed(5)
    x = torch.randn(2, 3, *(6,) * rank)
    separable = {1: SeparableConv1D, 2: SeparableConv2D}[rank](5, 3, depth_multiplier=2, padding="same")
    depthwise = {1: DepthwiseConv1D, 2: DepthwiseConv2D}[rank](3, depth_multiplier=2, padding="same", use_bias=False)
    separable(x)
    depthwise(x)
    random_bias(separable)
    with torch.no_grad():
        depthwise.weight.copy_(separable.depthwise_weight)
    pointwise = separable.pointwise_weight.flatten(1)  # (5, 6)
    expected = torch.einsum("oc,nc...->no...", pointwise, depthwise(x)) + separable.bias.view(1, 5, *(1,) * rank)
    torch.testing.assert_close(separable(x), expected)


def count(layer):
    return sum(p.numel() for p in layer.parameters())


def test_parameter_counts():
    x = torch.randn(1, 3, 8, 8)
    cases = [
        (Conv2D(16, 3), 16 * 3 * 9 + 16),
        (Conv2D(16, 3, use_bias=False), 16 * 3 * 9),
        (Conv2D(6, (3, 1), groups=3), 6 * 1 * 3 + 6),
        (Conv2DTranspose(4, 2, strides=2), 3 * 4 * 4 + 4),
        (DepthwiseConv2D(3, depth_multiplier=2), 3 * 2 * 9 + 6),
        (SeparableConv2D(10, 3, depth_multiplier=2), 3 * 2 * 9 + 6 * 10 + 10),
    ]
    for layer, expected in cases:
        layer(x)
        assert count(layer) == expected, type(layer).__name__
    conv3d = Conv3D(2, (1, 2, 3))
    conv3d(torch.randn(1, 4, 3, 3, 3))
    assert count(conv3d) == 2 * 4 * 6 + 2


def test_in_channels_are_learned_on_the_first_call():
    layer = Conv2D(8, 3)
    assert list(layer.parameters()) == [] and not layer.built
    out = layer(torch.randn(2, 5, 9, 9, dtype=torch.float64))
    assert layer.weight.shape == (8, 5, 3, 3) and layer.weight.dtype == torch.float64
    assert out.shape == (2, 8, 7, 7)


def test_gradcheck_in_float64():
    torch.manual_seed(6)
    x = torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    for layer in (Conv2D(2, 3, strides=2, padding="same", activation="tanh"),
                  Conv2DTranspose(2, 3, strides=2, padding="same"),
                  SeparableConv2D(2, 2, padding="same")):
        layer(x)
        names = [name for name, _ in layer.named_parameters()]
        params = [p.detach().clone().requires_grad_() for _, p in layer.named_parameters()]

        def call(x, *values, layer=layer, names=names):
            return functional_call(layer, dict(zip(names, values)), (x,))

        assert torch.autograd.gradcheck(call, (x, *params)), type(layer).__name__


def test_activation_is_applied_to_the_output():
    torch.manual_seed(7)
    x = torch.randn(2, 3, 6, 6)
    layer = Conv2D(4, 3, activation="relu")
    plain = Conv2D(4, 3)
    layer(x), plain(x)
    plain.load_state_dict(layer.state_dict())
    torch.testing.assert_close(layer(x), torch.relu(plain(x)))


def test_regularizers_and_activity_penalty():
    pytest.importorskip("deepzen.regularizers")
    penalty = lambda t: t.square().sum()  # noqa: E731
    layer = Conv2D(2, 3, kernel_regularizer=penalty, activity_regularizer=penalty)
    out = layer(torch.randn(1, 1, 4, 4))
    assert [p is layer.weight for p, _ in layer.regularization_terms()] == [True]
    torch.testing.assert_close(layer.activity_loss, out.square().sum())
    separable = SeparableConv2D(2, 3, depthwise_regularizer=penalty, pointwise_regularizer=penalty)
    separable(torch.randn(1, 1, 4, 4))
    assert [p for p, _ in separable.regularization_terms()] == [separable.depthwise_weight, separable.pointwise_weight]


def test_config_round_trip():
    layer = Conv2DTranspose(4, (3, 2), strides=2, padding="same", output_padding=(1, 0), activation="relu")
    rebuilt = Conv2DTranspose.from_config(layer.get_config())
    assert rebuilt.get_config() == layer.get_config()
    x = torch.randn(1, 2, 3, 3)
    assert rebuilt(x).shape == layer(x).shape == (1, 4, 6, 5)


@pytest.mark.parametrize("make, message", [
    (lambda: Conv2D(4, 0), r"Conv2D expects kernel_size .* Received: kernel_size=0"),
    (lambda: Conv2D(4, (3, 3, 3)), r"Conv2D expects kernel_size .* tuple of 2 .* Received: kernel_size=\(3, 3, 3\)"),
    (lambda: Conv2D(4, 3, padding="foo", name="c1"), r"Conv2D 'c1' expects padding .* Received: padding='foo'"),
    (lambda: Conv1D(0, 3), r"Conv1D expects filters to be a positive integer. Received: filters=0"),
    (lambda: Conv2D(5, 3, groups=2), r"filters to be divisible by groups. Received: filters=5, groups=2"),
    (lambda: Conv3D(4, 3, strides=0), r"Conv3D expects strides .* Received: strides=0"),
    (lambda: Conv2DTranspose(4, 3, padding=1), r"Conv2DTranspose expects padding to be 'valid' or 'same'"),
    (lambda: Conv2DTranspose(4, 3, strides=2, output_padding=2), r"output_padding to be smaller than its stride"),
    (lambda: DepthwiseConv2D(3, depth_multiplier=0), r"DepthwiseConv2D expects depth_multiplier .* Received: "),
])
def test_bad_arguments_name_the_layer_and_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("layer, shape, message", [
    (Conv2D(4, 3, name="c1"), (2, 3, 8), r"Layer 'c1' \(Conv2D\) expects inputs of shape \(batch, channels, height, "
                                         r"width\), channels first .* Received: input_shape=\(None, 3, 8\)"),
    (Conv2D(4, 3, groups=2), (2, 3, 8, 8), r"input channels divisible by groups=2"),
    (Conv2D(4, 5), (2, 3, 4, 8), r"smaller than its kernel"),
])
def test_bad_inputs_fail_at_build_with_the_layer_named(layer, shape, message):
    with pytest.raises(ValueError, match=message):
        layer(torch.randn(shape))


def test_docstring_examples_run():
    assert doctest.testmod(conv).failed == 0
