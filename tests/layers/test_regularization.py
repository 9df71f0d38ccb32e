"""Noise and regularization layers against Keras's documented behaviour."""

import doctest

import pytest
import torch

from deepzen.layers import regularization
from deepzen.layers.regularization import (ActivityRegularization, GaussianDropout, GaussianNoise, SpatialDropout1D,
                                           SpatialDropout2D, SpatialDropout3D)


def test_docstrings_run():
    result = doctest.testmod(regularization)
    assert result.attempted > 0 and result.failed == 0


def test_gaussian_noise_identity_at_inference_and_right_std_in_training():
    layer = GaussianNoise(0.5)
    x = torch.full((400, 500), 3.0)
    noisy = layer(x)  # a new layer is in training mode, like torch modules
    assert abs((noisy - x).mean().item()) < 0.01
    assert abs((noisy - x).std().item() - 0.5) < 0.01
    layer.eval()
    assert torch.equal(layer(x), x)
    assert not torch.equal(layer(x, training=True), x)
    layer.train()
    assert torch.equal(layer(x, training=False), x)


def test_seed_makes_noise_reproducible():
    x = torch.zeros(3, 4)
    torch.testing.assert_close(GaussianNoise(1.0, seed=7)(x), GaussianNoise(1.0, seed=7)(x))


def test_gaussian_dropout_mean_one_and_keras_std():
    rate = 0.2
    x = torch.ones(400, 500)
    out = GaussianDropout(rate)(x)
    assert abs(out.mean().item() - 1.0) < 0.01
    assert abs(out.std().item() - (rate / (1 - rate)) ** 0.5) < 0.01
    assert torch.equal(GaussianDropout(rate).eval()(x), x)
    with pytest.raises(ValueError, match="rate in \\[0, 1\\). Received: rate=1.0"):
        GaussianDropout(1.0)


def test_spatial_dropout_drops_whole_channels():
    torch.manual_seed(0)
    x = torch.ones(8, 20, 16)  # (N, T, C): Keras's layout for 1-d
    out = SpatialDropout1D(0.5)(x)
    per_channel = out.amax(1)  # (N, C): each channel is all 0 or all 2 over the steps
    assert torch.equal(out, per_channel.unsqueeze(1).expand_as(out))
    assert set(per_channel.unique().tolist()) == {0.0, 2.0}

    images = torch.ones(4, 6, 5, 5)
    out = SpatialDropout2D(0.5, data_format="channels_first")(images)
    assert torch.equal(out, out[:, :, :1, :1].expand_as(out))
    out = SpatialDropout2D(0.5, data_format="channels_last")(images)
    assert torch.equal(out, out[:, :1, :1, :].expand_as(out))
    volumes = torch.ones(2, 3, 4, 4, 4)
    out = SpatialDropout3D(0.5)(volumes)
    assert torch.equal(out, out[:, :, :1, :1, :1].expand_as(out))
    assert torch.equal(SpatialDropout2D(0.5).eval()(images), images)
    with pytest.raises(ValueError, match="expects inputs with 4 axes"):
        SpatialDropout2D(0.5)(torch.ones(2, 3))


def test_activity_regularization_penalty_and_identity():
    layer = ActivityRegularization(l1=0.1, l2=0.01)
    x = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    assert torch.equal(layer(x), x)
    torch.testing.assert_close(layer.activity_loss, torch.tensor(0.1 * 6 + 0.01 * 14))


def test_config_round_trip():
    for layer in (GaussianNoise(0.1, seed=3), GaussianDropout(0.3), SpatialDropout1D(0.2), SpatialDropout2D(0.2),
                  ActivityRegularization(0.1, 0.2)):
        rebuilt = type(layer).from_config(layer.get_config())
        assert rebuilt.get_config() == layer.get_config()
