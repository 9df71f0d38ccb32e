"""Callbacks: early stopping, checkpoints, schedules, CSV logs, gradient monitoring, error wrapping."""

import csv
import io
import math
import warnings

import numpy as np
import pytest
import torch

import deepzen
from deepzen.callbacks import (Callback, CallbackError, CSVLogger, EarlyStopping, GradientMonitor,
                               LearningRateScheduler, ModelCheckpoint, ProgressBar, ReduceLROnPlateau, WeightAverage)
from deepzen.layers import Dense
from deepzen.models import Sequential, load_model


def regression(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5], [3.0]], dtype="float32"))


def linear_model(optimizer="sgd"):
    model = Sequential([Dense(1, input_dim=4)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def test_early_stopping_stops_after_patience_and_restores_best_weights():
    deepzen.seed(0)
    x, y = regression()
    model = linear_model(deepzen.optimizers.SGD(learning_rate=0.0))  # no progress at all
    stopper = EarlyStopping(monitor="loss", patience=2, min_delta=1e-3, restore_best_weights=True)
    history = model.fit(x, y, epochs=50, verbose=0, callbacks=[stopper])
    assert len(history.history["loss"]) == 4  # best at epoch 0, then 3 epochs without improvement
    assert stopper.stopped_epoch == 3 and stopper.best_epoch == 0


def test_early_stopping_names_missing_keys():
    x, y = regression()
    with pytest.raises(CallbackError, match="EarlyStopping.on_epoch_end.*'val_loss'.*available: loss"):
        linear_model().fit(x, y, epochs=2, verbose=0, callbacks=[EarlyStopping()])


def test_model_checkpoint_best_only_keeps_improving_epochs(tmp_path):
    deepzen.seed(0)
    x, y = regression()
    model = linear_model()
    checkpoint = ModelCheckpoint(tmp_path / "best.dz", monitor="val_loss", save_best_only=True)
    history = model.fit(x, y, epochs=5, verbose=0, validation_split=0.25, callbacks=[checkpoint])
    best = min(history.history["val_loss"])
    restored = load_model(tmp_path / "best.dz")
    assert restored.evaluate(x[48:], y[48:], verbose=0) == pytest.approx(best, rel=1e-5)
    every = ModelCheckpoint(tmp_path / "epoch-{epoch:02d}.dz")
    model.fit(x, y, epochs=3, verbose=0, callbacks=[every])
    assert sorted(p.name for p in tmp_path.glob("epoch-*.dz")) == ["epoch-01.dz", "epoch-02.dz", "epoch-03.dz"]


def test_learning_rate_scheduler_sets_the_rate_each_epoch():
    x, y = regression()
    model = linear_model()
    seen = []

    class Spy(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(self.model.optimizer.param_groups[0]["lr"])

    schedule = LearningRateScheduler(lambda epoch, lr: 0.1 * 0.5 ** epoch)
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[schedule, Spy()])
    assert seen == pytest.approx([0.1, 0.05, 0.025])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.025])


def test_reduce_lr_on_plateau_cuts_the_rate():
    x, y = regression()
    model = linear_model(deepzen.optimizers.SGD(learning_rate=1e-9))  # the loss cannot improve by min_delta
    reducer = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=1.0)
    history = model.fit(x, y, epochs=4, verbose=0, callbacks=[reducer])
    # logs record the rate each epoch trained with; the cut applies from the next epoch
    assert history.history["learning_rate"] == pytest.approx([1e-9, 1e-9, 5e-10, 2.5e-10], rel=1e-6)


def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    x, y = regression()
    history = linear_model().fit(x, y, epochs=3, verbose=0, validation_split=0.25,
                                 callbacks=[CSVLogger(tmp_path / "log.csv")])
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(history.history["val_loss"])


def test_gradient_monitor_shows_vanishing_gradients_in_a_deep_sigmoid_network():
    deepzen.seed(0)
    x = np.random.rand(256, 16).astype("float32")
    y = np.random.randint(0, 2, size=(256, 1))
    model = Sequential([Dense(16, input_dim=16, activation="sigmoid",
                              kernel_initializer=deepzen.initializers.RandomNormal(stddev=0.1))] +
                       [Dense(16, activation="sigmoid", kernel_initializer=deepzen.initializers.RandomNormal(stddev=0.1))
                        for _ in range(8)] + [Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    monitor = GradientMonitor(every=1, vanishing=1e-6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[monitor])
    first, last = monitor.history["dense.weight"][0], monitor.history["dense_9.weight"][0]
    assert first < last * 1e-4  # gradients shrink by orders of magnitude towards the input
    assert len(monitor.steps["dense.weight"]) == 4
    assert any("vanishing gradients" in str(w.message) and "dense.weight" in str(w.message) for w in caught)


def test_errors_inside_callbacks_name_the_callback_and_event():
    class Broken(Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise ZeroDivisionError("oops")

    x, y = regression()
    with pytest.raises(CallbackError, match="Broken.on_epoch_end failed: ZeroDivisionError: oops"):
        linear_model().fit(x, y, epochs=1, verbose=0, callbacks=[Broken()])


def test_progress_lines_when_output_is_not_a_terminal():
    x, y = regression()
    stream = io.StringIO()
    history = linear_model().fit(x, y, epochs=2, verbose=0, callbacks=[ProgressBar(verbose=1, stream=stream)])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("Epoch 2/2")
    assert f"loss: {history.history['loss'][1]:.4g}" in lines[1]


def test_unused_step_events_cost_nothing():
    from deepzen.training.callbacks import CallbackList, History

    callbacks = CallbackList([History(), EarlyStopping(monitor="loss")], model=None)
    assert not callbacks.listens("on_train_batch_end") and not callbacks.listens("on_after_backward")
    assert callbacks.listens("on_epoch_end")


def test_early_stopping_state_round_trips_and_continues_mid_patience():
    import json

    from deepzen.training.checkpoint import flatten_state, unflatten_state

    deepzen.seed(0)
    x, y = regression()
    model = linear_model(deepzen.optimizers.SGD(learning_rate=1e-3))  # the weights move every epoch ...
    settings = dict(monitor="loss", patience=3, min_delta=1e6, restore_best_weights=True)  # ... but never "improve"
    stopper = EarlyStopping(**settings)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[stopper])
    assert (stopper.wait, stopper.best_epoch, stopper.stopped_epoch) == (2, 0, None)  # mid-patience
    tensors: dict = {}
    saved = json.loads(json.dumps(flatten_state(stopper.state_dict(), "early_stopping", tensors)))  # as a checkpoint
    restored = EarlyStopping(**settings)
    restored.load_state_dict(unflatten_state(saved, tensors))
    fresh = EarlyStopping(**settings)
    state, again = stopper.state_dict(), restored.state_dict()
    assert {k: v for k, v in again.items() if k != "best_weights"} == \
           {k: v for k, v in state.items() if k != "best_weights"}
    assert again["best_weights"].keys() == state["best_weights"].keys()
    for key, value in state["best_weights"].items():
        assert torch.equal(again["best_weights"][key], value)

    def stopping_epoch(callback):
        callback.set_model(model)
        model.stop_training = False
        for epoch in range(3, 20):
            callback.on_epoch_end(epoch, {"loss": stopper.best - 1.0})  # better, but not by min_delta
            if model.stop_training:
                return epoch

    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)  # moved away from the best epoch's weights
    assert stopping_epoch(restored) == 4  # waits 3 and 4 exceed patience 3 one epoch after the checkpoint
    for key, value in model.state_dict().items():  # restore_best_weights used the restored tensors
        assert torch.equal(value, state["best_weights"][key])
    assert stopping_epoch(fresh) > 4  # without the state, the patience starts over


@pytest.mark.parametrize("make", [
    lambda path: ModelCheckpoint(path / "model-{epoch}.dz", monitor="val_loss", save_best_only=True),
    lambda path: CSVLogger(path / "log.csv"),
    lambda path: ProgressBar(verbose=2, stream=open(path / "progress.txt", "w")),
    lambda path: LearningRateScheduler(lambda epoch, lr: lr, verbose=1),
    lambda path: ReduceLROnPlateau(monitor="loss", patience=0, min_delta=1e6, verbose=1),
], ids=["ModelCheckpoint", "CSVLogger", "ProgressBar", "LearningRateScheduler", "ReduceLROnPlateau"])
def test_only_rank_zero_writes_files_and_prints(tmp_path, monkeypatch, capsys, make):
    from deepzen.training import distributed

    x, y = regression()
    for rank_zero, folder in ((True, tmp_path / "rank0"), (False, tmp_path / "rank1")):
        folder.mkdir()
        monkeypatch.setattr(distributed, "is_rank_zero", lambda: rank_zero)
        callback = make(folder)
        deepzen.seed(0)
        linear_model().fit(x, y, epochs=2, verbose=0, validation_split=0.25, callbacks=[callback])
        if isinstance(callback, ProgressBar):
            callback.stream.close()
        written = {p.name: p.stat().st_size for p in folder.iterdir()}
        printed = capsys.readouterr().out
        if rank_zero:
            assert any(written.values()) or printed  # the callback does write or print on rank 0 ...
            rank0_state = callback.state_dict() if hasattr(callback, "state_dict") else None
        else:
            assert not any(written.values()) and not printed  # ... and nothing on the other ranks
            if rank0_state is not None:  # while keeping the same state (the epoch logs agree on all ranks)
                assert callback.state_dict() == rank0_state


class WeightRecorder(Callback):
    """The model's weights at the start, after every step and at every epoch end."""

    def __init__(self):
        self.steps, self.epoch_ends = [], []

    def weights(self):
        return torch.cat([p.detach().flatten().clone() for p in self.model.parameters()])

    def on_train_begin(self, logs=None):
        self.start = self.weights()

    def on_train_batch_end(self, step, logs=None):
        self.steps.append(self.weights())

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(self.weights())


def test_weight_average_scores_and_ends_with_the_moving_average_while_training_on_live_weights():
    x, y = regression()
    runs = {}
    for averaged in (False, True):
        deepzen.seed(0)
        model = linear_model(deepzen.optimizers.SGD(learning_rate=0.05))
        recorder = WeightRecorder()
        callbacks = [WeightAverage(decay=0.9), recorder] if averaged else [recorder]
        history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, validation_data=(x, y), callbacks=callbacks)
        runs[averaged] = (model, recorder, history)
    plain, averaged = runs[False][1], runs[True][1]
    # The live weights train exactly as without the average (4 steps per epoch).
    torch.testing.assert_close(torch.stack(averaged.steps), torch.stack(plain.steps))
    expected, ema = [], averaged.start
    for weights in averaged.steps:
        ema = 0.9 * ema + 0.1 * weights
        expected.append(ema)
    # Epoch ends and the validation loss see the average; training ends with it in the model.
    torch.testing.assert_close(torch.stack(averaged.epoch_ends), torch.stack(expected[3::4]))
    model, _, history = runs[True]
    final = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.testing.assert_close(final, expected[-1])
    w, b = final[:4], final[4]
    mse = float(((torch.from_numpy(x) @ w + b - torch.from_numpy(y)[:, 0]) ** 2).mean())
    assert history.history["val_loss"][-1] == pytest.approx(mse, rel=1e-4)
    assert runs[False][2].history["val_loss"][-1] != pytest.approx(mse, rel=1e-3)


@pytest.mark.parametrize("decay", [1.0, -0.1, True, "0.9"])
def test_weight_average_rejects_a_decay_outside_0_1(decay):
    with pytest.raises(ValueError, match=r"WeightAverage expects decay in \[0, 1\)"):
        WeightAverage(decay)
