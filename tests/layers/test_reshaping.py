"""RepeatVector, Permute and Cropping against Keras's documented shapes and values."""

import doctest

import pytest
import torch

from deepzen.layers import reshaping
from deepzen.layers.pooling import ZeroPadding1D, ZeroPadding2D
from deepzen.layers.reshaping import Cropping1D, Cropping2D, Cropping3D, Permute, RepeatVector


def test_docstrings_run():
    result = doctest.testmod(reshaping)
    assert result.attempted > 0 and result.failed == 0


def test_repeat_vector():
    x = torch.randn(2, 5)
    out = RepeatVector(3)(x)
    assert out.shape == (2, 3, 5)
    for step in range(3):
        assert torch.equal(out[:, step], x)
    with pytest.raises(ValueError, match=r"\(batch, features\)"):
        RepeatVector(3)(torch.zeros(2, 3, 4))


def test_permute_keras_example():
    x = torch.randn(2, 10, 64)
    assert torch.equal(Permute((2, 1))(x), x.transpose(1, 2))
    y = torch.randn(2, 3, 4, 5)
    assert torch.equal(Permute((3, 1, 2))(y), y.permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match="permutation of 1..2"):
        Permute((0, 1))


def test_cropping_values_and_keras_defaults():
    x = torch.arange(2 * 3 * 6 * 7, dtype=torch.float32).reshape(2, 3, 6, 7)
    assert torch.equal(Cropping2D(((1, 2), (0, 3)))(x), x[:, :, 1:-2, 0:-3])
    assert torch.equal(Cropping2D((1, 2))(x), x[:, :, 1:-1, 2:-2])
    assert torch.equal(Cropping2D()(x), x)  # Keras's default: nothing cropped
    last = x.permute(0, 2, 3, 1)
    assert torch.equal(Cropping2D(((1, 2), (0, 3)), data_format="channels_last")(last),
                       x[:, :, 1:-2, 0:-3].permute(0, 2, 3, 1))
    seq = torch.randn(2, 4, 9)
    assert torch.equal(Cropping1D()(seq), seq[..., 1:-1])  # Keras's default (1, 1)
    assert torch.equal(Cropping1D((2, 3))(seq), seq[..., 2:-3])
    assert Cropping3D()(torch.zeros(1, 2, 5, 5, 5)).shape == (1, 2, 3, 3, 3)
    assert Cropping2D(1).compute_output_shape((1, 3, 6, 7)) == (1, 3, 4, 5)


def test_cropping_undoes_zero_padding():
    x = torch.randn(2, 3, 5, 6)
    padding = ((1, 2), (3, 0))
    assert torch.equal(Cropping2D(padding)(ZeroPadding2D(padding)(x)), x)
    seq = torch.randn(2, 3, 5)
    assert torch.equal(Cropping1D((1, 2))(ZeroPadding1D((1, 2))(seq)), seq)  # Keras's 1-d (left, right) pair


def test_cropping_errors():
    with pytest.raises(ValueError, match="nothing would be left"):
        Cropping2D(3)(torch.zeros(1, 1, 6, 6))
    with pytest.raises(ValueError, match="Cropping2D expects cropping .*Received: cropping=-1"):
        Cropping2D(-1)


def test_config_round_trip():
    for layer in (RepeatVector(2), Permute((2, 1)), Cropping1D(), Cropping2D(((1, 2), (3, 4)), data_format="channels_last")):
        rebuilt = type(layer).from_config(layer.get_config())
        assert rebuilt.get_config() == layer.get_config()
