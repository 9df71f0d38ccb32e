"""Training checkpoints: state flattening, exact resume inside an epoch, crash-safe writes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import deepzen
from deepzen.callbacks import Callback, EarlyStopping, ReduceLROnPlateau
from deepzen.training import checkpoint as checkpoints
from deepzen.training.callbacks import CallbackError
from deepzen.training.checkpoint import (TrainingCheckpoint, checkpoint_position, flatten_state, read_checkpoint,
                                         rng_state, set_rng_state, unflatten_state)
from product_recipes import tiny_data, tiny_model

X, Y = tiny_data(160, seed=3)


class Crash(Callback):
    """Raises at a given (epoch, step), like a process dying there."""

    def __init__(self, epoch: int, step: int):
        self.at = (epoch, step)

    def on_train_batch_end(self, step, logs=None):
        self.due = (self.model.fit_state.epoch, step) == self.at

    # the crash comes as the next step begins or the epoch ends: the checkpoint (last at every event) saved first
    def on_train_batch_begin(self, step, logs=None):
        if getattr(self, "due", False):
            raise RuntimeError("simulated crash")

    on_epoch_end = on_train_batch_begin


def train(path, epochs=4, crash=None, every_steps=3, batch_size=16):
    """The same seeded fit each time (as a restarted process would run it), checkpointing to ``path``."""
    deepzen.seed(7)
    model = tiny_model(dropout=0.3)  # dropout: the RNG state must be restored for an exact resume
    model.compile(optimizer="adam", loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True),
                  metrics=["accuracy"])
    stateful = [ReduceLROnPlateau("val_loss", factor=0.5, patience=0), EarlyStopping("val_loss", patience=50)]
    extra = [Crash(*crash)] if crash else []
    ckpt = TrainingCheckpoint(path, every_steps=every_steps)
    model.fit(X, Y, batch_size=batch_size, epochs=epochs, validation_split=0.2, verbose=0,
              callbacks=[*stateful, *extra, ckpt])
    return model, stateful, ckpt


def weights(model):
    return {key: value.clone() for key, value in model.state_dict().items()}


def assert_same_weights(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=0, atol=atol), key


def test_nested_states_round_trip_through_tensors_and_json():
    parameter = torch.nn.Parameter(torch.randn(3, 2))
    optimizer = torch.optim.Adam([parameter], betas=(0.8, 0.9))
    parameter.grad = torch.ones(3, 2)
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "rng": rng_state(), 1.5: None, "nested": [(1, "a"), {2: [3.0]}]}
    tensors: dict = {}
    tree = flatten_state(state, "s", tensors)
    import json

    restored = unflatten_state(json.loads(json.dumps(tree)), tensors)  # survives JSON: int keys, tuples, arrays
    assert restored["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.9)
    assert set(restored["optimizer"]["state"]) == {0}
    for name, value in optimizer.state_dict()["state"][0].items():
        assert torch.equal(restored["optimizer"]["state"][0][name], value)
    assert restored[1.5] is None and restored["nested"] == [(1, "a"), {2: [3.0]}]
    numpy_state = restored["rng"]["numpy"]
    assert numpy_state[1].dtype == np.uint32 and np.array_equal(numpy_state[1], np.random.get_state()[1])
    with pytest.raises(checkpoints.Unstorable, match="at 's/f'"):
        flatten_state({"f": lambda: 0}, "s", {})


def test_restored_rng_states_replay_the_same_draws():
    state = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(2))
    set_rng_state(state)
    second = (random.random(), np.random.rand(), torch.rand(2))
    assert first[:2] == second[:2] and torch.equal(first[2], second[2])


def test_a_fit_crashed_inside_an_epoch_resumes_to_the_same_weights_logs_and_callback_state(tmp_path):
    reference, reference_callbacks, _ = train(tmp_path / "reference.ckpt")
    path = tmp_path / "crashed.ckpt"
    with pytest.raises(CallbackError, match="simulated crash"):
        train(path, crash=(2, 7))  # epoch 3 (0-based 2), after 8 steps; checkpoints every 3 steps
    position = checkpoint_position(path)
    assert (position["epoch"], position["step"], position["finished"]) == (2, 6, False)
    resumed, resumed_callbacks, ckpt = train(path)
    assert ckpt.resumed_from["epoch"] == 2 and ckpt.resumed_from["step"] == 6
    assert_same_weights(weights(reference), weights(resumed))
    # the interrupted epoch's logs include the steps before the crash: the histories agree exactly
    assert resumed.history.history == reference.history.history
    assert resumed.optimizer.param_groups[0]["lr"] == reference.optimizer.param_groups[0]["lr"]
    for mine, theirs in zip(resumed_callbacks, reference_callbacks):
        assert (mine.wait, mine.best) == (theirs.wait, theirs.best)
    assert checkpoint_position(path)["finished"]


def test_a_finished_fit_is_restored_without_training(tmp_path):
    path = tmp_path / "done.ckpt"
    trained, _, _ = train(path, epochs=2)
    again, _, ckpt = train(path, epochs=2)
    assert ckpt.resumed_from["epoch"] == 2
    assert_same_weights(weights(trained), weights(again))
    assert again.history.history == trained.history.history  # restored, not re-run


def test_an_interrupted_checkpoint_write_leaves_the_previous_one_loadable(tmp_path, monkeypatch):
    path = tmp_path / "c.ckpt"
    train(path, epochs=1, every_steps=None)
    before = path.read_bytes()
    real_replace = os.replace

    def failing_replace(source, target):
        if str(target) == str(path):
            raise OSError("disk full")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(CallbackError, match="disk full"):
        train(path, epochs=2, every_steps=None)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.ckpt"]  # no half-written temporary file
    assert checkpoint_position(path)["epoch"] == 1
    resumed, _, ckpt = train(path, epochs=2, every_steps=None)
    assert ckpt.resumed_from["epoch"] == 1


WRITER = """
import sys, torch
from deepzen.training.serialization import write_tensors
for i in range(10**6):
    write_tensors(sys.argv[1], {"w": torch.full((1_000_000,), float(i))}, {"i": i})
    print(i, flush=True)
"""


def test_a_process_killed_while_writing_leaves_a_complete_file(tmp_path):
    path = tmp_path / "big.ckpt"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "0"  # the first file is complete
        time.sleep(random.uniform(0.1, 0.3))  # ... and the writer is now somewhere inside a later write
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    from deepzen.training.serialization import read_tensors

    tensors, metadata = read_tensors(path)  # checksum-verified: complete, old or new
    assert torch.equal(tensors["w"], torch.full((1_000_000,), float(metadata["i"])))


def test_resuming_inside_an_epoch_with_another_batch_size_is_refused(tmp_path):
    path = tmp_path / "c.ckpt"
    with pytest.raises(CallbackError):
        train(path, crash=(0, 4))
    with pytest.raises(CallbackError, match="same batch size"):
        train(path, batch_size=32)


def test_read_only_replay_refuses_an_unfinished_fit(tmp_path):
    path = tmp_path / "c.ckpt"
    with pytest.raises(CallbackError):
        train(path, crash=(1, 4))
    deepzen.seed(7)
    model = tiny_model(0.3)
    model.compile(optimizer="adam", loss="mse")
    with pytest.raises(CallbackError, match="did not finish"):
        model.fit(X, np.zeros((len(X), 3)), epochs=4, verbose=0, callbacks=[TrainingCheckpoint(path, read_only=True)])


def test_a_training_checkpoint_is_not_taken_for_a_model_file(tmp_path):
    path = tmp_path / "c.ckpt"
    train(path, epochs=1)
    metadata, tensors = read_checkpoint(path)
    assert metadata["world_size"] == 1 and any(key.startswith("optimizer/") for key in tensors)
    model = tiny_model(0.0)
    model.save(tmp_path / "m.dz")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        read_checkpoint(tmp_path / "m.dz")


def test_a_fit_resumed_in_the_middle_of_early_stopping_patience_stops_at_the_same_epoch(tmp_path):
    def fit(path, crash=None):
        deepzen.seed(7)
        model = tiny_model(dropout=0.0)
        model.compile(optimizer=deepzen.optimizers.SGD(learning_rate=1e-3),
                      loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True))
        # the weights move every epoch, but no epoch after the first improves by min_delta
        stopper = EarlyStopping("loss", patience=3, min_delta=1e6, restore_best_weights=True)
        extra = [Crash(*crash)] if crash else []
        model.fit(X, Y, batch_size=16, epochs=20, verbose=0,
                  callbacks=[stopper, *extra, TrainingCheckpoint(path, every_steps=None)])
        return model, stopper

    reference, reference_stopper = fit(tmp_path / "reference.ckpt")
    assert reference_stopper.stopped_epoch == 4
    path = tmp_path / "crashed.ckpt"
    with pytest.raises(CallbackError, match="simulated crash"):
        fit(path, crash=(3, 0))  # the checkpoint after epoch 3 (0-based 2) holds wait = 2 of patience 3
    resumed, resumed_stopper = fit(path)
    assert resumed_stopper.stopped_epoch == 4 and resumed_stopper.best_epoch == 0
    assert resumed.history.history == reference.history.history
    assert_same_weights(weights(reference), weights(resumed))  # both restored the first epoch's weights
