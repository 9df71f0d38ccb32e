"""MNIST scenes: seeded (the same bytes every time), boxes tight around the ink, digits from the right split."""

import numpy as np
import pytest

from deepzen.data.images import load_mnist
from deepzen.vision.detection.scenes import INK_THRESHOLD, load_mnist_scenes, make_scenes


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def test_scenes_are_deterministic(mnist):
    x, y = mnist[0][:500], mnist[1][:500]
    first = make_scenes(x, y, 20, seed=3)
    again = make_scenes(x, y, 20, seed=3)
    other = make_scenes(x, y, 20, seed=4)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_boxes_frame_the_ink(mnist):
    scenes, targets = make_scenes(mnist[0][:300], mnist[1][:300], 30, canvas=96, digits=(1, 4), sizes=(16, 48),
                                  seed=0)
    assert scenes.shape == (30, 1, 96, 96) and scenes.dtype == np.uint8 and targets.shape == (30, 4, 5)
    counts = (targets[..., 4] >= 0).sum(1)
    assert counts.min() >= 1 and counts.max() <= 4 and counts.mean() > 2
    for scene, rows in zip(scenes, targets):
        covered = np.zeros((96, 96), bool)
        for x1, y1, x2, y2, label in rows[rows[:, 4] >= 0]:
            assert 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 96 and 0 <= label <= 9
            x1, y1, x2, y2 = int(x1), int(y1), int(x2), int(y2)
            region = scene[0, y1:y2, x1:x2] > INK_THRESHOLD
            # tight: ink touches all four sides of the box
            assert region[0].any() and region[-1].any() and region[:, 0].any() and region[:, -1].any()
            covered[y1:y2, x1:x2] = True
        assert not (scene[0] > INK_THRESHOLD)[~covered].any()  # no ink outside the boxes


def ink_crop(image):
    rows, cols = np.nonzero(image)
    return image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def test_train_and_test_scenes_come_from_their_splits(mnist):
    x_train, y_train, x_test, y_test = load_mnist_scenes(train_scenes=6, test_scenes=4, digits=(1, 1), sizes=(28, 28),
                                                         seed=0)
    assert x_train.shape == (6, 1, 128, 128) and x_test.shape == (4, 1, 128, 128)
    # One digit at its own size: each scene holds an MNIST digit unchanged. Find it in its own split.
    for scenes, targets, digits, labels in ((x_train, y_train, mnist[0], mnist[1]), (x_test, y_test, mnist[2], mnist[3])):
        sums = digits.reshape(len(digits), -1).astype(np.int64).sum(1)
        for scene, rows in zip(scenes, targets):
            crop = ink_crop(scene[0])
            candidates = np.nonzero(sums == crop.astype(np.int64).sum())[0]
            found = [i for i in candidates if ink_crop(digits[i]).shape == crop.shape
                     and np.array_equal(ink_crop(digits[i]), crop)]
            assert found and rows[0, 4] in labels[found]


def test_bad_arguments_are_named(mnist):
    with pytest.raises(ValueError, match="digits"):
        make_scenes(mnist[0][:10], mnist[1][:10], 2, digits=(3, 2))
    with pytest.raises(ValueError, match="N labels"):
        make_scenes(mnist[0][:10], mnist[1][:5], 2)
