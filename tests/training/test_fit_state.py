"""model.fit_state is a typed FitState, and resuming is fit's own step: a checkpoint restores the other callbacks'
states after their on_train_begin, wherever it stands in the list."""

import numpy as np
import pytest
import torch

from deepzen.layers import Dense
from deepzen.models import Sequential
from deepzen.training.callbacks import Callback, EarlyStopping, FitState
from deepzen.training.checkpoint import TrainingCheckpoint

X = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
Y = X @ np.array([[1.0], [-2.0], [0.5]], dtype="float32")


def _model():
    torch.manual_seed(0)
    model = Sequential([Dense(1, input_dim=3)])
    model.compile(optimizer="sgd", loss="mse")
    return model


class Record(Callback):
    """Keeps the fit's state and the early stopper's state as the first epoch begins."""

    def __init__(self, early):
        self.early, self.seen = early, None

    def on_epoch_begin(self, epoch, logs=None):
        if self.seen is None:
            self.seen = (self.model.fit_state, epoch, self.early.best, self.early.best_epoch)


@pytest.mark.parametrize("checkpoint_first", [True, False])
def test_resume_restores_callback_states_whatever_the_order(tmp_path, checkpoint_first):
    path = tmp_path / "fit.ckpt"
    early = EarlyStopping(monitor="loss", patience=10)
    model = _model()
    model.fit(X, Y, batch_size=16, epochs=2, verbose=0, callbacks=[TrainingCheckpoint(path), early])
    saved_best, saved_best_epoch = early.best, early.best_epoch
    assert saved_best_epoch == 1 and np.isfinite(saved_best)

    resumed_early = EarlyStopping(monitor="loss", patience=10)
    record = Record(resumed_early)
    checkpoint = TrainingCheckpoint(path)
    callbacks = [checkpoint, resumed_early, record] if checkpoint_first else [resumed_early, record, checkpoint]
    _model().fit(X, Y, batch_size=16, epochs=3, verbose=0, callbacks=callbacks)
    state, first_epoch, best, best_epoch = record.seen
    assert isinstance(state, FitState) and (state.epochs, state.steps, state.batch_size) == (3, 4, 16)
    assert first_epoch == 2 and state.initial_epoch == 2  # the checkpoint moved the fit on
    assert (best, best_epoch) == (saved_best, saved_best_epoch)  # restored after on_train_begin's reset


def test_two_callbacks_that_would_resume_are_refused(tmp_path):
    with pytest.raises(ValueError, match="one callback may resume a fit; these all would: TrainingCheckpoint, "
                                         "TrainingCheckpoint"):
        _model().fit(X, Y, epochs=1, verbose=0,
                     callbacks=[TrainingCheckpoint(tmp_path / "a"), TrainingCheckpoint(tmp_path / "b")])
