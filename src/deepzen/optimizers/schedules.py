"""Learning-rate schedules with Keras's names and formulas: pass one as an optimizer's ``learning_rate``.

A schedule maps the optimizer's step count (``optimizer.iterations``: updates applied so far, starting at 0)
to a learning rate, exactly as ``keras.optimizers.schedules`` does::

    schedule = deepzen.optimizers.schedules.CosineDecay(0.0, decay_steps=1000, warmup_target=0.1, warmup_steps=100)
    model.compile(optimizer=deepzen.optimizers.SGD(learning_rate=schedule, momentum=0.9), loss=...)

The optimizer sets the rate before each update, in ``fit`` and in a custom ``train_step`` alike (see
:class:`deepzen.optimizers.Optimizer`). Each schedule is also a plain function of the step, so recipes
that set the rate themselves (``set_learning_rate(optimizer, schedule(step))``) use the same formulas.
:class:`OneCycle` is fastai's one-cycle policy (Smith 2018), which Keras does not have.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from deepzen.serializable import Serializable


def _positive(owner: str, name: str, value: Any) -> None:
    if not value > 0:
        raise ValueError(f"{owner} expects {name} > 0. Received: {name}={value!r}")


class LearningRateSchedule(Serializable):
    """Base of the schedules: ``schedule(step) -> learning rate`` (a float), with ``get_config``/``from_config``."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "LearningRateSchedule":
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``; with ``staircase=True`` the exponent is
    ``floor(step / decay_steps)`` (the rate drops once every ``decay_steps``)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float, staircase: bool = False,
                 name: str = "ExponentialDecay"):
        _positive("ExponentialDecay", "decay_steps", decay_steps)
        self.initial_learning_rate, self.decay_steps = float(initial_learning_rate), decay_steps
        self.decay_rate, self.staircase, self.name = float(decay_rate), bool(staircase), name

    def __call__(self, step: int) -> float:
        exponent = step / self.decay_steps
        if self.staircase:
            exponent = math.floor(exponent)
        return self.initial_learning_rate * self.decay_rate ** exponent

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while ``boundaries[i-1] < step <= boundaries[i]``,
    and ``values[-1]`` after the last boundary (Keras's rule: a boundary step still has the earlier value)."""

    def __init__(self, boundaries: Sequence[int], values: Sequence[float], name: str = "PiecewiseConstant"):
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"PiecewiseConstantDecay expects one more value than boundaries. Received: "
                             f"{len(boundaries)} boundaries and {len(values)} values")
        if list(boundaries) != sorted(boundaries):
            raise ValueError(f"PiecewiseConstantDecay expects increasing boundaries. "
                             f"Received: boundaries={boundaries!r}")
        self.boundaries, self.values, self.name = list(boundaries), [float(v) for v in values], name

    def __call__(self, step: int) -> float:
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """``(initial - end) * (1 - step / decay_steps) ** power + end`` with ``step`` capped at ``decay_steps``;
    with ``cycle=True`` the decay restarts, ``decay_steps`` growing to the next multiple above ``step``."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, end_learning_rate: float = 0.0001,
                 power: float = 1.0, cycle: bool = False, name: str = "PolynomialDecay"):
        _positive("PolynomialDecay", "decay_steps", decay_steps)
        self.initial_learning_rate, self.decay_steps = float(initial_learning_rate), decay_steps
        self.end_learning_rate, self.power, self.cycle, self.name = float(end_learning_rate), float(power), cycle, name

    def __call__(self, step: int) -> float:
        decay_steps = self.decay_steps
        if self.cycle:
            decay_steps *= 1.0 if step == 0 else math.ceil(step / self.decay_steps)
        else:
            step = min(step, decay_steps)
        fraction = 1 - step / decay_steps
        return (self.initial_learning_rate - self.end_learning_rate) * fraction ** self.power + self.end_learning_rate

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "end_learning_rate": self.end_learning_rate, "power": self.power, "cycle": self.cycle,
                "name": self.name}


class InverseTimeDecay(LearningRateSchedule):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)``; ``staircase=True`` floors the ratio."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float, staircase: bool = False,
                 name: str = "InverseTimeDecay"):
        _positive("InverseTimeDecay", "decay_steps", decay_steps)
        self.initial_learning_rate, self.decay_steps = float(initial_learning_rate), decay_steps
        self.decay_rate, self.staircase, self.name = float(decay_rate), bool(staircase), name

    def __call__(self, step: int) -> float:
        ratio = step / self.decay_steps
        if self.staircase:
            ratio = math.floor(ratio)
        return self.initial_learning_rate / (1 + self.decay_rate * ratio)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine decay (Loshchilov & Hutter 2017), with an optional linear warmup before it, as in Keras.

    Without warmup: ``initial * ((1 - alpha) * (1 + cos(pi * s / decay_steps)) / 2 + alpha)`` with
    ``s = min(step, decay_steps)``. With ``warmup_target``: the rate goes linearly from
    ``initial_learning_rate`` to ``warmup_target`` over ``warmup_steps``, then decays from
    ``warmup_target`` by the same formula over the next ``decay_steps``; it stays at
    ``alpha * warmup_target`` after that.

    Args:
        initial_learning_rate: the rate at step 0.
        decay_steps: steps of the decay (after the warmup).
        alpha: the final rate as a fraction of the rate the decay starts from.
        warmup_target: the rate the warmup reaches (None: no warmup).
        warmup_steps: steps of the warmup.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int, alpha: float = 0.0, name: str = "CosineDecay",
                 warmup_target: float | None = None, warmup_steps: int = 0):
        _positive("CosineDecay", "decay_steps", decay_steps)
        if warmup_steps < 0:
            raise ValueError(f"CosineDecay expects warmup_steps >= 0. Received: warmup_steps={warmup_steps!r}")
        self.initial_learning_rate, self.decay_steps = float(initial_learning_rate), decay_steps
        self.alpha = float(alpha)
        self.name, self.warmup_steps = name, warmup_steps
        self.warmup_target = None if warmup_target is None else float(warmup_target)

    def _decay(self, step: float, decay_from: float) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return decay_from * ((1 - self.alpha) * cosine + self.alpha)

    def __call__(self, step: int) -> float:
        if self.warmup_target is None:
            return self._decay(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            fraction = step / self.warmup_steps
            return self.initial_learning_rate + (self.warmup_target - self.initial_learning_rate) * fraction
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR, Loshchilov & Hutter 2017), Keras's formula.

    The first period lasts ``first_decay_steps``; each next one ``t_mul`` times longer, and starts from
    ``m_mul`` times the previous peak. Within a period at fraction ``f`` the rate is
    ``initial * ((1 - alpha) * m_mul**i * (1 + cos(pi * f)) / 2 + alpha)`` in period ``i``.
    """

    def __init__(self, initial_learning_rate: float, first_decay_steps: int, t_mul: float = 2.0, m_mul: float = 1.0,
                 alpha: float = 0.0, name: str = "SGDRDecay"):
        _positive("CosineDecayRestarts", "first_decay_steps", first_decay_steps)
        _positive("CosineDecayRestarts", "t_mul", t_mul)
        self.initial_learning_rate, self.first_decay_steps = float(initial_learning_rate), first_decay_steps
        self.t_mul, self.m_mul, self.alpha, self.name = float(t_mul), float(m_mul), float(alpha), name

    def __call__(self, step: int) -> float:
        fraction = step / self.first_decay_steps
        if self.t_mul == 1.0:
            restart = math.floor(fraction)
            fraction -= restart
        else:
            restart = math.floor(math.log(1.0 - fraction * (1.0 - self.t_mul)) / math.log(self.t_mul))
            done = (1.0 - self.t_mul ** restart) / (1.0 - self.t_mul)  # periods before this one, in first periods
            fraction = (fraction - done) / self.t_mul ** restart
        cosine = 0.5 * self.m_mul ** restart * (1.0 + math.cos(math.pi * fraction))
        return self.initial_learning_rate * ((1 - self.alpha) * cosine + self.alpha)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "first_decay_steps": self.first_decay_steps,
                "t_mul": self.t_mul, "m_mul": self.m_mul, "alpha": self.alpha, "name": self.name}


class OneCycle(LearningRateSchedule):
    """fastai's one-cycle policy (Smith 2018; fastai's ``fit_one_cycle``): a cosine rise, then a cosine fall.

    Over the first ``pct_start * total_steps`` steps the rate rises from ``max_learning_rate / div_factor``
    to ``max_learning_rate`` along half a cosine; over the rest it falls to
    ``max_learning_rate / final_div_factor`` the same way (fastai's defaults: 0.25, 25, 1e5). After
    ``total_steps`` it stays at the final rate.
    """

    def __init__(self, max_learning_rate: float, total_steps: int, pct_start: float = 0.25, div_factor: float = 25.0,
                 final_div_factor: float = 1e5, name: str = "OneCycle"):
        _positive("OneCycle", "total_steps", total_steps)
        if not 0 <= pct_start <= 1:
            raise ValueError(f"OneCycle expects 0 <= pct_start <= 1. Received: pct_start={pct_start!r}")
        _positive("OneCycle", "div_factor", div_factor)
        _positive("OneCycle", "final_div_factor", final_div_factor)
        self.max_learning_rate, self.total_steps = float(max_learning_rate), total_steps
        self.pct_start = float(pct_start)
        self.div_factor, self.final_div_factor, self.name = float(div_factor), float(final_div_factor), name

    @staticmethod
    def _cosine(start: float, end: float, position: float) -> float:
        """From ``start`` at position 0 to ``end`` at 1 along half a cosine (fastai's ``SchedCos``)."""
        return start + (1 + math.cos(math.pi * (1 - position))) * (end - start) / 2

    def phase(self, step: int) -> tuple[int, float]:
        """Where ``step`` lies: ``(0, position in the rise)`` or ``(1, position in the fall)``, in [0, 1]."""
        rise = self.pct_start * self.total_steps
        position = min(step, self.total_steps)
        if position < rise:
            return 0, position / rise
        fall = self.total_steps - rise
        return 1, (position - rise) / fall if fall > 0 else 1.0

    def __call__(self, step: int) -> float:
        peak = self.max_learning_rate
        phase, position = self.phase(step)
        if phase == 0:
            return self._cosine(peak / self.div_factor, peak, position)
        return self._cosine(peak, peak / self.final_div_factor, position)

    def momentum(self, step: int, moms: tuple[float, float, float] = (0.95, 0.85, 0.95)) -> float:
        """fastai's momentum cycle, mirroring the rate: from ``moms[0]`` down to ``moms[1]`` while the rate
        rises, then back to ``moms[2]`` while it falls, along the same half cosines."""
        phase, position = self.phase(step)
        return self._cosine(moms[phase], moms[phase + 1], position)

    def get_config(self):
        return {"max_learning_rate": self.max_learning_rate, "total_steps": self.total_steps,
                "pct_start": self.pct_start, "div_factor": self.div_factor,
                "final_div_factor": self.final_div_factor, "name": self.name}


def serialize(schedule: LearningRateSchedule) -> dict[str, Any]:
    """Keras's ``schedules.serialize``: ``{"class_name": ..., "config": ...}``."""
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config: dict[str, Any]) -> LearningRateSchedule:
    """Keras's ``schedules.deserialize``, for this module's schedules only (never a name from elsewhere)."""
    classes = {cls.__name__: cls for cls in (ExponentialDecay, PiecewiseConstantDecay, PolynomialDecay,
                                               InverseTimeDecay, CosineDecay, CosineDecayRestarts, OneCycle)}
    name = config.get("class_name")
    if name not in classes:
        raise ValueError(f"Unknown learning-rate schedule {name!r}. Expected one of: {', '.join(classes)}")
    return classes[name].from_config(config["config"])
