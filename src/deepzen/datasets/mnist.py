"""``deepzen.datasets.mnist.load_data()``: MNIST as Keras returns it."""

from __future__ import annotations

import numpy as np

from deepzen.data.images import load_mnist

_FOLDER = "mnist"


def load_data(path: str | None = None):
    """``((x_train, y_train), (x_test, y_test))``: uint8 images ``(60000, 28, 28)`` / ``(10000, 28, 28)`` with
    pixels 0..255 and uint8 labels, as in Keras.

    Args:
        path: the folder holding the four IDX files (default: ``$DEEPZEN_DATA/mnist``).
    """
    x_train, y_train, x_test, y_test = load_mnist(path, kind=_FOLDER)
    return (x_train, y_train.astype(np.uint8)), (x_test, y_test.astype(np.uint8))
