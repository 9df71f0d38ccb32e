"""``layer(x, training=...)`` overrides the module's mode for one call, as Keras's call argument does."""

import torch

from deepzen.layers.core import Dropout
from deepzen.layers.normalization import BatchNormalization


def test_dropout_training_argument():
    x = torch.ones(100, 100)
    layer = Dropout(0.5).eval()
    assert torch.equal(layer(x), x)
    dropped = layer(x, training=True)
    assert (dropped == 0).any() and set(dropped.unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(layer.train()(x, training=False), x)


def test_batch_normalization_training_argument():
    torch.manual_seed(0)
    x = torch.randn(64, 3) * 4 + 10
    layer = BatchNormalization().eval()
    layer(x)  # build
    inference = layer(x)
    torch.testing.assert_close(inference, x / (1 + 1e-3) ** 0.5)  # fresh moving statistics: mean 0, var 1
    assert torch.equal(layer.running_mean, torch.zeros(3))
    trained = layer(x, training=True)
    torch.testing.assert_close(trained.mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    assert not torch.equal(layer.running_mean, torch.zeros(3))  # the moving statistics moved
    layer.train()
    before = layer.running_mean.clone()
    layer(x, training=False)
    assert torch.equal(layer.running_mean, before)


def test_frozen_batch_normalization_runs_in_inference_mode():
    x = torch.randn(32, 3) * 4 + 10
    layer = BatchNormalization()
    layer(x)
    layer.trainable = False
    before = layer.running_mean.clone()
    out = layer(x, training=True)
    assert torch.equal(layer.running_mean, before)
    torch.testing.assert_close(out, (x - before) / (layer.running_var + 1e-3).sqrt())
