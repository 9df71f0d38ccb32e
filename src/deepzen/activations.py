"""Activation functions by their Keras names, computed by PyTorch's fused kernels.

Every activation is a plain function on a tensor of any shape, applied elementwise (``softmax``
and ``log_softmax`` normalise along ``axis``, the last one by default) and returning a tensor of
the same shape. :func:`get` turns a name into the function; the ``Activation`` layer and the
``activation=`` argument of other layers go through it.

Example:
    >>> import torch
    >>> get("relu")(torch.tensor([-1.0, 2.0]))
    tensor([0., 2.])
    >>> get("leaky_relu", negative_slope=0.5)(torch.tensor([-1.0, 2.0]))
    tensor([-0.5000,  2.0000])
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch
import torch.nn.functional as F

from deepzen._registry import Registry

ACTIVATIONS: Registry[Callable[..., torch.Tensor]] = Registry("activation")


@ACTIVATIONS.register("linear")
def linear(x: torch.Tensor) -> torch.Tensor:
    """The identity, ``x``: the "no activation" of a layer."""
    return x


@ACTIVATIONS.register("sigmoid")
def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """``1 / (1 + exp(-x))``, in (0, 1)."""
    return torch.sigmoid(x)


@ACTIVATIONS.register("hard_sigmoid")
def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """``clip(x / 6 + 1 / 2, 0, 1)``, the piecewise-linear sigmoid of Keras 3 and MobileNetV3."""
    return F.hardsigmoid(x)


@ACTIVATIONS.register("tanh")
def tanh(x: torch.Tensor) -> torch.Tensor:
    """Hyperbolic tangent, in (-1, 1)."""
    return torch.tanh(x)


@ACTIVATIONS.register("softsign")
def softsign(x: torch.Tensor) -> torch.Tensor:
    """``x / (1 + |x|)``, in (-1, 1)."""
    return F.softsign(x)


@ACTIVATIONS.register("relu")
def relu(x: torch.Tensor) -> torch.Tensor:
    """``max(x, 0)``."""
    return F.relu(x)


@ACTIVATIONS.register("relu6")
def relu6(x: torch.Tensor) -> torch.Tensor:
    """``min(max(x, 0), 6)``."""
    return F.relu6(x)


@ACTIVATIONS.register("leaky_relu", None, "leakyrelu")
def leaky_relu(x: torch.Tensor, negative_slope: float = 0.2) -> torch.Tensor:
    """``x`` for ``x >= 0``, ``negative_slope * x`` below (default 0.2, as in Keras 3)."""
    return F.leaky_relu(x, negative_slope)


@ACTIVATIONS.register("elu")
def elu(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` below (Clevert et al. 2016)."""
    return F.elu(x, alpha)


@ACTIVATIONS.register("selu")
def selu(x: torch.Tensor) -> torch.Tensor:
    """``scale * elu(x, alpha)`` with Klambauer et al.'s (2017) self-normalising constants.

    ``alpha = 1.6732632423543772``, ``scale = 1.0507009873554805``.
    """
    return F.selu(x)


@ACTIVATIONS.register("gelu")
def gelu(x: torch.Tensor, approximate: bool = False) -> torch.Tensor:
    """``x * Phi(x)`` with ``Phi`` the standard normal CDF (Hendrycks & Gimpel 2016).

    Args:
        approximate: use the tanh approximation
            ``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`` (GPT-2, BERT) instead of the erf form.
    """
    return F.gelu(x, approximate="tanh" if approximate else "none")


@ACTIVATIONS.register("silu", None, "swish")
def silu(x: torch.Tensor) -> torch.Tensor:
    """``x * sigmoid(x)`` (SiLU, also called swish)."""
    return F.silu(x)


@ACTIVATIONS.register("hard_silu", None, "hard_swish")
def hard_silu(x: torch.Tensor) -> torch.Tensor:
    """``x * hard_sigmoid(x)`` (MobileNetV3's hard swish)."""
    return F.hardswish(x)


@ACTIVATIONS.register("mish")
def mish(x: torch.Tensor) -> torch.Tensor:
    """``x * tanh(softplus(x))`` (Misra 2019)."""
    return F.mish(x)


@ACTIVATIONS.register("softplus")
def softplus(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + exp(x))``, a smooth relu (computed without overflow for large ``x``)."""
    return F.softplus(x)


@ACTIVATIONS.register("exponential")
def exponential(x: torch.Tensor) -> torch.Tensor:
    """``exp(x)``."""
    return torch.exp(x)


@ACTIVATIONS.register("softmax")
def softmax(x: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """``exp(x) / sum(exp(x))`` along ``axis`` (the class axis, last by default): a distribution."""
    return F.softmax(x, dim=axis)


@ACTIVATIONS.register("log_softmax")
def log_softmax(x: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """``x - logsumexp(x)`` along ``axis``: the log of :func:`softmax`, without its underflow."""
    return F.log_softmax(x, dim=axis)


def get(identifier: Any, **kwargs: Any) -> Callable[..., torch.Tensor]:
    """An activation function from a name, a callable, or ``None``.

    Args:
        identifier: a registered name ("relu", "leaky_relu", "swish", ...; case and "-"/"_" do not
            matter), any callable on a tensor (an ``nn.Module`` too), returned as it is, or ``None``
            for :func:`linear`.
        **kwargs: arguments bound to a named activation, e.g. ``get("elu", alpha=0.5)``.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones).
        TypeError: for anything that is not a name, a callable or ``None``, or for keyword
            arguments given with a callable.
    """
    if isinstance(identifier, str):
        function = ACTIVATIONS.get(identifier)
        return functools.partial(function, **kwargs) if kwargs else function
    if kwargs:
        raise TypeError(f"Keyword arguments apply only to an activation given by name. "
                        f"Received: identifier={identifier!r} with {sorted(kwargs)}")
    if identifier is None:
        return linear
    if callable(identifier):
        return identifier
    raise TypeError(f"An activation must be a name ({', '.join(ACTIVATIONS.names())}), a callable or None. "
                    f"Received: {identifier!r} of type {type(identifier).__name__}")
