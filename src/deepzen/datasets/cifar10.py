"""``deepzen.datasets.cifar10.load_data()``: CIFAR-10 as Keras returns it, from the published Python batches."""

from __future__ import annotations

import numpy as np

from deepzen.data.images import load_cifar10


def load_data(path: str | None = None):
    """``((x_train, y_train), (x_test, y_test))``: uint8 images ``(N, 32, 32, 3)`` (channels last, as Keras
    returns them) and uint8 labels of shape ``(N, 1)``, from ``path`` (default: ``$DEEPZEN_DATA/cifar10``)."""
    x_train, y_train, x_test, y_test = load_cifar10(path)
    channels_last = lambda images: np.ascontiguousarray(images.transpose(0, 2, 3, 1))  # noqa: E731
    return ((channels_last(x_train), y_train.astype(np.uint8).reshape(-1, 1)),
            (channels_last(x_test), y_test.astype(np.uint8).reshape(-1, 1)))
