"""Moving MNIST clips: determinism, the motion each label promises, the label scheme, bad arguments."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

from deepzen.data import moving_mnist
from deepzen.data.moving_mnist import (DIRECTIONS, FreshClips, digit_directions, labelled_clips, load_moving_mnist,
                                       make_moving_mnist)

BLOCKS = np.full((10, 28, 28), 255, np.uint8)  # one solid square per class: its box is its position
CLASSES = np.arange(10)


def test_same_seed_same_clips_other_seed_other_clips():
    first = make_moving_mnist(BLOCKS, CLASSES, 6, seed=3)
    again = make_moving_mnist(BLOCKS, CLASSES, 6, seed=3)
    other = make_moving_mnist(BLOCKS, CLASSES, 6, seed=4)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])
    clips, classes, directions = first
    assert clips.shape == (6, 1, 20, 64, 64) and clips.dtype == np.uint8
    assert classes.shape == directions.shape == (6, 2)
    assert (classes[:, 0] != classes[:, 1]).all() and set(directions.ravel()) <= {0, 1, 2, 3}


def box_corner(frame):
    rows, cols = np.nonzero(frame)
    return np.array([rows.min(), cols.min()])  # (top, left)


def test_each_digit_moves_straight_in_its_labelled_direction_then_bounces_inside_the_canvas():
    straight, speeds = 8, (2.0, 3.5)
    clips, _, directions = make_moving_mnist(BLOCKS, CLASSES, 40, digits=1, speeds=speeds, straight=straight, seed=1)
    unit = {0: (0, -1), 1: (0, 1), 2: (-1, 0), 3: (1, 0)}  # (row, column) step of left, right, up, down
    for clip, (direction,) in zip(clips[:, 0], directions):
        corners = np.stack([box_corner(frame) for frame in clip])  # (T, 2)
        assert ((corners >= 0) & (corners <= 64 - 28)).all()  # whole digit on the canvas
        steps = np.diff(corners[:straight + 1], axis=0)  # the first `straight` moves
        along = steps @ np.array(unit[int(direction)])
        across = steps @ np.array(unit[int(direction)][::-1])
        assert (along >= np.floor(speeds[0]) - 1).all() and (along <= np.ceil(speeds[1]) + 1).all()
        assert (across == 0).all()
        # Over the whole clip the digit never leaves its axis of motion.
        axis = 1 if direction in (0, 1) else 0
        assert (corners[:, 1 - axis] == corners[0, 1 - axis]).all()


def test_digit_directions_label_scheme():
    labels = digit_directions(np.array([[3, 8], [0, 9]]), np.array([[0, 3], [2, 1]]))
    assert labels.tolist() == [[0, 0, 0, 1, 0, 0, 0, 0, 4, 0],   # 3 moves left, 8 moves down
                               [3, 0, 0, 0, 0, 0, 0, 0, 0, 2]]   # 0 moves up, 9 moves right
    assert moving_mnist.LABEL_NAMES == ("absent", *DIRECTIONS) == ("absent", "left", "right", "up", "down")


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match=r"cannot go 30 frames straight on a 64-pixel canvas \(it has 36 pixels"):
        make_moving_mnist(BLOCKS, CLASSES, 1, straight=30)
    with pytest.raises(ValueError, match=r"square digits \(N, S, S\) and N labels"):
        make_moving_mnist(BLOCKS[:, :, :20], CLASSES, 1)
    with pytest.raises(ValueError, match=r"digits <= the number of classes"):
        make_moving_mnist(BLOCKS[:1], CLASSES[:1], 1, digits=2)


def test_clips_from_real_mnist(real_dataset):
    folder = real_dataset("mnist")
    x_train, y_train, x_test, y_test = load_moving_mnist(folder, train_clips=4, test_clips=3, seed=0)
    assert x_train.shape == (4, 1, 20, 64, 64) and x_test.shape == (3, 1, 20, 64, 64)
    assert y_train.shape == (4, 10) and ((y_train > 0).sum(1) == 2).all() and ((y_test > 0).sum(1) == 2).all()
    assert x_train.max() == 255 and (x_train > 0).mean() > 0.05  # digits are drawn


def test_fresh_clips_are_new_each_epoch_and_the_same_for_the_same_epoch():
    fresh = FreshClips(BLOCKS, CLASSES, 5, 2, seed=3, frames=6)
    assert len(fresh) == 3
    first = list(fresh)
    assert [tuple(x.shape) for x, _ in first] == [(2, 1, 6, 64, 64), (2, 1, 6, 64, 64), (1, 1, 6, 64, 64)]
    assert first[0][0].dtype == torch.float32 and first[0][1].shape == (2, 10)
    clips, labels = labelled_clips(BLOCKS, CLASSES, 5, seed=(3, 0), frames=6)  # epoch 0 is seed (3, 0)
    assert torch.equal(torch.cat([x for x, _ in first]), torch.from_numpy(clips).float())
    assert torch.equal(torch.cat([y for _, y in first]), torch.from_numpy(labels))
    second = torch.cat([x for x, _ in fresh])  # the next epoch draws other clips
    assert fresh.epoch == 2 and not torch.equal(second, torch.cat([x for x, _ in first]))
    fresh.epoch = 0  # what FollowEpochs does at a resumed fit's epoch start
    assert torch.equal(torch.cat([x for x, _ in fresh]), torch.cat([x for x, _ in first]))
    with pytest.raises(ValueError, match="count >= 1 and batch_size >= 1"):
        FreshClips(BLOCKS, CLASSES, 0, 2)


def test_docstring_examples():
    result = doctest.testmod(moving_mnist)
    assert result.failed == 0 and result.attempted > 0
