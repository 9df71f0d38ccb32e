"""deepzen.optimizers.schedules against Keras's documented formulas (values worked out by hand here)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import deepzen
from deepzen.optimizers import schedules
from deepzen.serializable import config_value, value_from_config


@pytest.mark.parametrize("schedule, step, expected", [
    (schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5), 0, 0.1),
    (schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5), 5, 0.1 * 0.5 ** 0.5),
    (schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True), 15, 0.05),
    (schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1]), 10, 1.0),  # a boundary keeps the earlier value
    (schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1]), 11, 0.5),
    (schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1]), 21, 0.1),
    (schedules.PolynomialDecay(0.1, 100, end_learning_rate=0.01, power=2.0), 50, 0.09 * 0.25 + 0.01),
    (schedules.PolynomialDecay(0.1, 100, end_learning_rate=0.01, power=2.0), 200, 0.01),
    (schedules.PolynomialDecay(0.1, 100, end_learning_rate=0.01, power=2.0, cycle=True), 150, 0.09 * 0.25 ** 2 + 0.01),
    (schedules.InverseTimeDecay(0.1, decay_steps=10, decay_rate=0.5), 20, 0.05),
    (schedules.InverseTimeDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True), 15, 0.1 / 1.5),
    (schedules.CosineDecay(0.1, decay_steps=100, alpha=0.1), 50, 0.1 * (0.9 * 0.5 + 0.1)),
    (schedules.CosineDecay(0.1, decay_steps=100, alpha=0.1), 500, 0.01),
    (schedules.CosineDecay(0.0, 100, warmup_target=0.2, warmup_steps=10), 5, 0.1),  # halfway up the warmup
    (schedules.CosineDecay(0.0, 100, warmup_target=0.2, warmup_steps=10), 10, 0.2),
    (schedules.CosineDecay(0.0, 100, warmup_target=0.2, warmup_steps=10), 60, 0.1),  # halfway down the cosine
    (schedules.CosineDecay(0.0, 100, warmup_target=0.2, warmup_steps=10), 500, 0.0),
    (schedules.CosineDecayRestarts(0.1, 10, t_mul=2.0, m_mul=0.5), 10, 0.05),  # second period starts at half
    (schedules.CosineDecayRestarts(0.1, 10, t_mul=2.0, m_mul=0.5), 20, 0.025),  # halfway through its 20 steps
    (schedules.CosineDecayRestarts(0.1, 10, t_mul=2.0, m_mul=0.5), 30, 0.025),  # third period: a quarter
    (schedules.CosineDecayRestarts(0.1, 10, t_mul=1.0), 15, 0.05),
    (schedules.OneCycle(1.0, total_steps=100, pct_start=0.25, div_factor=25.0, final_div_factor=1e5), 0, 0.04),
    (schedules.OneCycle(1.0, total_steps=100), 25, 1.0),
    (schedules.OneCycle(1.0, total_steps=100), 12.5, (0.04 + 1.0) / 2),  # half the cosine rise: the midpoint
    (schedules.OneCycle(1.0, total_steps=100), 62.5, (1.0 + 1e-5) / 2),
    (schedules.OneCycle(1.0, total_steps=100), 100, 1e-5),
])
def test_schedule_values_follow_the_formulas(schedule, step, expected):
    assert schedule(step) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_schedules_refuse_bad_arguments():
    with pytest.raises(ValueError, match="decay_steps"):
        schedules.ExponentialDecay(0.1, decay_steps=0, decay_rate=0.5)
    with pytest.raises(ValueError, match="one more value"):
        schedules.PiecewiseConstantDecay([10], [1.0])
    with pytest.raises(ValueError, match="pct_start"):
        schedules.OneCycle(1.0, 100, pct_start=1.5)


def test_a_schedule_round_trips_through_its_config():
    schedule = schedules.CosineDecay(0.0, 100, alpha=0.1, warmup_target=0.2, warmup_steps=10)
    rebuilt = value_from_config(config_value(schedule, "schedule"))
    assert type(rebuilt) is schedules.CosineDecay and rebuilt.get_config() == schedule.get_config()
    assert schedules.deserialize(schedules.serialize(schedule)).get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="Unknown learning-rate schedule"):
        schedules.deserialize({"class_name": "os.system", "config": {}})


def test_an_optimizer_follows_its_schedule_step_by_step():
    """The rate of each update is schedule(iterations), in fit and in a plain torch loop alike."""
    schedule = schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.01, 0.001])
    w = torch.nn.Parameter(torch.zeros(1))
    optimizer = deepzen.optimizers.SGD(learning_rate=schedule).build([w])
    for _ in range(4):
        optimizer.zero_grad()
        (w * 1.0).sum().backward()  # gradient 1: each update subtracts the rate
        optimizer.step()
    assert optimizer.iterations == 4
    assert float(w.detach()) == pytest.approx(-(0.1 + 0.1 + 0.01 + 0.001))
    with pytest.raises(TypeError, match="cannot be set"):
        optimizer.learning_rate = 0.5


def test_fit_with_a_schedule_records_the_scheduled_rates():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype(np.float32), rng.normal(size=(64, 1)).astype(np.float32)
    schedule = schedules.ExponentialDecay(0.05, decay_steps=4, decay_rate=0.5)
    model = deepzen.models.Sequential([deepzen.layers.Dense(1, input_dim=4)])
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=schedule), loss="mse")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)  # 4 steps per epoch, 8 updates
    assert model.optimizer.iterations == 8
    assert model.optimizer.param_groups[0]["lr"] == pytest.approx(schedule(7))
    assert math.isclose(schedule(7), 0.05 * 0.5 ** (7 / 4))


def test_a_checkpointed_optimizer_resumes_its_schedule_and_accumulation_where_it_was(tmp_path):
    """The counters live in the optimizer's state_dict, so a training checkpoint restores them."""
    import numpy as np

    from deepzen.callbacks import Callback
    from deepzen.training.checkpoint import TrainingCheckpoint

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(96, 4)).astype(np.float32), rng.normal(size=(96, 1)).astype(np.float32)

    def model():
        torch.manual_seed(0)
        net = deepzen.models.Sequential([deepzen.layers.Dense(8, input_dim=4, activation="tanh"),
                                         deepzen.layers.Dense(1)])
        schedule = schedules.CosineDecay(0.0, 20, warmup_target=0.05, warmup_steps=4)
        net.compile(optimizer=deepzen.optimizers.Adam(learning_rate=schedule, gradient_accumulation_steps=3),
                    loss="mse")
        return net

    class Interrupt(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    whole = model()
    whole.fit(x, y, batch_size=8, epochs=4, verbose=0, shuffle=False)  # 12 steps an epoch: 4 updates
    stopped = model()
    with pytest.raises(KeyboardInterrupt):
        stopped.fit(x, y, batch_size=8, epochs=4, verbose=0, shuffle=False,
                    callbacks=[Interrupt(), TrainingCheckpoint(tmp_path / "c.ckpt")])
    resumed = model()
    resumed.fit(x, y, batch_size=8, epochs=4, verbose=0, shuffle=False,
                callbacks=[TrainingCheckpoint(tmp_path / "c.ckpt")])
    assert resumed.optimizer.iterations == whole.optimizer.iterations == 16
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
