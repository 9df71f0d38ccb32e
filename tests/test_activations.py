import math

import pytest
import torch
from torch import nn

from deepzen import activations
from deepzen.activations import ACTIVATIONS

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def _sigmoid(x):
    return 1 / (1 + torch.exp(-x))


def _clip(x, low, high):
    return torch.where(x < low, torch.full_like(x, low), torch.where(x > high, torch.full_like(x, high), x))


def _softmax(x, axis=-1):
    e = torch.exp(x - x.max(axis, keepdim=True).values)
    return e / e.sum(axis, keepdim=True)


# name -> (reference formula written from the definition, the torch module computing the same)
FORMULAS = {
    "linear": (lambda x: x, nn.Identity()),
    "sigmoid": (_sigmoid, nn.Sigmoid()),
    "hard_sigmoid": (lambda x: _clip(x / 6 + 0.5, 0.0, 1.0), nn.Hardsigmoid()),
    "tanh": (lambda x: (torch.exp(2 * x) - 1) / (torch.exp(2 * x) + 1), nn.Tanh()),
    "softsign": (lambda x: x / (1 + x.abs()), nn.Softsign()),
    "relu": (lambda x: torch.where(x > 0, x, 0 * x), nn.ReLU()),
    "relu6": (lambda x: _clip(x, 0.0, 6.0), nn.ReLU6()),
    "leaky_relu": (lambda x: torch.where(x >= 0, x, 0.2 * x), nn.LeakyReLU(0.2)),
    "elu": (lambda x: torch.where(x > 0, x, torch.exp(x) - 1), nn.ELU()),
    "selu": (lambda x: SELU_SCALE * torch.where(x > 0, x, SELU_ALPHA * (torch.exp(x) - 1)), nn.SELU()),
    "gelu": (lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2))), nn.GELU()),
    "silu": (lambda x: x * _sigmoid(x), nn.SiLU()),
    "hard_silu": (lambda x: x * _clip(x / 6 + 0.5, 0.0, 1.0), nn.Hardswish()),
    "mish": (lambda x: x * torch.tanh(torch.log(1 + torch.exp(x))), nn.Mish()),
    "softplus": (lambda x: torch.log(1 + torch.exp(x)), nn.Softplus()),
    "exponential": (torch.exp, None),
    "softmax": (_softmax, nn.Softmax(dim=-1)),
    "log_softmax": (lambda x: torch.log(_softmax(x)), nn.LogSoftmax(dim=-1)),
}


def _inputs(*shape, dtype=torch.float64):
    # Values in about [-9, 9], pushed away from 0 where relu-like functions have their kink.
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=dtype) * 3
    return x + 0.05 * torch.sign(x)


def test_every_registered_activation_has_a_reference():
    assert {fn for _, fn in ACTIVATIONS.items()} == {activations.get(name) for name in FORMULAS}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_activation_matches_its_formula_and_torch(name):
    formula, module = FORMULAS[name]
    x = _inputs(6, 7)
    y = activations.get(name)(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    torch.testing.assert_close(y, formula(x))
    if module is not None:
        torch.testing.assert_close(y, module(x))
    x32 = x.float()
    torch.testing.assert_close(activations.get(name)(x32), formula(x).float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "leaky_relu", "elu", "selu", "gelu", "silu", "mish",
                                  "softplus", "softmax", "log_softmax", "relu"])
def test_activation_gradient_by_finite_differences(name):
    x = _inputs(3, 4).requires_grad_()
    assert torch.autograd.gradcheck(activations.get(name), (x,))


def test_keras_defaults_and_parameters():
    x = _inputs(5, 6)
    torch.testing.assert_close(activations.get("leaky_relu")(torch.tensor([-1.0])), torch.tensor([-0.2]))
    torch.testing.assert_close(activations.get("leaky_relu", negative_slope=0.5)(x),
                               torch.where(x >= 0, x, 0.5 * x))
    torch.testing.assert_close(activations.get("elu", alpha=0.5)(x), torch.where(x > 0, x, 0.5 * (torch.exp(x) - 1)))
    tanh_gelu = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    torch.testing.assert_close(activations.get("gelu", approximate=True)(x), tanh_gelu)
    assert not torch.allclose(activations.get("gelu")(x), tanh_gelu, rtol=0, atol=1e-6)  # default is exact


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_axis(name):
    x = _inputs(2, 3, 4)
    formula = FORMULAS[name][0]
    by_axis_1 = activations.get(name, axis=1)(x)
    torch.testing.assert_close(by_axis_1, formula(x.transpose(1, 2)).transpose(1, 2))
    probabilities = by_axis_1.exp() if name == "log_softmax" else by_axis_1
    torch.testing.assert_close(probabilities.sum(1), torch.ones(2, 4, dtype=x.dtype))


def test_softplus_and_softmax_do_not_overflow():
    x = torch.tensor([[-1000.0, 0.0, 1000.0]])
    assert torch.isfinite(activations.get("softplus")(x)).all()
    torch.testing.assert_close(activations.get("softmax")(x), torch.tensor([[0.0, 0.0, 1.0]]))
    assert torch.isfinite(activations.get("log_softmax")(x)).all()


def test_get_names_aliases_and_objects():
    assert activations.get("ReLU") is activations.relu
    assert activations.get("LeakyReLU") is activations.get("leaky-relu") is activations.leaky_relu
    assert activations.get("swish") is activations.get("silu")
    assert activations.get("hard_swish") is activations.hard_silu
    x = _inputs(3)
    assert activations.get(None)(x) is x

    def custom(t):
        return t * 2

    module = nn.Tanh()
    assert activations.get(custom) is custom
    assert activations.get(module) is module


def test_get_errors():
    with pytest.raises(ValueError, match=r"Unknown activation 'relux'\. Expected one of: .*relu.*softmax"):
        activations.get("relux")
    with pytest.raises(TypeError, match=r"Received: 3 of type int"):
        activations.get(3)
    with pytest.raises(TypeError, match="Keyword arguments apply only to an activation given by name"):
        activations.get(torch.relu, alpha=1.0)
