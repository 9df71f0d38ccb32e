"""deepzen.utils.to_categorical, pad_sequences and set_random_seed behave as Keras documents them."""

import doctest
import random

import numpy as np
import pytest
import torch

import deepzen.utils as utils
from deepzen.utils import categorical, sequence_padding


@pytest.mark.parametrize("module", [categorical, sequence_padding])
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_to_categorical_one_hot_rows():
    out = utils.to_categorical(np.array([[1], [0], [3]]))  # a trailing axis of 1 is dropped, as in Keras
    assert out.shape == (3, 4) and out.dtype == np.float32
    np.testing.assert_array_equal(out.argmax(1), [1, 0, 3])
    assert utils.to_categorical(torch.tensor([[0, 1], [1, 0]]), 3).shape == (2, 2, 3)


def test_to_categorical_bad_input_names_the_values():
    with pytest.raises(ValueError, match=r"\[0, 2\).*from 0 to 2"):
        utils.to_categorical([0, 2], num_classes=2)
    with pytest.raises(ValueError, match="integer class indices"):
        utils.to_categorical([0.5, 1.0])


def test_pad_sequences_keras_defaults_pre():
    out = utils.pad_sequences([[1, 2, 3], [4, 5], []], maxlen=2)
    np.testing.assert_array_equal(out, [[2, 3], [4, 5], [0, 0]])
    post = utils.pad_sequences([[1, 2, 3], [4]], padding="post", truncating="post", maxlen=2, value=-1)
    np.testing.assert_array_equal(post, [[1, 2], [4, -1]])
    vectors = utils.pad_sequences([np.ones((1, 3)), np.ones((2, 3))], dtype="float32")
    assert vectors.shape == (2, 2, 3) and vectors[0, 0].sum() == 0
    with pytest.raises(ValueError, match="padding='pre' or 'post'. Received: padding='middle'"):
        utils.pad_sequences([[1]], padding="middle")


def test_set_random_seed_repeats_python_numpy_torch():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    utils.set_random_seed(7)
    first = draw()
    utils.set_random_seed(7)
    assert draw() == first
    with pytest.raises(ValueError, match="non-negative integer"):
        utils.set_random_seed(-1)


def test_unknown_name_is_an_attribute_error():
    assert {"to_categorical", "pad_sequences", "set_random_seed", "plot_model"} <= set(utils.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        utils.nope
