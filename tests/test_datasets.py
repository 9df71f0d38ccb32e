"""deepzen.datasets: Keras's load_data() arrays, read from $DEEPZEN_DATA."""

import numpy as np

from deepzen import datasets
from deepzen.data.images import load_cifar10, load_mnist, write_cifar10_like


def test_mnist_load_data_matches_keras_arrays():
    (x_train, y_train), (x_test, y_test) = datasets.mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.uint8
    assert y_train[:5].tolist() == [5, 0, 4, 1, 9]  # the published file's first labels
    reference = load_mnist()
    assert np.array_equal(x_test, reference[2]) and np.array_equal(y_test, reference[3])


def test_cifar10_load_data_is_channels_last_with_column_labels(tmp_path):
    folder = write_cifar10_like(tmp_path / "cifar", 20)
    (x_train, y_train), (x_test, y_test) = datasets.cifar10.load_data(folder)
    x_ref, y_ref, _, _ = load_cifar10(folder)
    assert x_train.shape[1:] == (32, 32, 3) and y_train.shape == (len(x_ref), 1) and y_train.dtype == np.uint8
    assert np.array_equal(x_train, x_ref.transpose(0, 2, 3, 1)) and np.array_equal(y_train[:, 0], y_ref)
