"""Rescaling, Normalization and CategoryEncoding against Keras's documented behaviour."""

import doctest

import numpy as np
import pytest
import torch

from deepzen.layers import preprocessing
from deepzen.layers.preprocessing import CategoryEncoding, Normalization, Rescaling


def test_docstrings_run():
    result = doctest.testmod(preprocessing)
    assert result.attempted > 0 and result.failed == 0


def test_rescaling():
    pixels = torch.tensor([[0, 127, 255]], dtype=torch.uint8)
    torch.testing.assert_close(Rescaling(1 / 255)(pixels), torch.tensor([[0.0, 127 / 255, 1.0]]))
    torch.testing.assert_close(Rescaling(1 / 127.5, offset=-1)(pixels), torch.tensor([[-1.0, 127 / 127.5 - 1, 1.0]]))


def test_normalization_adapt_gives_mean_zero_variance_one_per_feature():
    rng = np.random.default_rng(0)
    data = rng.normal([5.0, -3.0, 100.0], [2.0, 0.5, 30.0], size=(1000, 3)).astype(np.float32)
    layer = Normalization()
    layer.adapt(data)
    out = layer(torch.from_numpy(data))
    torch.testing.assert_close(out.mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.var(0, unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(layer.mean.squeeze(0), torch.from_numpy(data.mean(0)), atol=1e-4, rtol=1e-5)


def test_normalization_adapt_on_batches_equals_adapt_on_the_whole():
    data = torch.randn(100, 4, 3) * 3 + 1
    whole, batched = Normalization(), Normalization()
    whole.adapt(data)
    batched.adapt([(data[i:i + 7], None) for i in range(0, 100, 7)].__iter__())
    torch.testing.assert_close(whole.mean, batched.mean)
    torch.testing.assert_close(whole.variance, batched.variance)
    assert whole.mean.shape == (1, 1, 3)  # per feature of the last axis, averaged over samples and steps


def test_normalization_axis_none_given_statistics_and_invert():
    layer = Normalization(axis=None)
    layer.adapt(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    torch.testing.assert_close(layer(torch.tensor([3.0])), torch.tensor([0.0]))
    given = Normalization(mean=3.0, variance=2.0)  # Keras's docs example
    torch.testing.assert_close(given(torch.tensor([[1.0], [2.0], [3.0]])),
                               torch.tensor([[-1.4142], [-0.7071], [0.0]]), atol=1e-4, rtol=0)
    inverse = Normalization(mean=3.0, variance=2.0, invert=True)
    torch.testing.assert_close(inverse(given(torch.tensor([[1.0], [5.0]]))), torch.tensor([[1.0], [5.0]]))
    constant = Normalization()
    constant.adapt(torch.ones(4, 2))
    assert torch.isfinite(constant(torch.ones(1, 2))).all()  # std floored at 1e-7


def test_normalization_statistics_are_saved_with_the_weights():
    layer = Normalization()
    layer.adapt(torch.randn(50, 3) + 4)
    fresh = Normalization()
    fresh(torch.zeros(1, 3))
    fresh.load_state_dict(layer.state_dict())
    x = torch.randn(5, 3)
    torch.testing.assert_close(fresh(x), layer(x))
    with pytest.raises(ValueError, match="both mean and variance"):
        Normalization(mean=1.0)


def test_category_encoding_modes_as_keras_documents():
    one_hot = CategoryEncoding(num_tokens=4, output_mode="one_hot")
    expected = torch.eye(4)[[3, 2, 0, 1]]
    torch.testing.assert_close(one_hot(torch.tensor([3, 2, 0, 1])), expected)
    torch.testing.assert_close(one_hot(torch.tensor([[3], [2], [0], [1]])), expected)
    multi = CategoryEncoding(num_tokens=4, output_mode="multi_hot")
    torch.testing.assert_close(multi(torch.tensor([[0, 1], [0, 0], [1, 2], [3, 1]])),
                               torch.tensor([[1.0, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 1, 0, 1]]))
    count = CategoryEncoding(num_tokens=4, output_mode="count")
    weights = torch.tensor([[0.1, 0.2], [0.1, 0.1], [0.2, 0.3], [0.4, 0.2]])
    torch.testing.assert_close(count(torch.tensor([[0, 1], [0, 0], [1, 2], [3, 1]]), count_weights=weights),
                               torch.tensor([[0.1, 0.2, 0, 0], [0.2, 0, 0, 0], [0, 0.2, 0.3, 0], [0, 0.2, 0, 0.4]]))
    with pytest.raises(ValueError, match=r"values in \[0, num_tokens=4\). Received: min=0, max=4"):
        CategoryEncoding(4)(torch.tensor([[0, 4]]))
    with pytest.raises(ValueError, match="output_mode"):
        CategoryEncoding(4, output_mode="tf_idf")
