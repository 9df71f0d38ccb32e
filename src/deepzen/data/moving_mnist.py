"""Moving MNIST clips: MNIST digits that move across a canvas and bounce off its edges (a video set).

No real video dataset could be brought into this environment, so the video models train on clips
drawn from the MNIST digits, as in Srivastava et al. (2015): two 28x28 digits on a 64x64 canvas,
20 frames, pixels combined by maximum. Everything comes from a seeded ``numpy`` generator: the same
arguments give the same clips, bit for bit.

Here each digit moves along one axis, in one of four directions (:data:`DIRECTIONS`), at a speed
drawn from ``speeds`` pixels per frame, and bounces off the canvas's edges. Its start is placed so
that it keeps its first direction for at least ``straight`` frames: the direction a clip is labelled
with is seen before any bounce. The two digits of a clip are different classes; by default they set
off in the same direction (``shared_direction=True``: the clip has one direction of motion), each
at its own speed and place; with ``shared_direction=False`` each draws its own.

The task label (:func:`digit_directions`) says which digits appear and how each one moves: a row of
10 ids, one per digit class, ``0`` for a digit that is absent and ``1 + direction`` for one that
appears (1 left, 2 right, 3 up, 4 down). Which digits appear can be read from any frame; the
direction cannot, because a frame shows where a digit is, not where it goes.

Example:
    >>> digits = np.zeros((3, 28, 28), np.uint8); digits[:, 8:20, 10:18] = 255
    >>> clips, classes, directions = make_moving_mnist(digits, np.array([4, 7, 1]), 2, seed=0)
    >>> clips.shape, classes.shape, directions.shape
    ((2, 1, 20, 64, 64), (2, 2), (2, 2))
    >>> digit_directions(np.array([[4, 7]]), np.array([[1, 2]]))[0].tolist()
    [0, 0, 0, 0, 2, 0, 0, 3, 0, 0]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from deepzen.data.images import from_mnist_digits
from deepzen.data.paths import PathLike

DIRECTIONS = ("left", "right", "up", "down")
"""The directions of motion, in the order of their ids (0..3)."""

LABEL_NAMES = ("absent", *DIRECTIONS)
"""What a digit's label id means: 0 absent, 1 + direction id for a digit that appears."""

_STEPS = np.array([[0, -1], [0, 1], [-1, 0], [1, 0]])  # (row, column) unit step of each direction


def _bounce(position: np.ndarray, limit: int) -> np.ndarray:
    """Positions along a line reflected into [0, limit] (the digit bounces off both ends)."""
    period = 2 * limit
    folded = np.mod(position, period)
    return np.where(folded > limit, period - folded, folded)


def make_moving_mnist(images: np.ndarray, labels: np.ndarray, count: int, *, frames: int = 20, size: int = 64,
                      digits: int = 2, speeds: tuple[float, float] = (2.0, 3.5), straight: int = 8,
                      shared_direction: bool = True, seed: int | Sequence[int] = 0
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draws ``count`` clips of ``digits`` moving digits taken from ``images``.

    Args:
        images: (N, 28, 28) uint8 digits (any square size smaller than ``size``).
        labels: (N,) their classes, 0..9.
        count: clips to draw.
        frames: frames per clip (T).
        size: side of the square canvas in pixels.
        digits: digits per clip, of different classes.
        speeds: ``(slowest, fastest)`` speed in pixels per frame, drawn uniformly.
        straight: frames during which every digit keeps its first direction (no bounce before).
        shared_direction: the digits of a clip set off in one direction; False: each draws its own.
        seed: the generator's seed (an int, or ints such as ``(seed, epoch)``).

    Returns:
        ``(clips, classes, directions)``: uint8 ``(count, 1, frames, size, size)`` (PyTorch's
        ``(N, C, T, H, W)``), int64 ``(count, digits)`` digit classes and int64 ``(count, digits)``
        direction ids (indices into :data:`DIRECTIONS`).
    """
    labels = np.asarray(labels)
    if images.ndim != 3 or images.shape[1] != images.shape[2] or len(images) != len(labels) or not len(images):
        raise ValueError(f"make_moving_mnist expects square digits (N, S, S) and N labels, N > 0. Received: images "
                         f"{images.shape}, labels {labels.shape}")
    digit_size = images.shape[1]
    limit = size - digit_size  # the largest top-left coordinate
    if limit < 1 or frames < 1 or not 0 < speeds[0] <= speeds[1] or not 1 <= digits <= len(np.unique(labels)):
        raise ValueError(f"make_moving_mnist expects size > the digits' side ({digit_size}), frames >= 1, "
                         f"0 < speeds[0] <= speeds[1] and 1 <= digits <= the number of classes. Received: size={size}, "
                         f"frames={frames}, speeds={speeds}, digits={digits}")
    if straight * speeds[1] > limit:
        raise ValueError(f"make_moving_mnist: a digit at speed {speeds[1]} cannot go {straight} frames straight on a "
                         f"{size}-pixel canvas (it has {limit} pixels of room). Lower straight or speeds")
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    classes_available = np.array(sorted(by_class))
    rng = np.random.default_rng(seed)
    clips = np.zeros((count, 1, frames, size, size), np.uint8)
    classes = np.zeros((count, digits), np.int64)
    directions = np.zeros((count, digits), np.int64)
    time = np.arange(frames)
    for clip in range(count):
        chosen = rng.choice(classes_available, size=digits, replace=False)
        clip_direction = int(rng.integers(len(DIRECTIONS)))
        for slot, digit_class in enumerate(chosen):
            image = images[rng.choice(by_class[digit_class])]
            direction = clip_direction if shared_direction else int(rng.integers(len(DIRECTIONS)))
            speed = rng.uniform(*speeds)
            step = _STEPS[direction]
            # Along the motion axis, start where `straight` frames of travel stay on the canvas.
            room = limit - int(np.ceil(straight * speed))
            along = rng.integers(0, room + 1)
            along = along if step.sum() > 0 else limit - along
            across = rng.integers(0, limit + 1)
            start = np.array([along, across] if step[0] else [across, along], dtype=np.float64)  # (row, column)
            path = np.rint(_bounce(start[None] + speed * time[:, None] * step[None], limit)).astype(int)  # (T, 2)
            for frame, (top, left) in enumerate(path):
                region = clips[clip, 0, frame, top:top + digit_size, left:left + digit_size]
                np.maximum(region, image, out=region)
            classes[clip, slot], directions[clip, slot] = digit_class, direction
    return clips, classes, directions


def digit_directions(classes: np.ndarray, directions: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """The task label of each clip: ``(N, num_classes)`` ids, 0 for an absent digit, 1 + its direction
    for a digit that appears (see the module docstring).

    Args:
        classes: ``(N, D)`` digit classes of each clip (distinct within a clip).
        directions: ``(N, D)`` their direction ids.
    """
    classes, directions = np.asarray(classes), np.asarray(directions)
    labels = np.zeros((len(classes), num_classes), np.int64)
    np.put_along_axis(labels, classes, directions + 1, axis=1)
    return labels


class FreshClips:
    """Training batches of clips drawn anew every epoch, as Srivastava et al. (2015) drew theirs.

    A fixed set of a few thousand clips shows each digit image in one clip only; drawing ``count`` new
    clips per epoch from the digits shows the network new pairings, places and speeds all along. Epoch
    ``e``'s clips come from the seed ``(seed, e)``: a run is reproducible, and with
    :class:`deepzen.callbacks.FollowEpochs` a fit resumed from a checkpoint draws what the uninterrupted
    fit drew (the batches count the epochs they serve otherwise, starting from 0).

    Args:
        images, labels: the digits (N, S, S) uint8 and their classes.
        count: clips per epoch.
        batch_size: clips per batch (the last batch of an epoch may be smaller).
        seed: the clips' seed, combined with the epoch.
        **options: passed to :func:`make_moving_mnist` (``frames``, ``shared_direction``, ...).

    Yields, per batch: ``(clips, labels)``, float32 ``(B, 1, T, H, W)`` pixels 0..255 and int64 ``(B, 10)``
    :func:`digit_directions` labels.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, count: int, batch_size: int, *, seed: int = 0,
                 **options):
        if count < 1 or batch_size < 1:
            raise ValueError(f"FreshClips expects count >= 1 and batch_size >= 1. Received: count={count}, "
                             f"batch_size={batch_size}")
        self.images, self.labels, self.count, self.batch_size = images, np.asarray(labels), count, batch_size
        self.seed, self.options, self.epoch = seed, options, 0

    def __len__(self) -> int:
        return -(-self.count // self.batch_size)

    def __iter__(self):
        clips, labels = labelled_clips(self.images, self.labels, self.count, seed=(self.seed, self.epoch),
                                       **self.options)
        labels = torch.from_numpy(labels)
        self.epoch += 1
        for start in range(0, self.count, self.batch_size):
            batch = torch.from_numpy(clips[start:start + self.batch_size]).float()
            yield batch, labels[start:start + self.batch_size]


def load_moving_mnist(data: PathLike | None = None, *, train_clips: int = 3000, test_clips: int = 600,
                      seed: int = 0, **options) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training clips from MNIST's training digits and test clips from its test digits, with task labels.

    Args:
        data: the MNIST folder (default ``$DEEPZEN_DATA/mnist``).
        train_clips, test_clips: how many clips of each.
        seed: seeds both (the test clips with ``seed + 1``).
        **options: passed to :func:`make_moving_mnist` (``frames``, ``size``, ``speeds``, ``straight``).

    Returns:
        ``(x_train, y_train, x_test, y_test)``: uint8 clips ``(N, 1, T, H, W)`` and their
        :func:`digit_directions` labels ``(N, 10)``.
    """
    return from_mnist_digits(labelled_clips, data, train_clips, test_clips, seed, **options)


def labelled_clips(images: np.ndarray, labels: np.ndarray, count: int, *, seed: int | Sequence[int] = 0,
                   **options) -> tuple[np.ndarray, np.ndarray]:
    """``count`` clips of :func:`make_moving_mnist` and their :func:`digit_directions` labels:
    uint8 ``(count, 1, T, H, W)`` and int64 ``(count, 10)``."""
    clips, classes, directions = make_moving_mnist(images, labels, count, seed=seed, **options)
    return clips, digit_directions(classes, directions)
