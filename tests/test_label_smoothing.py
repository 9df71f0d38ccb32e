"""label_smoothing= on the cross-entropy losses (Keras's argument), against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from deepzen import losses

P = [0.2, 0.7, 0.1]  # one sample's predicted distribution over 3 classes
# Keras: categorical targets become y * (1 - s) + s / C; with s = 0.3 and C = 3, [0, 1, 0] -> [0.1, 0.8, 0.1]
HAND_CATEGORICAL = -(0.1 * math.log(0.2) + 0.8 * math.log(0.7) + 0.1 * math.log(0.1))
# binary targets become y * (1 - s) + s / 2; with s = 0.2, 1 -> 0.9 and 0 -> 0.1
HAND_BINARY = (-(0.9 * math.log(0.8) + 0.1 * math.log(0.2)) - (0.1 * math.log(0.3) + 0.9 * math.log(0.7))) / 2


@pytest.mark.parametrize("make", [
    lambda: losses.CategoricalCrossentropy(label_smoothing=0.3),
    lambda: losses.get("categorical_crossentropy", label_smoothing=0.3),
    lambda: (lambda y_true, y_pred: losses.categorical_crossentropy(y_true, y_pred, label_smoothing=0.3).mean()),
])
def test_categorical_crossentropy_smooths_as_keras(make):
    value = make()(torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([P]))
    assert float(value) == pytest.approx(HAND_CATEGORICAL, rel=1e-6)


def test_sparse_categorical_crossentropy_smooths_the_same_way():
    value = losses.SparseCategoricalCrossentropy(label_smoothing=0.3)(torch.tensor([1]), torch.tensor([P]))
    assert float(value) == pytest.approx(HAND_CATEGORICAL, rel=1e-6)


@pytest.mark.parametrize("make", [
    lambda: losses.BinaryCrossentropy(label_smoothing=0.2),
    lambda: losses.get("binary_crossentropy", label_smoothing=0.2),
    lambda: (lambda y_true, y_pred: losses.binary_crossentropy(y_true, y_pred, label_smoothing=0.2).mean()),
])
def test_binary_crossentropy_smooths_as_keras(make):
    # two samples, one output each: p = 0.8 with target 1, p = 0.3 with target 0
    value = make()(torch.tensor([[1.0], [0.0]]), torch.tensor([[0.8], [0.3]]))
    assert float(value) == pytest.approx(HAND_BINARY, rel=1e-6)


def test_label_smoothing_outside_the_unit_interval_is_refused():
    with pytest.raises(ValueError, match="label_smoothing in \\[0, 1\\]"):
        losses.CategoricalCrossentropy(label_smoothing=1.5)
