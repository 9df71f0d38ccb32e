"""Shared pieces of the keras.io ports: MNIST in Keras's ``load_data()`` shape (sliced), the image layout
reset after each test, and a seed."""

import functools

import numpy as np
import pytest

import deepzen
from deepzen.data.images import load_mnist


@functools.cache
def _mnist():
    return load_mnist()  # read once per session


@pytest.fixture
def mnist_load_data():
    """``keras.datasets.mnist.load_data()`` for deepzen: ``((x_train, y_train), (x_test, y_test))``, uint8 images
    (N, 28, 28), from ``$DEEPZEN_DATA/mnist``; ``n_train``/``n_test`` slice it to the tests' budget."""

    def load_data(n_train=2000, n_test=500):
        x_train, y_train, x_test, y_test = _mnist()
        return (x_train[:n_train], y_train[:n_train]), (x_test[:n_test], y_test[:n_test])

    return load_data


@pytest.fixture(autouse=True)
def fresh_state():
    """Each example starts seeded and with deepzen's default image layout, and leaves it so."""
    deepzen.seed(0)
    np.random.seed(0)
    before = deepzen.config.image_data_format()
    yield
    deepzen.config.set_image_data_format(before)
