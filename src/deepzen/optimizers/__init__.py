"""Optimizers by their Keras names: small specs that build ``torch.optim`` optimizers.

A spec holds Keras-named hyperparameters (``learning_rate``, ``beta_1``, ``epsilon`` ...) and no
parameters; ``compile`` keeps it and the training engine calls :meth:`Optimizer.build` once the
model's parameters exist. The update itself is torch's: deepzen picks torch's fused kernel where one
exists for the optimizer and the parameters (measured on 2 CPU cores, 784-256-256-10 MLP, batch 64:
``Adam.step`` 0.30 ms fused, 0.80 ms foreach, 1.22 ms for-loop) and otherwise torch's own default
(foreach on CUDA, the for-loop on CPU, where foreach measured no faster for RMSprop and Adadelta).

Gradient clipping is not part of the torch optimizer: the engine reads ``spec.clipnorm``,
``spec.clipvalue`` and ``spec.global_clipnorm`` and calls :func:`clip_gradients` between
``backward()`` and ``step()``.

Two of Keras's optimizer arguments change what ``step()`` does, and so live in the torch optimizer
itself (:class:`UpdateRules`), where ``fit`` and a custom ``train_step`` both get them:
``learning_rate=`` a schedule (:mod:`deepzen.optimizers.schedules`), read before each update at the
optimizer's ``iterations``; and ``gradient_accumulation_steps=N``: ``step()`` applies an update only
every N-th call, with the mean of the N gradients (``zero_grad()`` keeps them until then), so batch
``b`` with N steps updates as batch ``N * b`` would. Clipping then applies to that mean, in ``step()``.
An optimizer with neither is torch's own class (plus Keras's ``learning_rate`` attribute).

``weight_decay`` is torch's: an L2 term added to the gradient (``g + weight_decay * w``) for SGD,
Adam, Adagrad, Adadelta and RMSprop, and decoupled decay (``w -= learning_rate * weight_decay * w``)
for AdamW. Keras applies decoupled decay in every optimizer; use AdamW for that behaviour with Adam.

Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    >>> opt = get("sgd", learning_rate=0.5).build([w])
    >>> w.grad = torch.tensor([1.0, 1.0])
    >>> opt.step()
    >>> w.data
    tensor([ 0.5000, -2.5000])
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterable

import torch

from deepzen._registry import Registry
from deepzen.optimizers import schedules  # noqa: F401  (deepzen.optimizers.schedules, as in Keras)
from deepzen.optimizers.schedules import LearningRateSchedule
from deepzen.serializable import Serializable, value_from_config

OPTIMIZERS: Registry[Callable[..., "Optimizer"]] = Registry("optimizer")

IMPLEMENTATIONS = ("auto", "fused", "foreach", "for_loop")
_FUSED_DTYPES = frozenset({torch.float64, torch.float32, torch.float16, torch.bfloat16})
# torch's own spelling of some hyperparameters, pointed to their Keras names in error messages
_TORCH_NAMES = {"lr": "learning_rate", "eps": "epsilon", "betas": "beta_1 and beta_2", "alpha": "rho"}


def _require(condition: bool, owner: str, expected: str, name: str, value: Any) -> None:
    if not condition:
        raise ValueError(f"{owner} expects {expected}. Received: {name}={value!r}")


def _parameter_tensors(params: list) -> list[torch.Tensor]:
    """The tensors inside what torch.optim accepts: tensors, (name, tensor) pairs or param-group dicts."""
    tensors = []
    for item in params:
        group = item["params"] if isinstance(item, dict) else [item]
        group = [group] if isinstance(group, torch.Tensor) else group
        tensors.extend(entry[1] if isinstance(entry, tuple) else entry for entry in group)
    return tensors


class Optimizer(Serializable):
    """Base of the optimizer specs: Keras arguments in, a ``torch.optim.Optimizer`` out of :meth:`build`.

    Args:
        learning_rate: step size (float >= 0), or a :class:`~deepzen.optimizers.schedules.LearningRateSchedule`
            of the optimizer's ``iterations``; settable, read when :meth:`build` runs.
        weight_decay: L2 factor passed to torch (decoupled decay for AdamW, see the module docstring).
        clipnorm: if set, each parameter's gradient is scaled so its L2 norm is at most this (Keras).
        clipvalue: if set, each gradient element is clipped to ``[-clipvalue, clipvalue]``.
        global_clipnorm: if set, all gradients are scaled together so their joint norm is at most this.
            At most one of ``clipnorm``, ``clipvalue`` and ``global_clipnorm`` may be set.
        gradient_accumulation_steps: if an int N > 1, the weights are updated every N-th ``step()`` with the
            mean of the last N gradients (Keras's argument); None or 1 updates at every step.

    Subclasses set ``torch_class``, ``fused_devices`` (device types where torch has a fused kernel
    for them) and implement :meth:`torch_arguments`.
    """

    torch_class: type[torch.optim.Optimizer]
    fused_devices: frozenset[str] = frozenset()

    def __init__(self, learning_rate: float | LearningRateSchedule, *, weight_decay: float = 0.0,
                 clipnorm: float | None = None, clipvalue: float | None = None, global_clipnorm: float | None = None,
                 gradient_accumulation_steps: int | None = None, **unknown: Any):
        name = type(self).__name__
        if unknown:
            hints = "".join(f" ({key!r} is torch's name; deepzen uses Keras's: {_TORCH_NAMES[key]})"
                            for key in unknown if key in _TORCH_NAMES)
            raise TypeError(f"{name} got unexpected argument(s) {', '.join(map(repr, unknown))}.{hints} "
                            f"Valid arguments: {', '.join(self.argument_names())}")
        self.learning_rate = learning_rate
        _require(weight_decay >= 0, name, "weight_decay >= 0", "weight_decay", weight_decay)
        self.weight_decay = float(weight_decay)
        clips = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
        for key, value in clips.items():
            _require(value is None or value > 0, name, f"{key} > 0 or None", key, value)
        chosen = {key: value for key, value in clips.items() if value is not None}
        if len(chosen) > 1:
            raise ValueError(f"{name} expects at most one of clipnorm, clipvalue and global_clipnorm. "
                             f"Received: {', '.join(f'{k}={v!r}' for k, v in chosen.items())}")
        self.clipnorm, self.clipvalue, self.global_clipnorm = (
            None if value is None else float(value) for value in clips.values())
        _require(gradient_accumulation_steps is None or isinstance(gradient_accumulation_steps, int)
                 and not isinstance(gradient_accumulation_steps, bool) and gradient_accumulation_steps >= 1, name,
                 "gradient_accumulation_steps to be None or an int >= 1", "gradient_accumulation_steps",
                 gradient_accumulation_steps)
        self.gradient_accumulation_steps = gradient_accumulation_steps

    @property
    def learning_rate(self) -> float | LearningRateSchedule:
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float | LearningRateSchedule) -> None:
        if isinstance(value, LearningRateSchedule):
            self._learning_rate = value
            return
        _require(isinstance(value, (int, float)) and value >= 0, type(self).__name__,
                 "learning_rate >= 0 or a deepzen.optimizers.schedules.LearningRateSchedule", "learning_rate", value)
        self._learning_rate = float(value)

    @classmethod
    def argument_names(cls) -> list[str]:
        """The constructor's argument names, from the subclass down to this base."""
        names: list[str] = []
        for klass in cls.__mro__:
            if "__init__" in vars(klass) and issubclass(klass, Optimizer):
                for parameter in inspect.signature(klass.__init__).parameters.values():
                    if parameter.name != "self" and parameter.kind is not parameter.VAR_KEYWORD \
                            and parameter.name not in names:
                        names.append(parameter.name)
        return names

    def torch_arguments(self) -> dict[str, Any]:
        """The hyperparameters under torch's names, for ``torch_class``."""
        raise NotImplementedError

    def build(self, params: Iterable, implementation: str = "auto") -> torch.optim.Optimizer:
        """The torch optimizer over ``params`` with this spec's hyperparameters.

        Args:
            params: what ``torch.optim`` accepts: tensors, ``(name, tensor)`` pairs, or param-group
                dicts (whose per-group options use torch's names, e.g. ``{"params": ..., "lr": 0.1}``).
            implementation: "auto" (fused when torch has a fused kernel for this optimizer and every
                parameter is a float64/32/16 or bfloat16 tensor on a device type in ``fused_devices``,
                else torch's default), or force "fused", "foreach" or "for_loop". torch's fused
                kernels reject sparse gradients (``nn.Embedding(sparse=True)``): build those non-fused.

        Returns:
            A ``torch_class`` instance; ``param_groups[i]["lr"]`` is what LR schedules change. With a schedule or
            ``gradient_accumulation_steps`` it also applies :class:`UpdateRules` (and the clipping) in ``step()``.
        """
        params = list(params)
        name = type(self).__name__
        _require(len(params) > 0, name, "at least one parameter to optimize", "params", params)
        tensors = _parameter_tensors(params)
        fusable = bool(self.fused_devices) and all(
            t.dtype in _FUSED_DTYPES and t.device.type in self.fused_devices for t in tensors)
        if implementation == "auto":
            flags = {"fused": True} if fusable else {}
        elif implementation == "fused":
            _require(fusable, name, f"float parameters on {sorted(self.fused_devices)} for a fused torch kernel "
                     f"(fused kernels exist for SGD, Adam, AdamW and Adagrad)", "implementation", implementation)
            flags = {"fused": True}
        elif implementation in ("foreach", "for_loop"):
            flags = {"foreach": implementation == "foreach"}
        else:
            raise ValueError(f"{name}.build expects implementation in {IMPLEMENTATIONS}. "
                             f"Received: implementation={implementation!r}")
        arguments = self.torch_arguments()
        schedule = self.learning_rate if isinstance(self.learning_rate, LearningRateSchedule) else None
        accumulation = self.gradient_accumulation_steps or 1
        if schedule is None and accumulation == 1:
            return with_keras_attributes(self.torch_class)(params, **arguments, **flags)
        if schedule is not None:
            arguments["lr"] = schedule(0)
        optimizer = with_update_rules(self.torch_class)(params, **arguments, **flags)
        clipping = (self.clipnorm, self.clipvalue, self.global_clipnorm)
        optimizer.set_update_rules(schedule, accumulation, clipping if any(c is not None for c in clipping) else None)
        return optimizer

    def apply(self, grads: list, trainable_variables: list) -> None:
        """Keras's ``optimizer.apply(grads, trainable_variables)`` in a custom ``train_step``: the first call
        builds the torch optimizer for ``trainable_variables``; every call applies one update."""
        if getattr(self, "_built_for", None) is None:
            self._built_for = self.build(list(trainable_variables))
        self._built_for.apply(grads, trainable_variables)

    def apply_gradients(self, grads_and_vars) -> None:
        """Keras 2's ``apply_gradients(zip(grads, variables))``."""
        pairs = list(grads_and_vars)
        self.apply([g for g, _ in pairs], [v for _, v in pairs])

    def get_config(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.argument_names()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Optimizer":
        # a schedule given as the rate was saved as its config (registered schedule classes only)
        if "learning_rate" in config:
            config = {**config, "learning_rate": value_from_config(config["learning_rate"])}
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class KerasAttributes:
    """Keras's optimizer attributes on the torch optimizers deepzen builds.

    ``learning_rate`` reads the first param group's ``lr`` and sets every group's, so Keras code such as
    ``model.optimizer.learning_rate = 1e-4`` in a callback changes the rate (on a plain torch optimizer
    that line would only add an unused attribute).
    """

    @property
    def learning_rate(self) -> float:
        return self.param_groups[0]["lr"]

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        for group in self.param_groups:
            group["lr"] = float(value)

    def apply(self, grads: list, trainable_variables: list | None = None) -> None:
        """Keras's ``optimizer.apply(grads, trainable_variables)``: one update with these gradients (by default
        for the parameters this optimizer was built with, in their order)."""
        variables = list(trainable_variables) if trainable_variables is not None else \
            [p for group in self.param_groups for p in group["params"]]
        known = {id(p) for group in self.param_groups for p in group["params"]}
        strangers = [i for i, v in enumerate(variables) if id(v) not in known]
        if strangers or len(grads) != len(variables):
            raise ValueError(f"{type(self).__name__}.apply expects one gradient per variable, for variables this "
                             f"optimizer was built with. Received: {len(grads)} gradients for {len(variables)} "
                             f"variables{f', of which {len(strangers)} it does not update' if strangers else ''}")
        with torch.no_grad():
            for variable, grad in zip(variables, grads):
                if grad is not None and grad is not variable.grad:
                    variable.grad = grad.detach().to(variable.dtype)
            self.step()

    def apply_gradients(self, grads_and_vars) -> None:
        """Keras 2's ``apply_gradients(zip(grads, variables))``."""
        pairs = list(grads_and_vars)
        self.apply([g for g, _ in pairs], [v for _, v in pairs])


@functools.cache
def with_keras_attributes(torch_class: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """``torch_class`` with :class:`KerasAttributes` (still an instance of ``torch_class`` for torch's code)."""
    return type(torch_class.__name__, (KerasAttributes, torch_class), {"__qualname__": torch_class.__qualname__})


class UpdateRules(KerasAttributes):
    """Keras's rules for when and how ``step()`` updates: a learning-rate schedule and gradient accumulation.

    The counters live in the first parameter group (``"iterations"``: updates applied; ``"micro_steps"``:
    ``step()`` calls since the last update), so ``state_dict()`` and the training checkpoints keep them.
    Gradients accumulated since the last update live in the parameters' ``.grad``, which a checkpoint does not
    hold: resuming inside an accumulation cycle starts that cycle's sum afresh.
    """

    schedule: LearningRateSchedule | None = None
    accumulation: int = 1
    clipping: tuple | None = None

    def set_update_rules(self, schedule: LearningRateSchedule | None, accumulation: int,
                         clipping: tuple | None) -> None:
        self.schedule, self.accumulation, self.clipping = schedule, accumulation, clipping
        self.param_groups[0].setdefault("iterations", 0)
        self.param_groups[0].setdefault("micro_steps", 0)

    @property
    def iterations(self) -> int:
        """Keras's ``optimizer.iterations``: the updates applied so far."""
        return self.param_groups[0]["iterations"]

    @property
    def learning_rate(self) -> float:
        return self.param_groups[0]["lr"]

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        if self.schedule is not None:
            raise TypeError(f"This optimizer's learning rate follows {self.schedule!r}; it cannot be set. Build the "
                            f"optimizer with a float learning_rate to set it yourself")
        KerasAttributes.learning_rate.fset(self, value)

    def zero_grad(self, set_to_none: bool = True) -> None:
        if self.param_groups[0]["micro_steps"] == 0:  # otherwise the gradients are still adding up
            super().zero_grad(set_to_none)

    def step(self, closure=None):
        first = self.param_groups[0]
        first["micro_steps"] += 1
        if first["micro_steps"] < self.accumulation:
            return None
        first["micro_steps"] = 0
        parameters = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if self.accumulation > 1 and parameters:
            torch._foreach_mul_([p.grad for p in parameters], 1.0 / self.accumulation)  # the sum of N -> their mean
        if self.clipping is not None:
            clip_gradients(parameters, *self.clipping)
        if self.schedule is not None:
            rate = float(self.schedule(first["iterations"]))
            for group in self.param_groups:
                group["lr"] = rate
        result = super().step(closure)
        first["iterations"] += 1
        return result


@functools.cache
def with_update_rules(torch_class: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """``torch_class`` with :class:`UpdateRules` (and so Keras's attributes)."""
    return type(torch_class.__name__, (UpdateRules, torch_class), {"__qualname__": torch_class.__qualname__})


@OPTIMIZERS.register("sgd")
class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum (Sutskever et al. 2013).

    With velocity ``v`` (0 at the start): ``v = momentum * v - learning_rate * g``, then
    ``w += v``, or with ``nesterov=True`` ``w += momentum * v - learning_rate * g``. torch keeps
    ``-v / learning_rate`` instead of ``v``, which is the same rule while the learning rate is fixed.

    Args:
        learning_rate: step size.
        momentum: velocity decay in [0, 1]; 0 is plain gradient descent.
        nesterov: Nesterov's look-ahead momentum (needs momentum > 0).
        **kwargs: weight_decay, clipnorm, clipvalue, global_clipnorm, gradient_accumulation_steps (see
            :class:`Optimizer`).
    """

    torch_class = torch.optim.SGD
    fused_devices = frozenset({"cpu", "cuda"})

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False, **kwargs: Any):
        super().__init__(learning_rate, **kwargs)
        _require(0 <= momentum <= 1, "SGD", "0 <= momentum <= 1", "momentum", momentum)
        _require(not nesterov or momentum > 0, "SGD", "momentum > 0 with nesterov=True", "momentum", momentum)
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def torch_arguments(self):
        return dict(lr=self.learning_rate, momentum=self.momentum, nesterov=self.nesterov,
                    weight_decay=self.weight_decay)


OPTIMIZERS.register("momentum", functools.partial(SGD, momentum=0.9))
OPTIMIZERS.register("nesterov", functools.partial(SGD, momentum=0.9, nesterov=True))


@OPTIMIZERS.register("adam")
class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), with bias-corrected moments.

    ``m = beta_1 m + (1 - beta_1) g``, ``v = beta_2 v + (1 - beta_2) g^2``,
    ``w -= learning_rate * m_hat / (sqrt(v_hat) + epsilon)`` with ``m_hat = m / (1 - beta_1^t)``,
    ``v_hat = v / (1 - beta_2^t)``. ``amsgrad=True`` (Reddi et al. 2018) uses the running maximum
    of ``v`` instead. epsilon is added to ``sqrt(v_hat)`` as in the paper and torch (Keras adds it
    to ``sqrt(v)``, which differs only while ``v`` is of the order of epsilon).

    Args:
        learning_rate: step size.
        beta_1: decay of the first-moment average, in [0, 1).
        beta_2: decay of the second-moment average, in [0, 1).
        epsilon: added to the denominator for numerical stability (Keras's 1e-7, torch uses 1e-8).
        amsgrad: use the AMSGrad variant.
        **kwargs: weight_decay, clipnorm, clipvalue, global_clipnorm, gradient_accumulation_steps (see
            :class:`Optimizer`).
    """

    torch_class: type[torch.optim.Optimizer] = torch.optim.Adam
    fused_devices = frozenset({"cpu", "cuda"})

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, **kwargs: Any):
        super().__init__(learning_rate, **kwargs)
        name = type(self).__name__
        _require(0 <= beta_1 < 1, name, "0 <= beta_1 < 1", "beta_1", beta_1)
        _require(0 <= beta_2 < 1, name, "0 <= beta_2 < 1", "beta_2", beta_2)
        _require(epsilon >= 0, name, "epsilon >= 0", "epsilon", epsilon)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self.amsgrad = bool(amsgrad)

    def torch_arguments(self):
        return dict(lr=self.learning_rate, betas=(self.beta_1, self.beta_2), eps=self.epsilon, amsgrad=self.amsgrad,
                    weight_decay=self.weight_decay)


@OPTIMIZERS.register("adamw")
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019).

    Each step first shrinks the weights, ``w -= learning_rate * weight_decay * w``, then takes the
    Adam step; unlike an L2 term the decay does not pass through the adaptive denominator.

    Args: as :class:`Adam`; ``weight_decay`` defaults to Keras's 0.004.
    """

    torch_class = torch.optim.AdamW

    def __init__(self, learning_rate: float = 0.001, weight_decay: float = 0.004, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7, amsgrad: bool = False, **kwargs: Any):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay=weight_decay, **kwargs)


@OPTIMIZERS.register("adagrad")
class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011): per-weight steps shrink with the sum of past squared gradients.

    ``s += g^2`` (``s`` starts at ``initial_accumulator_value``), ``w -= learning_rate * g / (sqrt(s) + epsilon)``.

    Args:
        learning_rate: step size.
        initial_accumulator_value: starting value of ``s`` (>= 0).
        epsilon: added to the denominator (torch places it outside the square root, Keras inside).
        **kwargs: weight_decay, clipnorm, clipvalue, global_clipnorm, gradient_accumulation_steps (see
            :class:`Optimizer`).
    """

    torch_class = torch.optim.Adagrad
    fused_devices = frozenset({"cpu", "cuda"})

    def __init__(self, learning_rate: float = 0.001, initial_accumulator_value: float = 0.1, epsilon: float = 1e-7,
                 **kwargs: Any):
        super().__init__(learning_rate, **kwargs)
        _require(initial_accumulator_value >= 0, "Adagrad", "initial_accumulator_value >= 0",
                 "initial_accumulator_value", initial_accumulator_value)
        _require(epsilon >= 0, "Adagrad", "epsilon >= 0", "epsilon", epsilon)
        self.initial_accumulator_value, self.epsilon = float(initial_accumulator_value), float(epsilon)

    def torch_arguments(self):
        return dict(lr=self.learning_rate, initial_accumulator_value=self.initial_accumulator_value, eps=self.epsilon,
                    weight_decay=self.weight_decay)


@OPTIMIZERS.register("adadelta")
class Adadelta(Optimizer):
    """Adadelta (Zeiler 2012): steps scaled by the ratio of RMS past updates to RMS past gradients.

    ``E[g^2] = rho E[g^2] + (1 - rho) g^2``, ``d = sqrt(E[dx^2] + epsilon) / sqrt(E[g^2] + epsilon) * g``,
    ``E[dx^2] = rho E[dx^2] + (1 - rho) d^2``, ``w -= learning_rate * d``.

    The paper's rule has no learning rate, which is ``learning_rate=1.0`` here and in torch. Keras
    defaults to 0.001, which makes the steps a thousand times smaller than the paper's.

    Args:
        learning_rate: scale of the update (1.0 is the paper's rule).
        rho: decay of both running averages, in [0, 1].
        epsilon: added inside both square roots.
        **kwargs: weight_decay, clipnorm, clipvalue, global_clipnorm, gradient_accumulation_steps (see
            :class:`Optimizer`).
    """

    torch_class = torch.optim.Adadelta

    def __init__(self, learning_rate: float = 1.0, rho: float = 0.95, epsilon: float = 1e-6, **kwargs: Any):
        super().__init__(learning_rate, **kwargs)
        _require(0 <= rho <= 1, "Adadelta", "0 <= rho <= 1", "rho", rho)
        _require(epsilon >= 0, "Adadelta", "epsilon >= 0", "epsilon", epsilon)
        self.rho, self.epsilon = float(rho), float(epsilon)

    def torch_arguments(self):
        return dict(lr=self.learning_rate, rho=self.rho, eps=self.epsilon, weight_decay=self.weight_decay)


@OPTIMIZERS.register("rmsprop")
class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e; centered form from Graves 2013).

    ``s = rho s + (1 - rho) g^2``; the step is ``u = learning_rate * g / (sqrt(s) + epsilon)``, or
    with ``centered=True`` ``sqrt(s - a^2)`` in place of ``sqrt(s)``, where ``a = rho a + (1 - rho) g``.
    Without momentum ``w -= u``; with it ``b = momentum * b + u`` and ``w -= b``. epsilon is added
    outside the square root as in torch (Keras adds it inside).

    Args:
        learning_rate: step size.
        rho: decay of the squared-gradient average, in [0, 1].
        momentum: momentum of the steps (>= 0).
        epsilon: added to the denominator.
        centered: normalize by the estimated variance instead of the second moment.
        **kwargs: weight_decay, clipnorm, clipvalue, global_clipnorm, gradient_accumulation_steps (see
            :class:`Optimizer`).
    """

    torch_class = torch.optim.RMSprop

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0, epsilon: float = 1e-7,
                 centered: bool = False, **kwargs: Any):
        super().__init__(learning_rate, **kwargs)
        _require(0 <= rho <= 1, "RMSprop", "0 <= rho <= 1", "rho", rho)
        _require(momentum >= 0, "RMSprop", "momentum >= 0", "momentum", momentum)
        _require(epsilon >= 0, "RMSprop", "epsilon >= 0", "epsilon", epsilon)
        self.rho, self.momentum, self.epsilon = float(rho), float(momentum), float(epsilon)
        self.centered = bool(centered)

    def torch_arguments(self):
        return dict(lr=self.learning_rate, alpha=self.rho, momentum=self.momentum, eps=self.epsilon,
                    centered=self.centered, weight_decay=self.weight_decay)


def clip_gradients(parameters: Iterable[torch.Tensor], clipnorm: float | None = None, clipvalue: float | None = None,
                   global_clipnorm: float | None = None) -> None:
    """Clips the ``.grad`` of ``parameters`` in place, as Keras does, with no host sync.

    Args:
        parameters: tensors whose gradients to clip (those without a gradient are skipped).
        clipnorm: scale each gradient ``g`` by ``clipnorm / max(||g||, clipnorm)`` (per tensor).
        clipvalue: clamp each gradient element to ``[-clipvalue, clipvalue]``.
        global_clipnorm: scale all gradients by one factor so their joint L2 norm is at most this
            (``torch.nn.utils.clip_grad_norm_``, which divides by the norm plus 1e-6).

    torch's clip functions pick their foreach kernels where torch has them (CUDA); on CPU foreach
    measured no faster than the per-tensor loop, so the choice is left to torch.
    """
    parameters = [p for p in parameters if p.grad is not None]
    if not parameters:
        return
    grads = [p.grad for p in parameters]
    if clipvalue is not None:
        torch.nn.utils.clip_grad_value_(parameters, clipvalue)
    if clipnorm is not None:
        scales = torch._foreach_norm(grads)  # one 0-dim tensor per gradient, stays on its device
        torch._foreach_clamp_min_(scales, clipnorm)
        torch._foreach_reciprocal_(scales)
        torch._foreach_mul_(scales, clipnorm)  # clipnorm / max(||g||, clipnorm)
        torch._foreach_mul_(grads, scales)
    if global_clipnorm is not None:
        torch.nn.utils.clip_grad_norm_(parameters, global_clipnorm)


def get(identifier: Any, **kwargs: Any) -> Optimizer | torch.optim.Optimizer:
    """An optimizer spec from a name ("adam"), a spec class, or a spec (returned as is).

    ``kwargs`` (Keras names) go to the constructor of a name or class. A ``torch.optim.Optimizer``
    instance is returned unchanged: it already holds its parameters, so the engine uses it as it is
    instead of calling ``build``; there is then no spec to read clipping settings from.
    """
    if isinstance(identifier, str):
        return OPTIMIZERS.get(identifier)(**kwargs)
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier(**kwargs)
    if isinstance(identifier, (Optimizer, torch.optim.Optimizer)):
        if kwargs:
            raise TypeError(f"Keyword arguments apply to optimizer names and classes, not to an optimizer "
                            f"object. Received: {type(identifier).__name__} with {', '.join(kwargs)}")
        return identifier
    raise TypeError(f"An optimizer must be a name ({', '.join(OPTIMIZERS.names())}), an Optimizer class or "
                    f"instance, or a torch.optim.Optimizer. Received: {identifier!r}")
