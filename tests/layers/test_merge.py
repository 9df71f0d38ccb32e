"""Merge layers against Keras's documented results (keras.io merging layers)."""

import doctest

import numpy as np
import pytest
import torch

from deepzen.layers import (Add, Average, Concatenate, Dot, Input, Maximum, Minimum, Multiply, Subtract, add,
                            average, concatenate, dot, maximum, minimum, multiply, subtract)
from deepzen.layers import merge
from deepzen.models import Model, load_model

A = torch.tensor([[1.0, 5.0], [3.0, -2.0]])
B = torch.tensor([[4.0, 2.0], [0.0, 1.0]])


def test_doctests_run():
    result = doctest.testmod(merge)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("layer, function, expected", [
    (Add, add, A + B), (Subtract, subtract, A - B), (Multiply, multiply, A * B), (Average, average, (A + B) / 2),
    (Maximum, maximum, torch.maximum(A, B)), (Minimum, minimum, torch.minimum(A, B)),
])
def test_element_wise(layer, function, expected):
    torch.testing.assert_close(layer()([A, B]), expected)
    a, b = Input((2,)), Input((2,))
    model = Model([a, b], function([a, b]))
    torch.testing.assert_close(model(A, B), expected)


def test_three_inputs():
    torch.testing.assert_close(Add()([A, B, A]), 2 * A + B)
    with pytest.raises(ValueError, match=r"expects exactly 2 inputs. Received: 3"):
        Subtract()([A, B, A])


def test_concatenate_keras_example():
    x = np.arange(20).reshape(2, 2, 5)
    y = np.arange(20, 30).reshape(2, 1, 5)
    out = Concatenate(axis=1)([torch.tensor(x), torch.tensor(y)])
    np.testing.assert_array_equal(out.numpy(), np.concatenate([x, y], axis=1))
    assert concatenate([Input((2, 5)), Input((1, 5))], axis=1).shape == (None, 3, 5)


def test_dot_keras_example():
    x = np.arange(10).reshape(1, 5, 2).astype("float32")
    y = np.arange(10, 20).reshape(1, 2, 5).astype("float32")
    out = Dot(axes=(1, 2))([torch.tensor(x), torch.tensor(y)])  # Keras: [[[260, 360], [320, 445]]]
    np.testing.assert_array_equal(out.numpy(), [[[260, 360], [320, 445]]])
    cosine = Dot(axes=1, normalize=True)([torch.tensor([[3.0, 4.0]]), torch.tensor([[3.0, 4.0]])])
    torch.testing.assert_close(cosine, torch.tensor([[1.0]]))
    assert dot([Input((4,)), Input((4,))], axes=1).shape == (None, 1)


def test_mismatched_shapes_are_named():
    with pytest.raises(ValueError, match=r"Layer 'add' \(Add\) .*same shape. Received: \(None, 3\), \(None, 4\)"):
        add([Input((3,)), Input((4,))])
    with pytest.raises(ValueError, match=r"Concatenate.*along axis -1. Received: \(None, 2, 3\), \(None, 3, 3\)"):
        concatenate([Input((2, 3)), Input((3, 3))])
    with pytest.raises(ValueError, match=r"Received: axis=0"):
        Concatenate(axis=0)


def test_merge_layers_save_and_load(tmp_path):
    a, b = Input((3,)), Input((3,))
    model = Model([a, b], [Dot(axes=1)([a, b]), Concatenate()([a, b]), Maximum()([a, b])])
    path = tmp_path / "merge.deepzen"
    model.save(path)
    x, y = torch.randn(4, 3), torch.randn(4, 3)
    for got, want in zip(load_model(path)(x, y), model(x, y)):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("merge", ["add", "concatenate"])
def test_padding_masks_flow_through_merges_as_in_keras(merge):
    """Post-padded sequences through Embedding(mask_zero=True), a merge and an LSTM give what the unpadded
    sequences give: the merge passes the combined mask on, so the LSTM skips the padding."""
    import deepzen
    from deepzen.layers import LSTM, Embedding, Input

    torch.manual_seed(0)
    a, b = Input((None,), dtype="int64"), Input((None,), dtype="int64")
    joined = getattr(deepzen.layers, merge)([Embedding(10, 4, mask_zero=True)(a), Embedding(10, 4, mask_zero=True)(b)])
    model = deepzen.Model([a, b], LSTM(3)(joined))
    padded = model(torch.tensor([[3, 4, 0, 0]]), torch.tensor([[5, 6, 0, 0]]))
    unpadded = model(torch.tensor([[3, 4]]), torch.tensor([[5, 6]]))
    torch.testing.assert_close(padded, unpadded)
    assert not torch.allclose(padded, model(torch.tensor([[3, 4, 1, 1]]), torch.tensor([[5, 6, 1, 1]])))


def test_merge_masks_follow_keras_rules():
    m1, m2 = torch.tensor([[True, True, False]]), torch.tensor([[True, False, False]])
    x = torch.zeros(1, 3, 2)
    assert Add().compute_mask([x, x], [m1, m2]).tolist() == [[True, False, False]]
    assert Add().compute_mask([x, x], [None, None]) is None
    # Concatenate along features: a position is kept where any input keeps it; an unmasked input keeps all
    assert Concatenate().compute_mask([x, x], [m1, m2]).tolist() == [[True, True, False]]
    assert Concatenate().compute_mask([x, x], [m2, None]).tolist() == [[True, True, True]]
    assert Concatenate(axis=1).compute_mask([x, x], [m1, m2]).tolist() == [[True, True, False, True, False, False]]
    assert Dot(axes=-1).compute_mask([x, x], [m1, m2]) is None
