"""Keras's weights API and fit's Keras arguments (issue 15, items 5, 8 and 9)."""

import warnings

import numpy as np
import pytest
import torch

from deepzen.layers import Activation, Dense
from deepzen.training.callbacks import Callback
from deepzen.training.model import Sequential


def _model():
    torch.manual_seed(0)
    model = Sequential([Dense(4, input_dim=3, activation="relu"), Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


def _data(n=64):
    rng = np.random.default_rng(0)
    x = rng.random((n, 3)).astype("float32")
    return x, x.sum(1, keepdims=True)


def test_get_and_set_weights_round_trip_and_check_shapes():
    model, other = _model(), _model()
    other.set_weights([w * 0 + 1 for w in model.get_weights()])
    assert all(np.all(w == 1) for w in other.get_weights())
    other.set_weights(model.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), other.get_weights()))
    assert [w.shape for w in model.get_weights()] == [(4, 3), (4,), (1, 4), (1,)]
    assert model.count_params() == 21 and len(model.weights) == 4
    with pytest.raises(ValueError, match="4 arrays"):
        model.set_weights(model.get_weights()[:3])
    with pytest.raises(ValueError, match="shape"):
        model.set_weights([np.zeros((3, 4))] + model.get_weights()[1:])


def test_save_weights_and_load_weights(tmp_path):
    model = _model()
    model.fit(*_data(), epochs=1, verbose=0)
    model.save_weights(tmp_path / "m.weights.safetensors")
    fresh = Sequential([Dense(4, input_dim=3, activation="relu"), Dense(1)])
    fresh.load_weights(tmp_path / "m.weights.safetensors")
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), fresh.get_weights()))


def test_shapes_layers_get_layer_and_pop():
    model = _model()
    assert model.input_shape == (None, 3) and model.output_shape == (None, 1)
    assert model.get_layer("dense_1") is model.layers[1] is model.get_layer(index=-1)
    with pytest.raises(ValueError, match="dense, dense_1"):
        model.get_layer("nope")
    popped = model.pop()
    assert isinstance(popped, Dense) and len(model.layers) == 1 and model.output_shape == (None, 4)


def test_on_batch_verbs_and_evaluate_returns_loss_then_metrics():
    torch.manual_seed(0)
    model = Sequential([Dense(1, input_dim=3, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    x = _data()[0]
    y = (x.sum(1, keepdims=True) > 1.5).astype("float32")
    loss, accuracy = model.test_on_batch(x, y)
    assert np.isclose(loss, model.evaluate(x, y, verbose=0)[0], rtol=1e-5) and 0 <= accuracy <= 1
    assert model.evaluate(x, y, verbose=0, return_dict=True).keys() == {"loss", "accuracy"}
    assert isinstance(model.train_on_batch(x, y), list)
    assert model.predict_on_batch(x).shape == (64, 1)


def test_the_xor_textbook_example_runs_as_printed():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    Y = np.array([[0], [1], [1], [0]])
    testX = X
    model = Sequential()
    with pytest.warns(DeprecationWarning, match="epochs"):
        model.add(Dense(8, input_dim=X.shape[1])); model.add(Activation('relu'))  # noqa: E702
        model.add(Dense(1)); model.add(Activation('sigmoid'))  # noqa: E702
        model.compile(loss='binary_crossentropy', optimizer='adam', metrics=['accuracy'])
        model.fit(X, Y, nb_epoch=2000, verbose=0)
    print("Train accuracy:", model.evaluate(X, Y)[1])
    predictions = (model.predict(testX) > 0.5).astype(int)
    assert predictions.shape == (4, 1) and set(np.unique(predictions)) <= {0, 1}
    assert model.evaluate(X, Y, verbose=0)[1] >= 0.5


def test_fit_takes_python_lists_and_refuses_strings_naming_the_argument():
    model = _model()
    history = model.fit([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]], [3.0, 6.0], epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    with pytest.raises(TypeError, match="x holds strings"):
        model.fit(np.array([["a", "b", "c"]]), [1.0], verbose=0)
    with pytest.raises(TypeError, match="y holds Python objects"):
        model.fit(np.ones((2, 3)), np.array([object(), object()]), verbose=0)


def test_unknown_fit_and_compile_arguments_list_the_valid_ones():
    model = _model()
    with pytest.raises(TypeError, match=r"epoch\b.*Valid arguments: x, y, batch_size, epochs"):
        model.fit(*_data(), epoch=3)
    with pytest.raises(TypeError, match="optimizer, loss, metrics"):
        model.compile(optimiser="adam", loss="mse")


def test_steps_per_epoch_validation_steps_and_validation_freq():
    model = _model()
    x, y = _data()
    steps, val_batches = [], []

    class Count(Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append(batch)

    history = model.fit(x, y, batch_size=8, steps_per_epoch=3, epochs=4, validation_data=(x, y),
                        validation_freq=2, validation_steps=1, validation_batch_size=16, verbose=0,
                        callbacks=[Count()])
    assert steps == [0, 1, 2] * 4
    assert len(history.history["loss"]) == 4 and len(history.history["val_loss"]) == 2  # after epochs 2 and 4

    def generator():
        while True:
            val_batches.append(1)
            yield x[:8], y[:8]

    history = model.fit(generator(), steps_per_epoch=5, epochs=2, verbose=0, validation_freq=[1])
    assert len(val_batches) == 10 and len(history.history["loss"]) == 2
    with pytest.raises(ValueError, match="validation_freq"):
        model.fit(x, y, validation_freq=0, verbose=0)
