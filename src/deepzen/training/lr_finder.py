"""The learning-rate range test (Smith 2017; fastai's ``lr_find``): ``model.lr_find(x, y)``.

The test trains the compiled model for up to ``num_iter`` batches while the learning rate grows
exponentially from ``start_lr`` to ``end_lr``, records each batch's loss, and smooths the curve with a
debiased exponential moving average (fastai's ``beta=0.98``). It stops early once the smoothed loss
exceeds ``stop_factor`` times its minimum (the loss diverged). The suggested rate is fastai's
"steepest" point: where the smoothed loss falls fastest against ``log(lr)``, leaving out, as fastai
does, the first tenth of the sweep (where the average is still settling) and its last 5 batches. The
rate at the minimum, divided by 10, is fastai's other classic suggestion and is reported too.

The test is a probe, not training: afterwards the weights, the optimizer's state (moments, step
counts, learning rates, schedules) and torch's random-number state are exactly what they were.

Example:
    >>> result = model.lr_find(x_train, y_train)               # doctest: +SKIP
    >>> model.optimizer.learning_rate = result.suggestion      # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

SMOOTHING = 0.98  # fastai's beta for the loss's moving average


@dataclass
class LRFinderResult:
    """What the range test measured.

    Attributes:
        learning_rates: the rate of each batch trained, increasing.
        losses: each batch's loss.
        smoothed_losses: the debiased moving average of ``losses``.
        suggestion: the rate where the smoothed loss falls fastest (fastai's "steepest").
        min_loss_lr: the rate at the smoothed loss's minimum, divided by 10 (fastai's "minimum").
        plot: the PNG written (None with ``plot=None``).
    """

    learning_rates: list[float]
    losses: list[float]
    smoothed_losses: list[float]
    suggestion: float
    min_loss_lr: float
    plot: Path | None = None


def smooth(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """fastai's smoothing: ``avg = beta * avg + (1 - beta) * loss``, reported as ``avg / (1 - beta ** (i + 1))``."""
    average, smoothed = 0.0, []
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        smoothed.append(average / (1 - beta ** (i + 1)))
    return smoothed


def steepest(learning_rates: list[float], smoothed: list[float]) -> float:
    """The rate where ``smoothed`` falls fastest against ``log(lr)`` (central differences)."""
    if len(smoothed) < 3:
        return learning_rates[int(min(range(len(smoothed)), key=smoothed.__getitem__))]
    logs = [math.log(lr) for lr in learning_rates]
    slopes = [(smoothed[i + 1] - smoothed[i - 1]) / (logs[i + 1] - logs[i - 1]) for i in range(1, len(smoothed) - 1)]
    return learning_rates[1 + min(range(len(slopes)), key=slopes.__getitem__)]


def lr_find(model, x: Any, y: Any = None, *, batch_size: int = 32, start_lr: float = 1e-7, end_lr: float = 10.0,
            num_iter: int = 100, stop_factor: float = 4.0, seed: int = 0,
            plot: str | Path | None = "lr_find.png") -> LRFinderResult:
    """Runs the range test on a compiled ``model`` and restores it exactly afterwards.

    Args:
        model: a compiled :class:`~deepzen.models.Model` (its ``model.optimizer`` is swept).
        x, y: training data as for ``fit`` (arrays or tensors); batches are drawn at random, cycling
            through the data if it has fewer than ``num_iter`` batches.
        batch_size: samples per batch.
        start_lr, end_lr: the sweep's first and last rates (``0 < start_lr < end_lr``).
        num_iter: batches at most; batch ``i`` trains at ``start_lr * (end_lr / start_lr) ** (i / (num_iter - 1))``.
        stop_factor: stop once the smoothed loss exceeds this times its minimum (None: never).
        seed: seed of the batch order.
        plot: where to write the plot of smoothed loss against rate (log scale), or None.

    Returns:
        An :class:`LRFinderResult`.
    """
    if not 0 < start_lr < end_lr:
        raise ValueError(f"lr_find expects 0 < start_lr < end_lr. Received: start_lr={start_lr}, end_lr={end_lr}")
    if num_iter < 2:
        raise ValueError(f"lr_find expects num_iter >= 2. Received: num_iter={num_iter}")
    if getattr(model, "engine", None) is None:
        raise ValueError("lr_find needs a compiled model: call model.compile(optimizer=..., loss=...) first")
    data = model._as_data(x, y, call="lr_find")
    model._prepare(data)  # builds the model and its optimizer, so that their state exists to be kept
    optimizer = model.optimizer
    if optimizer is None:
        raise ValueError("lr_find sweeps model.optimizer, and this model has none (nothing trainable, or its "
                         "train_step brings its own optimizers)")
    weights = copy.deepcopy(model.state_dict())
    optimizer_states = {name: copy.deepcopy(o.state_dict()) for name, o in model.optimizers.items()}
    rules = (getattr(optimizer, "schedule", None), getattr(optimizer, "accumulation", 1))
    training, stop_training = model.training, getattr(model, "stop_training", False)
    devices = [model.device.index or 0] if model.device.type == "cuda" else []
    generator = torch.Generator(device="cpu").manual_seed(seed)
    rates, losses = [], []
    try:
        with torch.random.fork_rng(devices=devices):  # dropout's draws do not move the caller's RNG
            if rules[0] is not None or rules[1] != 1:  # the sweep sets the rate and steps at every batch
                optimizer.schedule, optimizer.accumulation = None, 1
            batches = iter(())
            for i in range(num_iter):
                rate = start_lr * (end_lr / start_lr) ** (i / (num_iter - 1))
                for group in optimizer.param_groups:
                    group["lr"] = rate
                batch = next(batches, None)
                if batch is None:  # a new pass over the data, in a new order
                    batches = data.batches(batch_size, shuffle=True, generator=generator)
                    batch = next(batches)
                bx, by, bw = batch
                loss = model.train_on_batch(bx, by, sample_weight=bw)
                loss = float(loss[0] if isinstance(loss, (list, tuple)) else loss)  # host sync: one per batch
                rates.append(rate)
                losses.append(loss)
                if not math.isfinite(loss):
                    break
                smoothed = smooth(losses)
                if stop_factor is not None and i > 0 and smoothed[-1] > stop_factor * min(smoothed):
                    break
    finally:
        model.load_state_dict(weights)
        for name, o in model.optimizers.items():
            o.load_state_dict(optimizer_states[name])
        if rules[0] is not None or rules[1] != 1:
            optimizer.schedule, optimizer.accumulation = rules
        model.train(training)
        model.stop_training = stop_training
    finite = [(r, l) for r, l in zip(rates, losses) if math.isfinite(l)]
    if len(finite) < 2:
        raise ValueError(f"lr_find: the loss was not finite from the first batches on (losses {losses[:3]}); lower "
                         f"start_lr or check the data")
    rates, losses = [r for r, _ in finite], [l for _, l in finite]
    smoothed = smooth(losses)
    lowest = min(range(len(smoothed)), key=smoothed.__getitem__)
    start, end = num_iter // 10, len(rates) - 5  # fastai's window for the suggestion
    if end - start < 3:
        start, end = 0, len(rates)
    result = LRFinderResult(rates, losses, smoothed, steepest(rates[start:end], smoothed[start:end]),
                            rates[lowest] / 10)
    if plot is not None:
        result.plot = plot_lr_find(result, plot)
    return result


def plot_lr_find(result: LRFinderResult, path: str | Path) -> Path:
    """The smoothed loss against the learning rate (log scale), the suggestion marked; writes a PNG."""
    from deepzen.training.plots import pyplot

    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 3.8))
    axis.plot(result.learning_rates, result.losses, color="0.8", linewidth=1, label="loss per batch")
    axis.plot(result.learning_rates, result.smoothed_losses, label="smoothed")
    suggested = result.learning_rates.index(result.suggestion)
    axis.plot([result.suggestion], [result.smoothed_losses[suggested]], "o", color="red",
              label=f"steepest: {result.suggestion:.2g}")
    axis.set_xscale("log")
    axis.set_xlabel("learning rate")
    axis.set_ylabel("loss")
    top = result.smoothed_losses[0] * 1.5 if result.smoothed_losses[0] > 0 else None
    if top is not None and max(result.losses) > top:
        axis.set_ylim(top=top)
    axis.legend()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
