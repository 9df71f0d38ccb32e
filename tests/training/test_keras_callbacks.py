"""Keras's callback spellings: on_batch_begin/on_batch_end, dict-like batch logs, verbose= messages,
ModelCheckpoint(save_freq=N, save_weights_only=True), on_train_end's logs."""

import numpy as np
import pytest
import torch

import deepzen
from deepzen.callbacks import Callback, EarlyStopping, ModelCheckpoint, ReduceLROnPlateau
from deepzen.layers import Dense
from deepzen.models import Sequential


def regression(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5], [3.0]], dtype="float32"))


def linear_model(optimizer="sgd", metrics=None):
    model = Sequential([Dense(1, input_dim=4)])
    model.compile(optimizer=optimizer, loss="mse", metrics=metrics)
    return model


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_batch_begin(self, batch, logs=None):
        self.events.append(("begin", batch, list(logs.keys())))

    def on_batch_end(self, batch, logs=None):
        self.events.append(("end", batch, logs["loss"], logs.get("mae"), logs.get("nope", -1)))

    def on_train_end(self, logs=None):
        self.events.append(("train_end", dict(logs)))


def test_on_batch_aliases_get_dict_like_logs():
    x, y = regression()
    recorder = Recorder()
    history = linear_model(metrics=["mae"]).fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[recorder])
    batches = [event for event in recorder.events if event[0] != "train_end"]
    assert all(event[2] == [] for event in batches if event[0] == "begin")  # Keras passes no logs at batch begin
    assert [event[:2] for event in batches] == [(kind, step) for _ in range(2) for step in range(4)
                                                for kind in ("begin", "end")]
    end = [event for event in batches if event[0] == "end"]
    assert all(isinstance(loss, float) and loss > 0 and mae > 0 and missing == -1 for _, _, loss, mae, missing in end)
    # on_train_end receives the last epoch's logs, as in Keras
    assert recorder.events[-1] == ("train_end", {key: values[-1] for key, values in history.history.items()})


def test_the_new_name_wins_over_the_alias():
    calls = []

    class Both(Callback):
        def on_train_batch_end(self, batch, logs=None):
            calls.append("new")

        def on_batch_end(self, batch, logs=None):
            calls.append("old")

    x, y = regression(16)
    linear_model().fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[Both()])
    assert calls == ["new"]


def test_custom_train_step_batch_logs_are_dict_like():
    seen = []

    class Stepper(deepzen.Model):
        def train_step(self, data):
            x, y = data
            loss = self.compute_loss(y=y, y_pred=self(x))
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            return {"loss": loss.detach()}

    class Reader(Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(logs.get("loss"))

    model = Stepper(torch.nn.Linear(4, 1))
    model.compile(optimizer="sgd", loss="mse")
    x, y = regression(32)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[Reader()])
    assert len(seen) == 2 and all(isinstance(value, float) for value in seen)


def test_verbose_messages(tmp_path, capsys):
    x, y = regression()
    frozen = linear_model(deepzen.optimizers.SGD(learning_rate=0.0))
    callbacks = [EarlyStopping("loss", patience=1, verbose=1, restore_best_weights=True),
                 ReduceLROnPlateau("loss", patience=1, factor=0.5, verbose=1),
                 ModelCheckpoint(tmp_path / "best.dz", monitor="loss", save_best_only=True, verbose=1)]
    frozen.fit(x, y, epochs=10, verbose=0, shuffle=False, callbacks=callbacks)  # the same loss every epoch
    out = capsys.readouterr().out
    assert "Epoch 1: loss improved from inf to" in out and "saving model to" in out
    assert "Epoch 2: loss did not improve from" in out
    assert "Epoch 2: ReduceLROnPlateau reducing learning rate to 0." in out
    assert "Epoch 3: early stopping" in out and "Restoring model weights from the end of the best epoch: 1." in out
    linear_model().fit(x, y, epochs=1, verbose=0, callbacks=[EarlyStopping("loss"), ModelCheckpoint(tmp_path / "m.dz")])
    assert capsys.readouterr().out == ""  # verbose=0 is silent


def test_model_checkpoint_every_n_batches_with_weights_only(tmp_path):
    x, y = regression()  # 4 batches an epoch
    model = linear_model()
    checkpoint = ModelCheckpoint(tmp_path / "w-{epoch}-{batch}-{loss:.0f}.weights", save_freq=3,
                                 save_weights_only=True, monitor="loss")
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[checkpoint])
    names = sorted(p.name.rsplit("-", 1)[0] for p in tmp_path.iterdir())  # batches 3, 6, 9, 12 of 12
    assert names == ["w-1-3", "w-2-2", "w-3-1", "w-3-4"]
    last = sorted(tmp_path.glob("w-3-4-*"))[0]
    fresh = linear_model()
    fresh.load_weights(last)
    for a, b in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert checkpoint.state_dict()["batches_since_save"] == 0


@pytest.mark.parametrize("save_freq", [0, -2, "batch", 1.5, True])
def test_model_checkpoint_refuses_bad_save_freq(save_freq):
    with pytest.raises(ValueError, match=r"save_freq='epoch' or a positive number of batches. Received: save_freq="):
        ModelCheckpoint("m.dz", save_freq=save_freq)


class EventLog(Callback):
    def __init__(self):
        self.events = []

    def on_test_begin(self, logs=None):
        self.events.append(("test_begin", list(logs.keys())))

    def on_test_batch_begin(self, batch, logs=None):
        self.events.append(("test_batch_begin", batch))

    def on_test_batch_end(self, batch, logs=None):
        self.events.append(("test_batch_end", batch, round(logs["loss"], 6)))

    def on_test_end(self, logs=None):
        self.events.append(("test_end", round(logs["loss"], 6)))

    def on_predict_begin(self, logs=None):
        self.events.append(("predict_begin",))

    def on_predict_batch_begin(self, batch, logs=None):
        self.events.append(("predict_batch_begin", batch))

    def on_predict_batch_end(self, batch, logs=None):
        self.events.append(("predict_batch_end", batch, tuple(logs["outputs"].shape)))

    def on_predict_end(self, logs=None):
        self.events.append(("predict_end",))


def test_evaluate_and_predict_fire_keras_events():
    x, y = regression(40)
    model = linear_model()
    log = EventLog()
    loss = model.evaluate(x, y, batch_size=16, verbose=0, callbacks=[log])
    assert [event[:2] for event in log.events] == [("test_begin", []), ("test_batch_begin", 0), ("test_batch_end", 0),
                                                   ("test_batch_begin", 1), ("test_batch_end", 1),
                                                   ("test_batch_begin", 2), ("test_batch_end", 2),
                                                   ("test_end", round(loss, 6))]
    # the last batch's running logs are the evaluation's logs
    assert log.events[-2][2] == pytest.approx(loss, rel=1e-5)
    log.events.clear()
    model.predict(x, batch_size=32, callbacks=[log])
    assert log.events == [("predict_begin",), ("predict_batch_begin", 0), ("predict_batch_end", 0, (32, 1)),
                          ("predict_batch_begin", 1), ("predict_batch_end", 1, (8, 1)), ("predict_end",)]


def test_fit_validation_fires_test_batch_events_also_for_a_custom_test_step():
    class Stepper(deepzen.Model):
        def test_step(self, data):
            x, y = data
            loss = self.compute_loss(y=y, y_pred=self(x))
            return {"loss": loss}

    x, y = regression(48)
    for model in (linear_model(), Stepper(torch.nn.Linear(4, 1))):
        if isinstance(model, Stepper):
            model.compile(optimizer="sgd", loss="mse")
        log = EventLog()
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, validation_data=(x[:32], y[:32]),
                  validation_batch_size=16, callbacks=[log])
        assert [event[0] for event in log.events] == ["test_begin", "test_batch_begin", "test_batch_end",
                                                      "test_batch_begin", "test_batch_end", "test_end"]
