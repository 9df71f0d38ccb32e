"""Regularizer penalties against their formulas, names, configs and validation."""

import doctest

import numpy as np
import pytest
import torch

from deepzen import regularizers
from deepzen.regularizers import L1, L1L2, L2


@pytest.fixture
def weight():
    return torch.randn(7, 5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def numpy_penalty(weight, l1, l2):
    w = weight.numpy()
    return l1 * np.abs(w).sum() + l2 * (w * w).sum()


@pytest.mark.parametrize("regularizer, l1, l2", [
    (L1(), 0.01, 0.0), (L1(0.3), 0.3, 0.0), (L2(), 0.0, 0.01), (L2(l2=2.5), 0.0, 2.5),
    (L1L2(), 0.0, 0.0), (L1L2(l1=0.2, l2=0.05), 0.2, 0.05), (L1L2(l2=0.1), 0.0, 0.1),
])
def test_penalty_matches_formula(weight, regularizer, l1, l2):
    penalty = regularizer(weight)
    assert penalty.shape == () and penalty.dtype == weight.dtype
    assert penalty.item() == pytest.approx(numpy_penalty(weight, l1, l2), rel=1e-12, abs=0)


def test_penalty_gradient_is_the_formula_derivative(weight):
    weight.requires_grad_(True)
    L1L2(l1=0.2, l2=0.05)(weight).backward()
    torch.testing.assert_close(weight.grad, 0.2 * weight.detach().sign() + 2 * 0.05 * weight.detach())


@pytest.mark.parametrize("name, expected", [("l1", (0.01, 0.0)), ("l2", (0.0, 0.01)), ("L1_L2", (0.01, 0.01)),
                                            ("l1-l2", (0.01, 0.01))])
def test_names_give_default_factors(weight, name, expected):
    assert regularizers.get(name)(weight).item() == pytest.approx(numpy_penalty(weight, *expected), rel=1e-12)


def test_get_handles_none_classes_instances_and_callables():
    assert regularizers.get(None) is None
    assert isinstance(regularizers.get(L2), L2) and regularizers.get(L2).l2 == 0.01
    instance = L1(0.5)
    assert regularizers.get(instance) is instance

    def custom(w):
        return w.norm()

    assert regularizers.get(custom) is custom
    with pytest.raises(ValueError, match="Unknown regularizer 'l3'. Expected one of: l1, l1_l2, l2"):
        regularizers.get("l3")
    with pytest.raises(TypeError, match="Received: 0.01"):
        regularizers.get(0.01)


@pytest.mark.parametrize("regularizer, config", [
    (L1(0.3), {"l1": 0.3}), (L2(0.7), {"l2": 0.7}), (L1L2(0.1, 0.2), {"l1": 0.1, "l2": 0.2})])
def test_config_round_trip(weight, regularizer, config):
    assert regularizer.get_config() == config
    clone = type(regularizer).from_config(regularizer.get_config())
    assert type(clone) is type(regularizer) and clone.get_config() == config
    assert clone(weight).item() == regularizer(weight).item()


@pytest.mark.parametrize("make, message", [
    (lambda: L1(-0.1), "L1 expects l1 to be a finite number >= 0. Received: l1=-0.1"),
    (lambda: L2(float("nan")), "Received: l2=nan"),
    (lambda: L1L2(l2=-1), "L1L2 expects l2.*Received: l2=-1"),
    (lambda: L1L2(l1="0.1"), "Received: l1='0.1'"),
    (lambda: L2(True), "Received: l2=True"),
])
def test_invalid_factors_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_numpy_factor_is_accepted():
    assert L2(np.float32(0.5)).l2 == 0.5


def test_docstring_examples():
    assert doctest.testmod(regularizers).failed == 0
