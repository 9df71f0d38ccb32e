"""compile / fit / evaluate / predict / save / load on small problems with known answers."""

import numpy as np
import pytest
import torch
from torch import nn

import deepzen
from deepzen.layers import Activation, BatchNormalization, Dense, Dropout, Flatten, Input, Reshape
from deepzen.models import Model, Sequential, load_model
from deepzen.training.diagnostics import ShapeError
from deepzen.training.engine import NonFiniteLossError
from deepzen.training.serialization import ModelFileError

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
XOR_Y = np.array([[0], [1], [1], [0]])


def xor_model():
    model = Sequential()
    model.add(Dense(8, input_dim=2))
    model.add(Activation("relu"))
    model.add(Dense(1, activation="sigmoid", kernel_initializer="glorot_uniform"))
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


def test_xor_is_learned_and_keras_conventions_hold():
    deepzen.seed(1)
    model = xor_model()
    history = model.fit(XOR_X, XOR_Y, epochs=2000, batch_size=4, verbose=0)
    assert set(history.history) == {"loss", "accuracy"}
    assert len(history.history["loss"]) == 2000
    assert history.history["loss"][-1] < history.history["loss"][0] / 5
    prediction = model.predict(np.array([[1, 1], [0, 1]]))  # integer input is accepted
    assert isinstance(prediction, np.ndarray) and prediction.shape == (2, 1)
    assert prediction[0, 0] < 0.5 < prediction[1, 0]
    loss, accuracy = model.evaluate(XOR_X, XOR_Y, verbose=0)
    assert accuracy == 1.0 and loss == pytest.approx(history.history["loss"][-1], rel=0.5)
    as_tensor = model.predict(torch.tensor([[1.0, 1.0]]))
    assert isinstance(as_tensor, torch.Tensor)


def test_evaluate_returns_the_loss_alone_without_metrics():
    deepzen.seed(0)
    model = Sequential([Dense(1, input_dim=3)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.random.rand(10, 3), np.random.rand(10, 1)
    result = model.evaluate(x, y, verbose=0)
    expected = float(((model.predict(x) - y) ** 2).mean())
    assert isinstance(result, float) and result == pytest.approx(expected, rel=1e-5)


def test_reported_loss_includes_the_regularization_penalty():
    deepzen.seed(0)
    model = Sequential([Dense(4, input_dim=3, kernel_regularizer="l2", bias_regularizer="l1")])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.random.rand(16, 3).astype("float32"), np.random.rand(16, 4).astype("float32")
    loss = model.evaluate(x, y, verbose=0)
    layer = model.layers[0]
    data_loss = float(((model.predict(x) - y) ** 2).mean())
    penalty = 0.01 * float((layer.weight.detach() ** 2).sum()) + 0.01 * float(layer.bias.detach().abs().sum())
    assert loss == pytest.approx(data_loss + penalty, rel=1e-5)


def test_save_load_round_trip_gives_identical_predictions(tmp_path):
    deepzen.seed(1)
    model = xor_model()
    model.fit(XOR_X, XOR_Y, epochs=20, batch_size=4, verbose=0)
    path = tmp_path / "xor.dz"
    model.save(path)
    restored = load_model(path)
    np.testing.assert_array_equal(model.predict(XOR_X), restored.predict(XOR_X))
    assert restored.evaluate(XOR_X, XOR_Y, verbose=0) == pytest.approx(model.evaluate(XOR_X, XOR_Y, verbose=0))


def test_damaged_model_files_are_refused_and_never_unpickled(tmp_path):
    model = xor_model()
    model.fit(XOR_X, XOR_Y, epochs=1, verbose=0)
    path = tmp_path / "m.dz"
    model.save(path)
    blob = path.read_bytes()
    truncated = tmp_path / "truncated.dz"
    truncated.write_bytes(blob[: len(blob) - 10])
    with pytest.raises(ModelFileError, match="truncated"):
        load_model(truncated)
    tampered = tmp_path / "tampered.dz"
    tampered.write_bytes(blob[:-1] + bytes([blob[-1] ^ 0xFF]))
    with pytest.raises(ModelFileError, match="SHA-256 does not match"):
        load_model(tampered)
    pickle_file = tmp_path / "pickle.dz"
    torch.save({"x": torch.ones(1)}, pickle_file)
    with pytest.raises(ModelFileError):
        load_model(pickle_file)


def test_save_is_atomic_an_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    model = xor_model()
    model.fit(XOR_X, XOR_Y, epochs=1, verbose=0)
    path = tmp_path / "m.dz"
    model.save(path)
    before = path.read_bytes()
    import deepzen.training.serialization as serialization

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(serialization.os, "replace", crash)
    with pytest.raises(OSError):
        model.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.dz"]  # no temporary file left behind


def test_summary_counts_parameters_and_multiply_adds():
    model = Sequential([Input((2,)), Dense(8, activation="relu"), Dense(1)])
    text = model.summary(print_fn=None)
    assert "Total params: 33" in text  # 2*8+8 + 8*1+1
    assert "Mult-adds per sample: 24" in text  # 2*8 + 8*1
    assert "(None, 8)" in text and "dense_1 (Dense)" in text


def test_any_torch_module_gets_the_verbs_with_tuple_and_dict_inputs():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(4, 2)

        def forward(self, left, right):
            return self.a(left) + self.b(right)

    deepzen.seed(0)
    left, right = np.random.rand(64, 3), np.random.rand(64, 4)
    y = (left.sum(1) > right.sum(1) - 0.5).astype("int64")
    model = Model(TwoInputs())
    model.compile(optimizer="adam", loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True),
                  metrics=["accuracy"])
    history = model.fit((left, right), y, epochs=30, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    out = model.predict({"left": left, "right": right})
    assert out.shape == (64, 2)


def test_multiple_outputs_with_weighted_losses():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(3, 4)

        def forward(self, x):
            h = self.body(x)
            return h[:, :2], h[:, 2:]

    deepzen.seed(0)
    x = np.random.rand(32, 3).astype("float32")
    y1, y2 = np.random.rand(32, 2).astype("float32"), np.random.rand(32, 2).astype("float32")
    model = Model(TwoHeads())
    model.compile(optimizer="sgd", loss=["mse", "mae"], loss_weights=[1.0, 0.5])
    loss = model.evaluate(x, (y1, y2), verbose=0)
    p1, p2 = model.predict(x)
    assert loss == pytest.approx(float(((p1 - y1) ** 2).mean() + 0.5 * np.abs(p2 - y2).mean()), rel=1e-5)


def test_dropout_scales_in_training_and_is_identity_in_eval():
    layer = Dropout(0.25)
    x = torch.ones(2000, 50)
    out = layer(x)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.01
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.75))
    layer.eval()
    assert torch.equal(layer(x), x)
    with pytest.raises(ValueError, match=r"rate=1.5"):
        Dropout(1.5)


def test_batch_normalization_train_and_eval():
    torch.manual_seed(0)
    bn = BatchNormalization(momentum=0.9, epsilon=1e-5)
    x = torch.randn(64, 3, 5, 5) * 3 + 2
    out = bn(x)
    assert torch.allclose(out.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(out.var((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)
    mean = x.mean((0, 2, 3))
    assert torch.allclose(bn.running_mean, 0.1 * mean, atol=1e-5)  # Keras momentum: 0.9 old + 0.1 new
    bn.eval()
    expected = (x - bn.running_mean.view(1, 3, 1, 1)) / torch.sqrt(bn.running_var.view(1, 3, 1, 1) + 1e-5)
    assert torch.allclose(bn(x), expected, atol=1e-5)
    dense = BatchNormalization()
    assert dense(torch.randn(8, 4)).shape == (8, 4)
    channels_last = BatchNormalization(axis=-1)
    seq = torch.randn(8, 6, 4)
    assert torch.allclose(channels_last(seq).mean((0, 1)), torch.zeros(4), atol=1e-5)


def test_reshape_and_flatten():
    x = torch.arange(24.0).reshape(2, 3, 4)
    assert Flatten()(x).shape == (2, 12)
    assert Reshape((4, 3))(x).shape == (2, 4, 3)
    with pytest.raises(ValueError, match="target_shape"):
        Sequential([Input((3, 4)), Reshape((5, 5))]).build()


def test_seed_makes_runs_repeatable():
    def run():
        deepzen.seed(123)
        model = xor_model()
        model.fit(XOR_X, XOR_Y, epochs=5, batch_size=2, verbose=0)
        return model.predict(XOR_X)

    np.testing.assert_array_equal(run(), run())


def test_train_on_batch_takes_one_step():
    deepzen.seed(0)
    model = Sequential([Dense(1, input_dim=2)])
    model.compile(optimizer="sgd", loss="mse")
    before = model.evaluate(XOR_X, XOR_Y, verbose=0)
    loss = model.train_on_batch(XOR_X, XOR_Y)
    assert loss == pytest.approx(before, rel=1e-5)  # the loss of the batch before the step
    assert model.evaluate(XOR_X, XOR_Y, verbose=0) < before


def test_class_weight_scales_each_sample_loss():
    deepzen.seed(0)
    model = Sequential([Dense(2, input_dim=3)])
    model.compile(optimizer=deepzen.optimizers.SGD(learning_rate=0.0),
                  loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True))
    x = np.random.rand(20, 3).astype("float32")
    y = np.array([0, 1] * 10)
    history = model.fit(x, y, epochs=1, batch_size=20, class_weight={0: 1.0, 1: 3.0}, verbose=0, shuffle=False)
    per_sample = nn.functional.cross_entropy(torch.tensor(model.predict(x)), torch.tensor(y), reduction="none")
    weights = torch.tensor([1.0, 3.0])[torch.tensor(y)]
    assert history.history["loss"][0] == pytest.approx(float((per_sample * weights).mean()), rel=1e-5)


# -- bad input -----------------------------------------------------------------------------------------
def test_x_and_y_of_different_lengths_are_refused():
    model = xor_model()
    with pytest.raises(ValueError, match="same number of samples.*x has 4, y has 3"):
        model.fit(XOR_X, XOR_Y[:3], verbose=0)


def test_shape_mismatch_names_the_layer_and_both_shapes():
    model = xor_model()
    model.fit(XOR_X, XOR_Y, epochs=1, verbose=0)
    with pytest.raises(ShapeError, match=r"Layer 'dense' \(Dense\) expected input \(None, 2\), received \(None, 3\)"):
        model.predict(np.zeros((4, 3)))


def test_first_layer_declared_shape_is_checked():
    model = Sequential([Dense(4, input_shape=(5,))])
    model.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match=r"'dense' .*expected input .*\(None, 5\), received \(None, 3\)"):
        Sequential([Dense(4, input_shape=(5,))]).predict(np.zeros((2, 3)))


def test_targets_that_do_not_fit_the_loss_fail_before_training():
    model = Sequential([Dense(3, input_dim=2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="one-hot"):
        model.fit(np.zeros((4, 2)), np.eye(3)[[0, 1, 2, 0]], verbose=0)
    with pytest.raises(ValueError, match="5"):
        model.fit(np.zeros((4, 2)), np.array([0, 1, 5, 2]), verbose=0)
    logits = Sequential([Dense(3, input_dim=2)])
    logits.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="from_logits=True"):
        logits.fit(np.random.randn(4, 2), np.array([0, 1, 2, 0]), verbose=0)


def test_unknown_names_list_the_valid_ones():
    model = Sequential([Dense(1, input_dim=2)])
    with pytest.raises(ValueError, match="Unknown optimizer 'adamm'.*adam"):
        model.compile(optimizer="adamm", loss="mse")
        model.fit(XOR_X, XOR_Y, verbose=0)
    with pytest.raises(ValueError, match="Unknown loss.*mean_squared_error"):
        model.compile(optimizer="adam", loss="mean_square_error")
        model.fit(XOR_X, XOR_Y, verbose=0)
    with pytest.raises(ValueError, match="Unknown activation.*relu"):
        Dense(3, activation="rellu")


def test_non_finite_loss_stops_training_naming_epoch_and_step():
    model = Sequential([Dense(1, input_dim=2)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((40, 2), dtype="float32")
    x[25] = np.nan
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 6"):
        model.fit(x, np.ones((40, 1)), batch_size=5, shuffle=False, verbose=0)


def test_fit_requires_compile():
    with pytest.raises(RuntimeError, match="compile"):
        Sequential([Dense(1, input_dim=2)]).fit(XOR_X, XOR_Y, verbose=0)
