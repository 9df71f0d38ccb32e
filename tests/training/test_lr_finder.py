"""model.lr_find: fastai's range test, and the model and optimizer exactly as before it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import deepzen
from deepzen.layers import Dense, Dropout
from deepzen.models import Sequential
from deepzen.training.lr_finder import smooth, steepest

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads only contend


def _data(n=512, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    y = (x[:, :3].sum(1) > 0).astype(np.int64) + (x[:, 3] > 1)
    return x, y


def _model(optimizer):
    torch.manual_seed(0)
    model = Sequential([Dense(32, input_dim=8, activation="relu"), Dropout(0.2), Dense(3)])
    model.compile(optimizer=optimizer, loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True))
    return model


def _snapshot(model):
    optimizer = model.optimizer.state_dict()
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {k: (v.clone() if isinstance(v, torch.Tensor) else v) for s in optimizer["state"].values()
             for k, v in s.items()} | {"groups": repr(optimizer["param_groups"])},
            torch.get_rng_state().clone())


def _same(before, after):
    weights_b, optimizer_b, rng_b = before
    weights_a, optimizer_a, rng_a = after
    assert weights_b.keys() == weights_a.keys()
    assert all(torch.equal(weights_b[k], weights_a[k]) for k in weights_b)  # bit-exact
    assert optimizer_b.keys() == optimizer_a.keys()
    for key in optimizer_b:
        b, a = optimizer_b[key], optimizer_a[key]
        assert torch.equal(b, a) if isinstance(b, torch.Tensor) else b == a
    assert torch.equal(rng_b, rng_a)


@pytest.mark.parametrize("optimizer", [
    lambda: deepzen.optimizers.Adam(learning_rate=1e-3),
    lambda: deepzen.optimizers.SGD(learning_rate=deepzen.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5),
                                   momentum=0.9, gradient_accumulation_steps=2),
])
def test_lr_find_leaves_model_and_optimizer_exactly_as_before(optimizer, tmp_path):
    x, y = _data()
    model = _model(optimizer())
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # optimizer state (moments, counters) exists
    model.eval()
    before = _snapshot(model)
    result = model.lr_find(x, y, batch_size=32, num_iter=60, plot=tmp_path / "lr.png")
    _same(before, _snapshot(model))
    assert not model.training  # the mode it was in
    # and training goes on as it would have without the probe
    twin = _model(optimizer())
    twin.fit(x, y, batch_size=32, epochs=1, verbose=0)
    torch.set_rng_state(before[2])
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    torch.set_rng_state(before[2])
    twin.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    assert result.plot.is_file() and result.plot.stat().st_size > 1000


def test_lr_find_sweeps_exponentially_and_suggests_a_rate_that_trains():
    x, y = _data()
    model = _model(deepzen.optimizers.SGD(learning_rate=1e-3))
    result = model.lr_find(x, y, batch_size=32, start_lr=1e-5, end_lr=10.0, num_iter=80, plot=None)
    rates = np.array(result.learning_rates)
    ratios = rates[1:] / rates[:-1]
    assert np.allclose(ratios, (10.0 / 1e-5) ** (1 / 79))  # a geometric sweep from start_lr
    assert rates[0] == pytest.approx(1e-5)
    assert result.smoothed_losses == pytest.approx(smooth(result.losses))
    assert 1e-4 < result.suggestion < 10.0
    # the loss was higher at the end of the sweep than at its lowest (it diverged or stopped there)
    assert result.smoothed_losses[-1] > min(result.smoothed_losses)
    # the suggestion trains: three epochs at it beat three epochs at the sweep's first rate
    losses = {}
    for rate in (result.suggestion, 1e-5):
        trial = _model(deepzen.optimizers.SGD(learning_rate=rate))
        losses[rate] = trial.fit(x, y, batch_size=32, epochs=3, verbose=0).history["loss"][-1]
    assert losses[result.suggestion] < 0.8 * losses[1e-5]


def test_smoothing_and_steepest_follow_fastai():
    losses = [1.0, 2.0, 3.0]
    # avg_1 = 0.02 -> 0.02 / 0.02 = 1; avg_2 = 0.98 * 0.02 + 0.02 * 2 = 0.0596 -> / (1 - 0.98^2) = 1.50505...
    assert smooth(losses)[:2] == pytest.approx([1.0, 0.0596 / (1 - 0.98 ** 2)])
    rates = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
    assert steepest(rates, [5.0, 4.9, 3.0, 2.95, 8.0]) == 1e-2  # the largest central drop is around 1e-2


def test_lr_find_needs_a_compiled_model():
    model = Sequential([Dense(3, input_dim=8)])
    with pytest.raises(ValueError, match="compile"):
        model.lr_find(*_data())


def test_fit_one_cycle_follows_the_one_cycle_schedule_step_by_step():
    from deepzen.optimizers.schedules import OneCycle

    x, y = _data(320)
    model = _model(deepzen.optimizers.SGD(learning_rate=0.5, momentum=0.9))
    rates = []

    class Record(deepzen.callbacks.Callback):
        def on_train_batch_end(self, step, logs=None):
            rates.append(model.optimizer.param_groups[0]["lr"])

    history = model.fit_one_cycle(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[Record()])  # 30 steps
    expected = OneCycle(0.5, total_steps=30)  # the peak is the optimizer's rate when none is given
    assert rates == pytest.approx([expected(step) for step in range(30)])
    # from max / 25 up to the peak at step 7.5 (a quarter of 30), the nearest steps 7 and 8 highest, then down
    assert rates[0] == pytest.approx(0.5 / 25) and max(rates) == rates[8] > rates[7] > rates[9] and rates[-1] < 0.01
    assert history.history["learning_rate"] == pytest.approx([rates[9], rates[19], rates[29]])
    assert history.history["loss"][-1] < history.history["loss"][0]


@pytest.mark.parametrize("optimizer, read", [
    (lambda: deepzen.optimizers.SGD(learning_rate=0.5, momentum=0.9), lambda group: group["momentum"]),
    (lambda: deepzen.optimizers.Adam(learning_rate=0.01), lambda group: group["betas"][0]),
])
def test_fit_one_cycle_cycles_the_momentum_against_the_rate(optimizer, read):
    from deepzen.optimizers.schedules import OneCycle

    x, y = _data(320)
    model = _model(optimizer())
    momenta = []

    class Record(deepzen.callbacks.Callback):
        def on_train_batch_end(self, step, logs=None):
            momenta.append(read(model.optimizer.param_groups[0]))

    model.fit_one_cycle(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[Record()])  # 30 steps
    # fastai's cycle: 0.95 down to 0.85 along the rise's half cosine (7.5 steps), back to 0.95 along the fall's
    rise = [0.95 - 0.1 * (1 - math.cos(math.pi * step / 7.5)) / 2 for step in range(8)]
    fall = [0.85 + 0.1 * (1 - math.cos(math.pi * (step - 7.5) / 22.5)) / 2 for step in range(8, 30)]
    assert momenta == pytest.approx(rise + fall)
    assert momenta == pytest.approx([OneCycle(1.0, 30).momentum(step) for step in range(30)])
    assert min(momenta) == momenta[8] < 0.86 and momenta[0] == 0.95 and momenta[-1] > 0.949


def test_fit_one_cycle_leaves_the_momentum_alone_with_moms_none_and_warns_without_one():
    x, y = _data(64)
    model = _model(deepzen.optimizers.SGD(learning_rate=0.1, momentum=0.5))
    model.fit_one_cycle(x, y, epochs=1, batch_size=32, verbose=0, moms=None)
    assert model.optimizer.param_groups[0]["momentum"] == 0.5
    model = _model(deepzen.optimizers.Adagrad(learning_rate=0.1))
    with pytest.warns(UserWarning, match="Adagrad has no momentum to cycle"):
        model.fit_one_cycle(x, y, epochs=1, batch_size=32, verbose=0)
    with pytest.raises(ValueError, match="moms=.start, lowest, end"):
        deepzen.callbacks.OneCycleScheduler(moms=(0.9, 0.8))
