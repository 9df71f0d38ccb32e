"""Activation layers against Keras 3's formulas and defaults."""

import doctest

import pytest
import torch

from deepzen.layers import activation
from deepzen.layers.activation import ELU, LeakyReLU, PReLU, ReLU, Softmax


def test_docstrings_run():
    result = doctest.testmod(activation)
    assert result.attempted > 0 and result.failed == 0


def test_leaky_relu_formula_and_keras_default():
    x = torch.linspace(-3, 3, 13)
    assert LeakyReLU().negative_slope == 0.3
    for slope in (0.0, 0.3, 0.5):
        torch.testing.assert_close(LeakyReLU(negative_slope=slope)(x), torch.where(x >= 0, x, slope * x))
    with pytest.raises(ValueError, match="negative_slope.*Received: negative_slope=-0.1"):
        LeakyReLU(negative_slope=-0.1)


def test_relu_piecewise_formula():
    x = torch.linspace(-4, 10, 57)
    layer = ReLU(max_value=6.0, negative_slope=0.1, threshold=1.0)
    expected = torch.where(x >= 6.0, torch.tensor(6.0), torch.where(x >= 1.0, x, 0.1 * (x - 1.0)))
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(ReLU()(x), x.clamp(min=0))
    with pytest.raises(ValueError, match="max_value"):
        ReLU(max_value=-1)


def test_prelu_shapes_formula_and_gradient():
    layer = PReLU(alpha_initializer="ones", shared_axes=[2, 3])
    x = torch.randn(2, 4, 5, 6)
    layer(x)
    assert layer.alpha.shape == (4, 1, 1)
    with torch.no_grad():
        layer.alpha.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]).view(4, 1, 1))
    torch.testing.assert_close(layer(x), torch.where(x >= 0, x, layer.alpha * x))
    assert PReLU()(torch.randn(3, 7)).abs().min() >= 0  # Keras's zeros start: a ReLU

    double = PReLU(alpha_initializer="random_uniform")
    inputs = torch.randn(3, 5, dtype=torch.float64)
    inputs[inputs.abs() < 0.1] = 0.5  # away from the kink
    double(inputs)
    assert torch.autograd.gradcheck(lambda x, a: torch.where(x >= 0, x, a * x), (inputs.requires_grad_(),
                                                                                double.alpha))
    assert torch.autograd.gradcheck(double, (inputs,))


def test_elu():
    x = torch.linspace(-5, 5, 21)
    torch.testing.assert_close(ELU(alpha=0.5)(x), torch.where(x > 0, x, 0.5 * (torch.exp(x) - 1)))


def test_softmax_axis_mask_and_axes():
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(Softmax(axis=1)(x), torch.softmax(x, 1))
    mask = torch.tensor([True, True, False, True]).expand(2, 3, 4)
    out = Softmax()(x, mask=mask)
    assert out[..., 2].max() < 1e-6
    torch.testing.assert_close(out.sum(-1), torch.ones(2, 3))
    both = Softmax(axis=(1, 2))(x)
    torch.testing.assert_close(both.sum((1, 2)), torch.ones(2))
    # a sequence mask of lower rank marks time steps, not classes
    torch.testing.assert_close(Softmax()(x, mask=torch.ones(2, 3, dtype=torch.bool)), torch.softmax(x, -1))


def test_config_round_trip():
    for layer in (LeakyReLU(0.2), ReLU(6.0, 0.1, 0.5), PReLU(shared_axes=1), ELU(2.0), Softmax(axis=(1, 2))):
        rebuilt = type(layer).from_config(layer.get_config())
        assert rebuilt.get_config() == layer.get_config()
