"""MNIST scenes with per-pixel masks: determinism, masks that match the ink, classes, bad arguments."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from deepzen.data import mask_scenes
from deepzen.data.mask_scenes import INK_THRESHOLD, NUM_CLASSES, load_mask_scenes, make_mask_scenes


def test_same_seed_same_scenes(real_dataset):
    x_train, y_train, x_test, y_test = load_mask_scenes(real_dataset("mnist"), train_scenes=20, test_scenes=10, seed=2)
    again = load_mask_scenes(real_dataset("mnist"), train_scenes=20, test_scenes=10, seed=2)
    for a, b in zip((x_train, y_train, x_test, y_test), again):
        np.testing.assert_array_equal(a, b)
    other = load_mask_scenes(real_dataset("mnist"), train_scenes=20, test_scenes=10, seed=3)
    assert not np.array_equal(x_train, other[0])
    assert x_train.shape == (20, 1, 64, 64) and y_train.shape == (20, 64, 64) and y_train.dtype == np.int64
    # Squares never overlap and the canvas is black, so a pixel is a digit's exactly where it is bright.
    for images, masks in ((x_train, y_train), (x_test, y_test)):
        np.testing.assert_array_equal(masks > 0, images[:, 0] >= INK_THRESHOLD)
        assert masks.max() < NUM_CLASSES


def test_mask_ids_are_one_plus_the_digit():
    digits = np.zeros((2, 28, 28), np.uint8)
    digits[:, 4:24, 6:22] = np.linspace(0, 255, 16).astype(np.uint8)  # a ramp: part of it below the threshold
    images, masks = make_mask_scenes(digits, np.array([7, 7]), 5, digits=(2, 2), sizes=(28, 28), seed=0)
    assert set(np.unique(masks)) == {0, 8}
    assert ((masks == 8) == (images[:, 0] >= INK_THRESHOLD)).all()
    per_digit = 20 * (np.linspace(0, 255, 16) >= INK_THRESHOLD).sum()  # rows x bright columns of one whole digit
    counts = (masks == 8).reshape(5, -1).sum(1)
    assert (counts % per_digit == 0).all() and (counts >= per_digit).all()  # whole digits, at least one per scene


def test_bad_arguments_are_refused():
    digits = np.zeros((2, 28, 28), np.uint8)
    with pytest.raises(ValueError, match=r"1 <= sizes\[0\] <= sizes\[1\] <= canvas\. Received: .*sizes=\(20, 80\)"):
        make_mask_scenes(digits, np.array([1, 2]), 1, sizes=(20, 80))
    with pytest.raises(ValueError, match=r"digit classes 0..9\. Received: 1..12"):
        make_mask_scenes(digits, np.array([1, 12]), 1)
    with pytest.raises(ValueError, match=r"digits \(N, H, W\) and N labels"):
        make_mask_scenes(digits, np.array([1]), 1)


def test_docstring_examples():
    result = doctest.testmod(mask_scenes)
    assert result.failed == 0 and result.attempted > 0
