"""TimeBudget: the one callback that ends training on a time or step budget."""

from __future__ import annotations

import numpy as np
import pytest

from deepzen.callbacks import TimeBudget
from deepzen.layers import Dense
from deepzen.models import Sequential


def _fit(budget, epochs=10):
    rng = np.random.default_rng(0)
    model = Sequential([Dense(1, input_dim=3)])
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(rng.normal(size=(80, 3)).astype(np.float32), rng.normal(size=(80, 1)).astype(np.float32),
                        batch_size=10, epochs=epochs, verbose=0, callbacks=[budget])  # 8 steps per epoch
    return history


def test_a_step_budget_stops_at_its_step_or_at_the_end_of_that_epoch():
    budget = TimeBudget(max_steps=12)
    assert len(_fit(budget).history["loss"]) == 2 and budget.steps == 12  # inside epoch 2
    budget = TimeBudget(max_steps=12, at_epoch_end=True)
    assert len(_fit(budget).history["loss"]) == 2 and budget.steps == 16  # epoch 2 finished
    assert budget.progress() == pytest.approx(16 / 12)


def test_a_time_budget_stops_training_and_its_state_carries_over():
    budget = TimeBudget(minutes=1e-9)  # spent at once: one step
    assert len(_fit(budget).history["loss"]) == 1 and budget.steps == 1
    restored = TimeBudget(max_steps=20)
    restored.load_state_dict(TimeBudget(max_steps=20).state_dict() | {"steps": 15, "seconds": 3.0})
    assert restored.steps == 15 and restored.training_seconds >= 3.0 and restored.progress() == 0.75


def test_a_budget_is_needed():
    with pytest.raises(ValueError, match="minutes > 0 or max_steps > 0"):
        TimeBudget()
