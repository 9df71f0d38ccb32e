"""SpectralNormalization: the effective weight's largest singular value, outputs against a direct computation,
transposed convolutions, saving, and errors."""

import doctest

import pytest
import torch
import torch.nn.functional as F

import deepzen
import deepzen.layers.normalization as normalization_module
from deepzen.layers import Conv2D, Conv2DTranspose, Dense, SpectralNormalization


def largest_singular_value(matrix: torch.Tensor) -> float:
    return torch.linalg.matrix_norm(matrix, ord=2).item()


@pytest.mark.parametrize("make, x, rows", [
    (lambda: Dense(7), torch.randn(4, 5), lambda w: w),
    (lambda: Conv2D(6, 3), torch.randn(2, 3, 8, 8), lambda w: w.reshape(w.shape[0], -1)),
    # A transposed convolution's weight is (C_in, filters, *k): the output channels are dim 1.
    (lambda: Conv2DTranspose(5, 3, strides=2), torch.randn(2, 4, 6, 6),
     lambda w: w.transpose(0, 1).reshape(w.shape[1], -1)),
])
def test_power_iteration_brings_the_largest_singular_value_to_one(make, x, rows):
    torch.manual_seed(0)
    layer = SpectralNormalization(make(), power_iterations=1)
    layer.train()
    for _ in range(30):  # the estimate improves by one power step per training call
        layer(x)
    weight = layer.layer.weight
    assert largest_singular_value(rows(weight.detach())) == pytest.approx(1.0, abs=1e-3)
    original = layer.layer.parametrizations.weight.original
    sigma = largest_singular_value(rows(original.detach()))
    torch.testing.assert_close(weight, original / sigma, rtol=1e-3, atol=1e-5)


def test_output_is_the_wrapped_layer_with_the_normalized_weight():
    torch.manual_seed(0)
    layer = SpectralNormalization(Conv2D(4, 3, padding="same", activation="relu"), power_iterations=5)
    x = torch.randn(2, 3, 7, 7)
    layer.train()
    layer(x)
    layer.eval()  # the estimate is frozen: the same weight for the reference
    weight = layer.layer.weight
    torch.testing.assert_close(layer(x), F.relu(F.conv2d(x, weight, layer.layer.bias, padding=1)))
    # Gradients reach the original (unnormalized) weight.
    layer(x).sum().backward()
    assert layer.layer.parametrizations.weight.original.grad.abs().sum() > 0


def test_evaluation_mode_does_not_move_the_estimate():
    layer = SpectralNormalization(Dense(3))
    x = torch.randn(4, 6)
    layer(x)
    layer.eval()
    before = layer.layer.weight.clone()
    for _ in range(3):
        layer(x)
    assert torch.equal(layer.layer.weight, before)


def test_saved_model_reloads_with_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    model = deepzen.Sequential([deepzen.layers.Input((3, 8, 8)), SpectralNormalization(Conv2D(4, 3)),
                                deepzen.layers.Flatten(), SpectralNormalization(Dense(2))])
    x = torch.randn(5, 3, 8, 8)
    model.train()
    model(x)
    expected = model.predict(x)
    model.save(tmp_path / "model.dz")
    restored = deepzen.load_model(tmp_path / "model.dz", compile=False)
    torch.testing.assert_close(restored.predict(x), expected)


def test_errors_name_what_was_expected():
    with pytest.raises(ValueError, match="unbuilt deepzen layer"):
        SpectralNormalization(torch.nn.Linear(3, 2))
    built = Dense(2)
    built(torch.randn(1, 3))
    with pytest.raises(ValueError, match="already built"):
        SpectralNormalization(built)
    with pytest.raises(ValueError, match="power_iterations"):
        SpectralNormalization(Dense(2), power_iterations=0)
    with pytest.raises(ValueError, match="`weight` parameter"):
        SpectralNormalization(deepzen.layers.Flatten())(torch.randn(2, 3, 4))


def test_docstring_examples():
    assert doctest.testmod(normalization_module).failed == 0
