"""Pooling, upsampling and zero-padding layers against loops over windows (NumPy)."""

import doctest
import itertools
import math

import numpy as np
import pytest
import torch

from deepzen.layers import pooling
from deepzen.layers.pooling import (AveragePooling1D, AveragePooling2D, AveragePooling3D, GlobalAveragePooling1D,
                                    GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D, MaxPooling1D,
                                    MaxPooling2D, MaxPooling3D, UpSampling2D, ZeroPadding2D)

MAX = {1: MaxPooling1D, 2: MaxPooling2D, 3: MaxPooling3D}
AVERAGE = {1: AveragePooling1D, 2: AveragePooling2D, 3: AveragePooling3D}


def pool_loop(x, pool, strides, padding, reduce):
    """Keras semantics by brute force: windows clipped to the input, "same" starts at -pad_before."""
    spatial = x.shape[2:]
    starts, counts = [], []
    for size, k, s in zip(spatial, pool, strides):
        if padding == "valid":
            counts.append((size - k) // s + 1)
            starts.append(0)
        else:
            out = math.ceil(size / s)
            counts.append(out)
            starts.append(max((out - 1) * s + k - size, 0) // 2)
    result = np.empty(x.shape[:2] + tuple(counts))
    for index in itertools.product(*(range(c) for c in counts)):
        window = tuple(slice(max(i * s - b, 0), min(i * s - b + k, size))
                       for i, s, b, k, size in zip(index, strides, starts, pool, spatial))
        result[(Ellipsis, *index)] = reduce(x[(Ellipsis, *window)], axis=tuple(range(2, x.ndim)))
    return result


@pytest.mark.parametrize("rank, pool, strides, padding", [
    (2, 2, None, "valid"), (2, 3, 2, "valid"), (2, (2, 3), (1, 2), "valid"),
    (2, 2, None, "same"), (2, 3, 2, "same"), (2, 3, 1, "same"), (2, 2, 1, "same"), (2, (3, 2), (3, 1), "same"),
    (1, 3, 2, "same"), (1, 4, 3, "valid"), (3, 2, None, "same"), (3, 3, 2, "valid"),
])
@pytest.mark.parametrize("kind", ["max", "average"])
def test_pooling_matches_a_loop_over_windows(kind, rank, pool, strides, padding):
    layer = (MAX if kind == "max" else AVERAGE)[rank](pool, strides=strides, padding=padding)
    reduce = np.max if kind == "max" else np.mean
    for size in (7, 8) if rank < 3 else (5,):  # odd and even sizes: "same" padding depends on size % stride
        x = torch.randn(2, 3, *(size,) * rank, dtype=torch.float64) - 5.0  # negative: zero padding would win a max
        expected = pool_loop(x.numpy(), layer.pool_size, layer.strides, padding, reduce)
        out = layer(x)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)
        assert layer.compute_output_shape(tuple(x.shape)) == tuple(out.shape)


def test_same_average_pooling_gradient():
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(AveragePooling2D(3, strides=2, padding="same"), (x,))


def test_global_pooling_matches_numpy():
    x = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    np.testing.assert_allclose(GlobalAveragePooling2D()(x).numpy(), x.numpy().mean((2, 3)), rtol=1e-12)
    np.testing.assert_allclose(GlobalMaxPooling2D()(x).numpy(), x.numpy().max((2, 3)))
    np.testing.assert_allclose(GlobalAveragePooling1D()(x[..., 0]).numpy(), x[..., 0].numpy().mean(2), rtol=1e-12)
    np.testing.assert_allclose(GlobalMaxPooling1D()(x[..., 0]).numpy(), x[..., 0].numpy().max(2))
    assert GlobalAveragePooling2D(keepdims=True)(x).shape == (3, 4, 1, 1)
    assert GlobalMaxPooling2D(keepdims=True).compute_output_shape((3, 4, 5, 6)) == (3, 4, 1, 1)


def test_nearest_upsampling_repeats_pixels():
    x = torch.randn(2, 3, 4, 5)
    out = UpSampling2D((2, 3))(x)
    np.testing.assert_array_equal(out.numpy(), x.numpy().repeat(2, axis=2).repeat(3, axis=3))


def test_bilinear_upsampling_uses_half_pixel_centres():
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    out = UpSampling2D(2, interpolation="bilinear")(x).numpy()
    image = x.numpy()

    def source(i, size):  # output pixel i's centre in input coordinates, clamped; its two neighbours and weight
        position = min(max((i + 0.5) / 2 - 0.5, 0.0), size - 1)
        low = int(np.floor(position))
        high = min(low + 1, size - 1)
        return low, high, position - low

    expected = np.empty((1, 2, 6, 8))
    for i in range(6):
        y0, y1, wy = source(i, 3)
        for j in range(8):
            x0, x1, wx = source(j, 4)
            top = (1 - wx) * image[..., y0, x0] + wx * image[..., y0, x1]
            bottom = (1 - wx) * image[..., y1, x0] + wx * image[..., y1, x1]
            expected[..., i, j] = (1 - wy) * top + wy * bottom
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding, numpy_padding", [
    (1, ((1, 1), (1, 1))), ((2, 0), ((2, 2), (0, 0))), (((1, 0), (2, 3)), ((1, 0), (2, 3))),
])
def test_zero_padding_matches_numpy_pad(padding, numpy_padding):
    x = torch.randn(2, 3, 4, 5)
    layer = ZeroPadding2D(padding)
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), *numpy_padding))
    np.testing.assert_array_equal(layer(x).numpy(), expected)
    assert layer.compute_output_shape(tuple(x.shape)) == expected.shape


@pytest.mark.parametrize("make, message", [
    (lambda: MaxPooling2D(0), r"MaxPooling2D expects pool_size .* Received: pool_size=0"),
    (lambda: AveragePooling1D(2, strides=(1, 1)), r"AveragePooling1D expects strides .* Received: strides=\(1, 1\)"),
    (lambda: MaxPooling2D(2, padding="foo"), r"MaxPooling2D expects padding to be 'valid' or 'same'. "
                                             r"Received: padding='foo'"),
    (lambda: UpSampling2D(2, interpolation="cubic"), r"UpSampling2D expects interpolation .* "
                                                     r"Received: interpolation='cubic'"),
    (lambda: ZeroPadding2D(((1, 2),)), r"ZeroPadding2D expects padding as 2 \(before, after\) pairs"),
    (lambda: ZeroPadding2D(-1), r"ZeroPadding2D expects padding .* Received: padding=-1"),
])
def test_bad_arguments_name_the_layer_and_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_inputs_fail_at_build_with_the_layer_named():
    with pytest.raises(ValueError, match=r"Layer 'pool' \(MaxPooling2D\) expects inputs of shape \(batch, channels, "
                                         r"height, width\)"):
        MaxPooling2D(name="pool")(torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match=r"needs inputs at least pool_size=\(3, 3\)"):
        AveragePooling2D(3)(torch.randn(1, 1, 2, 5))


def test_docstring_examples_run():
    assert doctest.testmod(pooling).failed == 0
