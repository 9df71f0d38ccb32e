"""MNIST scenes with per-pixel masks: a semantic segmentation set drawn from the MNIST digits.

A scene is a blank canvas with a few MNIST digits, each resized to a random side and pasted where
its square does not overlap another's. Its mask gives every pixel a class: 0 for background,
``1 + d`` for a pixel of digit ``d`` (11 classes). A digit's pixels are those of its resized image
at least :data:`INK_THRESHOLD` bright; the fainter rim of a stroke is background.

Scenes come from a seeded ``numpy`` generator, so the same arguments give the same scenes bit for
bit. :func:`load_mask_scenes` draws the training scenes from MNIST's training digits and the test
scenes from its test digits, so no test digit was seen in training.

Example:
    >>> digits = np.zeros((3, 28, 28), np.uint8); digits[:, 8:20, 10:18] = 255
    >>> images, masks = make_mask_scenes(digits, np.array([4, 7, 1]), 2, seed=0)
    >>> images.shape, masks.shape, sorted(set(masks.ravel().tolist())) <= [0, 2, 5, 8]
    ((2, 1, 64, 64), (2, 64, 64), True)
"""

from __future__ import annotations

import numpy as np

from deepzen.data.images import from_mnist_digits, random_digit
from deepzen.data.paths import PathLike

INK_THRESHOLD = 128
"""A pixel (0..255) of a pasted digit at least this bright is labelled with the digit's class."""

BACKGROUND = 0
NUM_CLASSES = 11  # background + the ten digits
CLASS_NAMES = ("background", *(str(d) for d in range(10)))


def make_mask_scenes(images: np.ndarray, labels: np.ndarray, count: int, *, canvas: int = 64,
                     digits: tuple[int, int] = (1, 3), sizes: tuple[int, int] = (20, 34),
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``count`` scenes and their masks from the digits ``images`` with classes ``labels``.

    Args:
        images: (N, H, W) uint8 digits.
        labels: (N,) their classes, 0..9.
        count: scenes to draw.
        canvas: side of the square scenes in pixels.
        digits: ``(fewest, most)`` digits per scene, inclusive; a digit that finds no free place in
            20 tries is left out.
        sizes: ``(smallest, largest)`` side in pixels a digit is resized to, inclusive.
        seed: the generator's seed.

    Returns:
        ``(images, masks)``: uint8 ``(count, 1, canvas, canvas)`` scenes and int64
        ``(count, canvas, canvas)`` class ids (0 background, 1 + digit).
    """
    labels = np.asarray(labels)
    if images.ndim != 3 or len(images) != len(labels) or not len(images):
        raise ValueError(f"make_mask_scenes expects digits (N, H, W) and N labels, N > 0. Received: images "
                         f"{images.shape}, labels {labels.shape}")
    if not 1 <= digits[0] <= digits[1] or not 1 <= sizes[0] <= sizes[1] <= canvas:
        raise ValueError(f"make_mask_scenes expects 1 <= digits[0] <= digits[1] and 1 <= sizes[0] <= sizes[1] <= "
                         f"canvas. Received: digits={digits}, sizes={sizes}, canvas={canvas}")
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"make_mask_scenes expects digit classes 0..9. Received: {labels.min()}..{labels.max()}")
    rng = np.random.default_rng(seed)
    scenes = np.zeros((count, 1, canvas, canvas), np.uint8)
    masks = np.zeros((count, canvas, canvas), np.int64)
    for scene in range(count):
        taken = np.zeros((canvas, canvas), bool)  # squares already holding a digit
        for _ in range(rng.integers(digits[0], digits[1] + 1)):
            index, patch = random_digit(rng, images, sizes)
            side = len(patch)
            for _try in range(20):
                top, left = rng.integers(0, canvas - side + 1, size=2)
                if not taken[top:top + side, left:left + side].any():
                    taken[top:top + side, left:left + side] = True
                    scenes[scene, 0, top:top + side, left:left + side] = patch
                    masks[scene, top:top + side, left:left + side][patch >= INK_THRESHOLD] = 1 + labels[index]
                    break
    return scenes, masks


def load_mask_scenes(data: PathLike | None = None, *, train_scenes: int = 6000, test_scenes: int = 1000,
                     seed: int = 0, **options) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training scenes from MNIST's training digits and test scenes from its test digits.

    Args:
        data: the MNIST folder (default ``$DEEPZEN_DATA/mnist``).
        train_scenes, test_scenes: how many scenes of each.
        seed: seeds both (the test scenes with ``seed + 1``).
        **options: passed to :func:`make_mask_scenes` (``canvas``, ``digits``, ``sizes``).

    Returns:
        ``(x_train, y_train, x_test, y_test)`` as :func:`make_mask_scenes` returns them.
    """
    return from_mnist_digits(make_mask_scenes, data, train_scenes, test_scenes, seed, **options)
