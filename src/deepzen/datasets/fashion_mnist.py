"""``deepzen.datasets.fashion_mnist.load_data()``: Fashion-MNIST as Keras returns it (MNIST's file format)."""

from __future__ import annotations

import numpy as np

from deepzen.data.images import load_mnist


def load_data(path: str | None = None):
    """``((x_train, y_train), (x_test, y_test))`` from the four IDX files in ``path`` (default:
    ``$DEEPZEN_DATA/fashion-mnist``): uint8 images ``(N, 28, 28)`` and uint8 labels, as in Keras."""
    x_train, y_train, x_test, y_test = load_mnist(path, kind="fashion-mnist")
    return (x_train, y_train.astype(np.uint8)), (x_test, y_test.astype(np.uint8))
