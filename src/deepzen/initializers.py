"""Weight initializers by their Keras names, filling tensors in place with ``torch.nn.init``.

Fans follow PyTorch's weight layout (``(out, in, *kernel)``): ``fan_in = in * prod(kernel)``,
``fan_out = out * prod(kernel)``. deepzen layers store weights in that layout, so "glorot_uniform"
means the same thing for a Dense kernel as for a Conv2D kernel.

Example:
    >>> import torch
    >>> w = get("he_normal")(torch.empty(256, 512))
    >>> abs(float(w.var()) - 2 / 512) < 2e-4
    True
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from deepzen._registry import Registry
from deepzen.serializable import Serializable

INITIALIZERS: Registry[type] = Registry("initializer")


def fans(tensor: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight in PyTorch layout; a vector counts as fan_in = fan_out = size."""
    if tensor.dim() < 2:
        return tensor.numel(), tensor.numel()
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


class Initializer(Serializable):
    """Fills a tensor in place and returns it. Subclasses implement :meth:`fill`."""

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.fill(tensor)
        return tensor

    def fill(self, tensor: torch.Tensor) -> None:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Initializer":
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


@INITIALIZERS.register("zeros")
class Zeros(Initializer):
    def fill(self, tensor):
        tensor.zero_()


@INITIALIZERS.register("ones")
class Ones(Initializer):
    def fill(self, tensor):
        tensor.fill_(1.0)


@INITIALIZERS.register("constant")
class Constant(Initializer):
    def __init__(self, value: float = 0.0):
        self.value = float(value)

    def fill(self, tensor):
        tensor.fill_(self.value)


@INITIALIZERS.register("random_normal")
class RandomNormal(Initializer):
    """N(mean, stddev^2); the default stddev 0.01 is the textbook "small random numbers"."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.01):
        if stddev < 0:
            raise ValueError(f"RandomNormal expects stddev >= 0. Received: stddev={stddev}")
        self.mean, self.stddev = float(mean), float(stddev)

    def fill(self, tensor):
        tensor.normal_(self.mean, self.stddev)


@INITIALIZERS.register("random_uniform")
class RandomUniform(Initializer):
    def __init__(self, minval: float = -0.05, maxval: float = 0.05):
        if maxval < minval:
            raise ValueError(f"RandomUniform expects minval <= maxval. Received: minval={minval}, maxval={maxval}")
        self.minval, self.maxval = float(minval), float(maxval)

    def fill(self, tensor):
        tensor.uniform_(self.minval, self.maxval)


@INITIALIZERS.register("truncated_normal")
class TruncatedNormal(Initializer):
    """N(mean, stddev^2) redrawn outside two standard deviations."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05):
        self.mean, self.stddev = float(mean), float(stddev)

    def fill(self, tensor):
        nn.init.trunc_normal_(tensor, self.mean, self.stddev, self.mean - 2 * self.stddev, self.mean + 2 * self.stddev)


class VarianceScaling(Initializer):
    """Var(w) = scale / n, with n the fan_in, fan_out or their mean (Glorot, He and LeCun are cases).

    Args:
        scale: the numerator (2 for He, 1 for Glorot and LeCun).
        mode: "fan_in", "fan_out" or "fan_avg".
        distribution: "uniform" (U(-l, l) with l = sqrt(3 var)) or "normal".
    """

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "normal"):
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"VarianceScaling expects mode 'fan_in', 'fan_out' or 'fan_avg'. Received: mode={mode!r}")
        if distribution not in ("uniform", "normal"):
            raise ValueError(f"VarianceScaling expects distribution 'uniform' or 'normal'. "
                             f"Received: distribution={distribution!r}")
        self.scale, self.mode, self.distribution = float(scale), mode, distribution

    def fill(self, tensor):
        fan_in, fan_out = fans(tensor)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, n)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            tensor.uniform_(-limit, limit)
        else:
            tensor.normal_(0.0, math.sqrt(variance))


class _FixedVarianceScaling(VarianceScaling):
    """A named VarianceScaling whose three settings are fixed by the paper it comes from."""

    settings: tuple[float, str, str]

    def __init__(self):
        super().__init__(*self.settings)

    def get_config(self):
        return {}


# Glorot & Bengio 2010: Var = 2 / (fan_in + fan_out); He et al. 2015: Var = 2 / fan_in; LeCun 1998: 1 / fan_in.
@INITIALIZERS.register("glorot_uniform", None, "xavier_uniform")
class GlorotUniform(_FixedVarianceScaling):
    settings = (1.0, "fan_avg", "uniform")


@INITIALIZERS.register("glorot_normal", None, "xavier_normal")
class GlorotNormal(_FixedVarianceScaling):
    settings = (1.0, "fan_avg", "normal")


@INITIALIZERS.register("he_uniform", None, "kaiming_uniform")
class HeUniform(_FixedVarianceScaling):
    settings = (2.0, "fan_in", "uniform")


@INITIALIZERS.register("he_normal", None, "kaiming_normal")
class HeNormal(_FixedVarianceScaling):
    settings = (2.0, "fan_in", "normal")


@INITIALIZERS.register("lecun_uniform")
class LecunUniform(_FixedVarianceScaling):
    settings = (1.0, "fan_in", "uniform")


@INITIALIZERS.register("lecun_normal", None, "lecun")
class LecunNormal(_FixedVarianceScaling):
    settings = (1.0, "fan_in", "normal")


@INITIALIZERS.register("orthogonal")
class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2014), for recurrent kernels."""

    def __init__(self, gain: float = 1.0):
        self.gain = float(gain)

    def fill(self, tensor):
        nn.init.orthogonal_(tensor, gain=self.gain)


def get(identifier: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """An initializer from a name ("he_normal"), an :class:`Initializer`, or any callable on a tensor."""
    if isinstance(identifier, str):
        return INITIALIZERS.get(identifier)()
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if callable(identifier):
        return identifier
    raise TypeError(f"An initializer must be a name, an Initializer or a callable. Received: {identifier!r}")
