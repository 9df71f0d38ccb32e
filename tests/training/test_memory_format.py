"""compile(memory_format=...): conv models train channels-last on the CPU with the same numbers as channels-first."""

import numpy as np
import pytest
import torch

import deepzen
from deepzen.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D
from deepzen.models import Sequential, load_model


def small_cnn(memory_format: str) -> Sequential:
    deepzen.seed(0)
    model = Sequential([Input((3, 10, 10)), Conv2D(4, 3, activation="relu"), MaxPooling2D(2), Flatten(), Dense(3)])
    model.compile(optimizer=deepzen.optimizers.SGD(learning_rate=0.1),
                  loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True),
                  metrics=["accuracy"], memory_format=memory_format, device="cpu")
    return model


def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(64, 3, 10, 10)).astype(np.float32), rng.integers(0, 3, size=64)


@pytest.mark.parametrize("memory_format, expected", [("auto", True), ("channels_last", True),
                                                     ("channels_first", False)])
def test_layout_follows_the_setting_and_training_matches_channels_first(memory_format, expected, tmp_path):
    x, y = data()
    reference, model = small_cnn("channels_first"), small_cnn(memory_format)
    reference_history = reference.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    history = model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    weight = model.layers[0].weight  # the Conv2D (Keras: the Input is not one of model.layers)
    assert model.engine.channels_last is expected
    assert weight.is_contiguous(memory_format=torch.channels_last) is expected
    np.testing.assert_allclose(history.history["loss"], reference_history.history["loss"], rtol=1e-4)
    np.testing.assert_allclose(model.predict(x), reference.predict(x), rtol=1e-4, atol=1e-5)
    # The saved weights are plain tensors: a channels-first model loads them.
    model.save(tmp_path / "model.dz")
    np.testing.assert_allclose(load_model(tmp_path / "model.dz").predict(x), model.predict(x), rtol=1e-5, atol=1e-6)


def test_models_without_2d_convolutions_keep_their_layout():
    model = Sequential([Input((6,)), Dense(3)])
    model.compile(optimizer="sgd", loss="mse", device="cpu")
    model.fit(np.ones((8, 6), np.float32), np.zeros((8, 3), np.float32), epochs=1, verbose=0)
    assert model.engine.channels_last is False


def test_unknown_memory_format_is_named():
    with pytest.raises(ValueError, match="memory_format 'nhwc'.*auto, channels_last, channels_first"):
        Sequential([Input((2,)), Dense(1)]).compile(loss="mse", memory_format="nhwc")
