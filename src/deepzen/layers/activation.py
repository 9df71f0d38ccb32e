"""Activation layers with parameters: LeakyReLU, ReLU, PReLU, ELU and Softmax (Keras's classes).

``Activation("relu")`` covers the plain functions; these layers carry a setting (a slope, a ceiling,
an axis) or, for PReLU, a learned weight. Formulas and defaults are Keras 3's.

Example:
    >>> import torch
    >>> LeakyReLU(negative_slope=0.5)(torch.tensor([-10.0, -5.0, 0.0, 5.0, 10.0]))
    tensor([-5.0000, -2.5000,  0.0000,  5.0000, 10.0000])
    >>> ReLU(max_value=6.0)(torch.tensor([-1.0, 3.0, 8.0]))
    tensor([0., 3., 6.])
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from deepzen.layers.base import Layer


def _non_negative(layer: str, argument: str, value: Any) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{layer} expects {argument} to be a number >= 0. Received: {argument}={value!r}")
    return float(value)


class LeakyReLU(Layer):
    """``f(x) = x`` for ``x >= 0``, ``negative_slope * x`` otherwise.

    Args:
        negative_slope: the slope for negative inputs, >= 0 (Keras's default 0.3; Keras 2's ``alpha``).

    Call arguments:
        x: any shape. Returns the same shape.
    """

    def __init__(self, negative_slope: float = 0.3, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = _non_negative("LeakyReLU", "negative_slope", negative_slope)

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)


class ReLU(Layer):
    """Rectified linear unit with Keras's three settings.

    ``f(x) = max_value`` for ``x >= max_value``, ``x`` for ``threshold <= x < max_value``,
    ``negative_slope * (x - threshold)`` otherwise.

    Args:
        max_value: ceiling of the output, >= 0 (default: none). ``ReLU(6.0)`` is ReLU6.
        negative_slope: slope below the threshold, >= 0 (default 0).
        threshold: inputs below it are "inactive", >= 0 (default 0).

    Call arguments:
        x: any shape. Returns the same shape.
    """

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0, threshold: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.max_value = None if max_value is None else _non_negative("ReLU", "max_value", max_value)
        self.negative_slope = _non_negative("ReLU", "negative_slope", negative_slope)
        self.threshold = _non_negative("ReLU", "threshold", threshold)
        self._plain = self.negative_slope == 0.0 and self.threshold == 0.0

    def forward(self, x):
        if self._plain:
            out = F.relu(x)
        else:
            out = torch.where(x >= self.threshold, x, self.negative_slope * (x - self.threshold))
        return out if self.max_value is None else out.clamp(max=self.max_value)


class PReLU(Layer):
    """Parametric ReLU (He et al. 2015): ``f(x) = x`` for ``x >= 0``, ``alpha * x`` otherwise, alpha learned.

    Args:
        alpha_initializer: name or callable (Keras's default ``"zeros"``: starts as a ReLU).
        alpha_regularizer: penalty on alpha added to the training loss.
        shared_axes: axes (1 = the first after the batch, as in Keras) along which one alpha is shared,
            e.g. ``[2, 3]`` for one alpha per channel of ``(N, C, H, W)`` feature maps.

    Call arguments:
        x: (N, ...). Returns the same shape.

    Weights: ``alpha`` of shape ``x.shape[1:]`` with the shared axes set to 1.
    """

    def __init__(self, alpha_initializer: Any = "zeros", alpha_regularizer: Any = None,
                 shared_axes: int | Sequence[int] | None = None, **kwargs):
        super().__init__(**kwargs)
        from deepzen import regularizers

        self.alpha_initializer = alpha_initializer
        self.alpha_regularizer = None if alpha_regularizer is None else regularizers.get(alpha_regularizer)
        shared = () if shared_axes is None else (shared_axes,) if isinstance(shared_axes, int) else tuple(shared_axes)
        if not all(isinstance(a, int) and a >= 1 for a in shared):
            raise ValueError(f"PReLU expects shared_axes to be axes >= 1 (the batch axis is 0). "
                             f"Received: shared_axes={shared_axes!r}")
        self.shared_axes = shared

    def build(self, input_shape):
        shape = list(input_shape[1:])
        for axis in self.shared_axes:
            if axis > len(shape):
                raise ValueError(f"Layer '{self.display_name}' (PReLU) has shared_axes={self.shared_axes} but its "
                                 f"input has {len(input_shape)} axes. Received shape: {tuple(input_shape)}")
            shape[axis - 1] = 1
        self.alpha = self.new_parameter(tuple(shape), self.alpha_initializer)

    def forward(self, x):
        return torch.where(x >= 0, x, self.alpha * x)

    def regularization_terms(self):
        return [(self.alpha, self.alpha_regularizer)] if self.alpha_regularizer is not None else []


class ELU(Layer):
    """Exponential linear unit (Clevert et al. 2016): ``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise.

    Args:
        alpha: the value the output approaches for large negative inputs, as ``-alpha`` (default 1.0).
    """

    def __init__(self, alpha: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def forward(self, x):
        return F.elu(x, self.alpha)


class Softmax(Layer):
    """``exp(x) / sum(exp(x))`` along ``axis`` (an axis or a tuple of axes).

    Args:
        axis: the axis (or axes) normalized over (default -1).

    Call arguments:
        x: the logits, any shape.
        mask: optional boolean tensor of ``x``'s rank (broadcastable to it), True = keep. Masked
            positions get the logit -1e9 (-3e4 in float16) added, so they receive ~0 probability, as
            in Keras. A mask of lower rank — the (N, T) padding mask a Sequential model propagates
            from ``Embedding(mask_zero=True)`` — marks time steps, not classes, and is not applied.

    Example:
        >>> import torch
        >>> Softmax()(torch.tensor([1.0, 2.0, 1.0]))
        tensor([0.2119, 0.5761, 0.2119])
    """

    def __init__(self, axis: int | Sequence[int] = -1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis if isinstance(axis, int) else tuple(axis)

    def forward(self, x, mask=None):
        if mask is not None and mask.dim() == x.dim():
            large_negative = -3e4 if x.dtype == torch.float16 else -1e9
            x = x + (1.0 - mask.to(x.dtype)) * large_negative
        if isinstance(self.axis, int):
            return torch.softmax(x, self.axis)
        return torch.exp(x - torch.logsumexp(x, self.axis, keepdim=True))
