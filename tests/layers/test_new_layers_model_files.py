"""The layers of issue 15 (item 6) in model files: saved and loaded with their settings, weights and
adapted statistics; an unregistered Lambda is refused with a message saying how to register it."""

import pytest
import torch

import deepzen
from deepzen import layers as L
from deepzen.models import Sequential
from deepzen.training.serialization import save_model


def _round_trip(model, x, path):
    model.build_for(x)
    model.eval()
    expected = model(x)
    save_model(model, path)
    loaded = deepzen.load_model(path)
    loaded.eval()
    torch.testing.assert_close(loaded(x), expected)


def test_image_and_activation_layers_round_trip(tmp_path):
    torch.manual_seed(0)
    model = Sequential([
        L.Rescaling(0.5), L.Conv2D(4, 3, padding="same", data_format="channels_last"), L.PReLU(shared_axes=[1, 2]),
        L.GroupNormalization(2, axis=-1), L.Cropping2D(1, data_format="channels_last"),
        L.SpatialDropout2D(0.1, data_format="channels_last"), L.GaussianNoise(0.1), L.Flatten(), L.Dense(5),
        L.LeakyReLU(), L.ELU(), L.ReLU(6.0), L.UnitNormalization(), L.Softmax()])
    _round_trip(model, torch.randn(2, 12, 12, 3), tmp_path / "image.dz")


def test_sequence_layers_and_adapted_normalization_round_trip(tmp_path):
    torch.manual_seed(1)
    model = Sequential([L.InputLayer(shape=(6, 3)), L.Normalization(), L.Masking(), L.RNN(L.GRUCell(4)),
                        L.RepeatVector(2), L.TimeDistributed(L.Dense(3)), L.Permute((2, 1)),
                        L.ActivityRegularization(l2=0.01), L.Identity()])
    model.layers[0].adapt(torch.randn(20, 6, 3) + 5)  # Keras: the InputLayer is not one of model.layers
    _round_trip(model, torch.randn(2, 6, 3), tmp_path / "sequence.dz")


def test_lambda_saves_when_registered_and_refuses_otherwise(tmp_path):
    @L.register_lambda(name="test_model_files.triple")
    def triple(t):
        return 3 * t

    _round_trip(Sequential([L.Lambda(triple), L.Dense(2)]), torch.randn(2, 3), tmp_path / "lambda.dz")
    model = Sequential([L.Lambda(lambda t: t * 2), L.Dense(2)])
    model.build_for(torch.zeros(1, 3))
    with pytest.raises(TypeError, match="not registered.*register_lambda"):
        save_model(model, tmp_path / "refused.dz")
