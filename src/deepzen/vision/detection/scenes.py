"""MNIST scenes: several digits at varied scales on a blank canvas, with their boxes (a detection set).

Each scene is drawn from a seeded ``numpy`` generator, so the same arguments give the same scenes,
bit for bit, on every machine. A digit is resized from 28x28 to a random size, pasted at a random
place (pixels combine by maximum), and boxed tightly around its ink (pixels above
``INK_THRESHOLD``); a placement whose box overlaps an earlier digit's box by more than
``max_overlap`` IoU is drawn again (the digit is left out after 20 tries).

Training scenes are built from MNIST's training digits and test scenes from its test digits, so no
test digit was ever seen in training.

Example:
    >>> digits = np.zeros((3, 28, 28), np.uint8); digits[:, 8:20, 10:18] = 255
    >>> scenes, targets = make_scenes(digits, np.array([4, 7, 1]), 2, canvas=64, digits=(1, 2), seed=0)
    >>> scenes.shape, targets.shape
    ((2, 1, 64, 64), (2, 2, 5))
"""

from __future__ import annotations

import numpy as np

from deepzen.data.images import from_mnist_digits, random_digit
from deepzen.data.paths import PathLike

INK_THRESHOLD = 64  # a pixel (0..255) brighter than this is part of the digit's box


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    top_left = np.maximum(box[:2], others[:, :2])
    bottom_right = np.minimum(box[2:], others[:, 2:])
    overlap = np.clip(bottom_right - top_left, 0, None).prod(1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return overlap / (area(box) + area(others) - overlap)


def make_scenes(images: np.ndarray, labels: np.ndarray, count: int, *, canvas: int = 128,
                digits: tuple[int, int] = (2, 5), sizes: tuple[int, int] = (20, 64), max_overlap: float = 0.1,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``count`` scenes from the digits ``images`` with class ``labels``.

    Args:
        images: (N, 28, 28) uint8 digits.
        labels: (N,) int classes.
        count: scenes to draw.
        canvas: side of the square scenes in pixels.
        digits: ``(fewest, most)`` digits per scene, inclusive.
        sizes: ``(smallest, largest)`` side, in pixels, a 28x28 digit is resized to (inclusive).
        max_overlap: largest IoU allowed between two digits' boxes.
        seed: the generator's seed.

    Returns:
        ``(scenes, targets)``: uint8 ``(count, 1, canvas, canvas)`` and float32 ``(count, most, 5)``
        rows ``x1, y1, x2, y2, class`` in pixels, padded with rows of class -1.
    """
    if images.ndim != 3 or len(images) != len(labels) or not len(images):
        raise ValueError(f"make_scenes expects digits (N, H, W) and N labels, N > 0. Received: images "
                         f"{images.shape}, labels {np.shape(labels)}")
    if not 1 <= digits[0] <= digits[1] or not 1 <= sizes[0] <= sizes[1] <= canvas:
        raise ValueError(f"make_scenes expects 1 <= digits[0] <= digits[1] and 1 <= sizes[0] <= sizes[1] <= canvas. "
                         f"Received: digits={digits}, sizes={sizes}, canvas={canvas}")
    rng = np.random.default_rng(seed)
    scenes = np.zeros((count, 1, canvas, canvas), np.uint8)
    targets = np.full((count, digits[1], 5), -1.0, np.float32)
    for scene in range(count):
        placed = []
        for _ in range(rng.integers(digits[0], digits[1] + 1)):
            index, patch = random_digit(rng, images, sizes)
            size = len(patch)
            rows, cols = np.nonzero(patch > INK_THRESHOLD)
            if not len(rows):
                continue  # a blank digit has no box
            for _try in range(20):
                top, left = rng.integers(0, canvas - size + 1, size=2)
                box = np.array([left + cols.min(), top + rows.min(), left + cols.max() + 1, top + rows.max() + 1],
                               np.float32)
                if not placed or _iou(box, np.stack([b for b, _ in placed])).max() <= max_overlap:
                    region = scenes[scene, 0, top:top + size, left:left + size]
                    np.maximum(region, patch, out=region)
                    placed.append((box, labels[index]))
                    break
        for row, (box, label) in enumerate(placed):
            targets[scene, row] = (*box, label)
    return scenes, targets


def load_mnist_scenes(data: PathLike | None = None, *, train_scenes: int = 8000, test_scenes: int = 1000,
                      seed: int = 0, **options) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training scenes from MNIST's training digits and test scenes from its test digits.

    Args:
        data: the MNIST folder (default ``$DEEPZEN_DATA/mnist``).
        train_scenes, test_scenes: how many scenes of each.
        seed: seeds both (the test scenes with ``seed + 1``).
        **options: passed to :func:`make_scenes` (``canvas``, ``digits``, ``sizes``, ``max_overlap``).

    Returns:
        ``(x_train, y_train, x_test, y_test)`` as :func:`make_scenes` returns them.
    """
    return from_mnist_digits(make_scenes, data, train_scenes, test_scenes, seed, **options)
