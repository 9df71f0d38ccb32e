"""Weight and activity penalties by their Keras names: a regularizer maps a tensor to a scalar.

Layers take them as ``kernel_regularizer=``, ``bias_regularizer=`` or ``activity_regularizer=``;
the training loss adds the penalties. Definitions are Keras's: ``l1 * sum(|w|)`` and
``l2 * sum(w^2)`` (no factor 1/2).

Example:
    >>> import torch
    >>> get("l2")(torch.tensor([1.0, -2.0]))  # 0.01 * (1 + 4)
    tensor(0.0500)
    >>> L1L2(l1=0.1, l2=1.0)(torch.tensor([[3.0, -4.0]]))  # 0.1 * 7 + 25
    tensor(25.7000)
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any, Callable

import torch

from deepzen._registry import Registry
from deepzen.serializable import Serializable

REGULARIZERS: Registry[Callable[..., "Regularizer"]] = Registry("regularizer")


class Regularizer(Serializable):
    """A penalty on a tensor: ``regularizer(weight)`` is a 0-dim tensor of ``weight``'s dtype and device."""

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Regularizer":
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


def _factor(owner: str, name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner} expects {name} to be a finite number >= 0. Received: {name}={value!r}")
    return float(value)


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w^2)``; a zero factor costs nothing.

    Args:
        l1: L1 factor (>= 0); pushes weights to exactly zero (sparse weights).
        l2: L2 factor (>= 0); "weight decay" in the classic, gradient-coupled sense.
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1 = _factor(type(self).__name__, "l1", l1)
        self.l2 = _factor(type(self).__name__, "l2", l2)

    def __call__(self, weight):
        penalty = weight.new_zeros(())
        if self.l1:
            penalty = penalty + self.l1 * weight.abs().sum()
        if self.l2:
            penalty = penalty + self.l2 * weight.square().sum()
        return penalty


@REGULARIZERS.register("l1")
class L1(L1L2):
    """``l1 * sum(|w|)``."""

    def __init__(self, l1: float = 0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


@REGULARIZERS.register("l2")
class L2(L1L2):
    """``l2 * sum(w^2)``."""

    def __init__(self, l2: float = 0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


# The name means both penalties at 0.01 (the defaults of Keras 2's ``l1_l2``); the class defaults
# are 0.0 as in Keras 3, where ``L1L2()`` alone is no penalty.
REGULARIZERS.register("l1_l2", functools.partial(L1L2, l1=0.01, l2=0.01))


def get(identifier: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A regularizer from None (none), a name ("l2"), a Regularizer class or instance, or any callable."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        return REGULARIZERS.get(identifier)()
    if isinstance(identifier, type) and issubclass(identifier, Regularizer):
        return identifier()
    if callable(identifier):
        return identifier
    raise TypeError(f"A regularizer must be None, a name ({', '.join(REGULARIZERS.names())}), a Regularizer "
                    f"or a callable on a tensor. Received: {identifier!r}")
