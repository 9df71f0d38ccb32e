"""The basic layers: Dense, Activation, Flatten, Reshape, Dropout (``Input`` lives in ``input_layer``)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from deepzen.layers.base import Layer
from deepzen.layers.input_layer import Input  # noqa: F401  (Keras's Input; imported from here before)


def _regularizer(identifier):
    from deepzen import regularizers

    return regularizers.get(identifier)


def _activation(identifier):
    from deepzen import activations

    return activations.get(identifier)


class Dense(Layer):
    """Fully connected layer: ``activation(x @ W^T + b)`` on the last axis.

    Args:
        units: output features.
        activation: name or callable applied to the output (default: none).
        use_bias: whether to add a bias.
        kernel_initializer / bias_initializer: names or callables (``deepzen.initializers``).
        kernel_regularizer / bias_regularizer / activity_regularizer: penalties added to the training loss.

    Call arguments:
        x: (N, ..., in_features). Returns (N, ..., units).

    The kernel is stored as ``weight`` with shape (units, in_features), PyTorch's layout.
    """

    def __init__(self, units: int, activation: Any = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, bias_regularizer: Any = None,
                 activity_regularizer: Any = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, int) or units < 1:
            raise ValueError(f"Dense expects units to be a positive integer. Received: units={units!r}")
        self.units = units
        self.activation = _activation(activation)
        self.use_bias = use_bias
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.kernel_regularizer = _regularizer(kernel_regularizer)
        self.bias_regularizer = _regularizer(bias_regularizer)
        self.activity_regularizer = _regularizer(activity_regularizer)

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"Layer '{self.display_name}' (Dense) expects inputs of at least 2 dimensions "
                             f"(batch, features). Received shape: {tuple(input_shape)}")
        self.weight = self.new_parameter((self.units, input_shape[-1]), self.kernel_initializer)
        self.bias = self.new_parameter((self.units,), self.bias_initializer) if self.use_bias else None

    def forward(self, x):
        return self.record_activity(self.activation(F.linear(x, self.weight, self.bias)), self.activity_regularizer)

    def regularization_terms(self):
        terms = [(self.weight, self.kernel_regularizer), (self.bias, self.bias_regularizer)]
        return [(p, r) for p, r in terms if p is not None and r is not None]


class Activation(Layer):
    """Applies an activation function by name (``"relu"``) or callable.

    Example:
        >>> import torch
        >>> Activation("relu")(torch.tensor([[-1.0, 2.0]]))
        tensor([[0., 2.]])
    """

    def __init__(self, activation: Any, **kwargs):
        super().__init__(**kwargs)
        self.activation = _activation(activation)

    def forward(self, x):
        return self.activation(x)


class Flatten(Layer):
    """Flattens every axis but the batch axis: (N, d1, d2, ...) -> (N, d1 * d2 * ...)."""

    def forward(self, x):
        return x.flatten(1)


class Reshape(Layer):
    """Reshapes each sample to ``target_shape`` (no batch axis; one entry may be -1).

    Example:
        >>> import torch
        >>> Reshape((2, -1))(torch.zeros(5, 6)).shape
        torch.Size([5, 2, 3])
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(int(d) for d in target_shape)
        if sum(d == -1 for d in self.target_shape) > 1 or any(d == 0 or d < -1 for d in self.target_shape):
            raise ValueError(f"Reshape expects positive sizes and at most one -1. Received: target_shape={target_shape}")

    def build(self, input_shape):
        size = math.prod(input_shape[1:])
        known = math.prod(d for d in self.target_shape if d != -1)
        if (-1 in self.target_shape and size % known) or (-1 not in self.target_shape and size != known):
            raise ValueError(f"Layer '{self.display_name}' cannot reshape inputs of shape (None, "
                             f"{', '.join(map(str, input_shape[1:]))}) ({size} values per sample) to "
                             f"target_shape={self.target_shape}")

    def forward(self, x):
        return x.reshape(x.shape[0], *self.target_shape)


class Dropout(Layer):
    """Zeroes a fraction ``rate`` of inputs while training and scales the rest by 1 / (1 - rate).

    At evaluation (``model.eval()``) it is the identity ("inverted dropout", Srivastava et al. 2014).
    ``layer(x, training=True)`` / ``training=False`` overrides the module's mode for one call, as in Keras.
    """

    def __init__(self, rate: float, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout expects rate in [0, 1). Received: rate={rate}")
        self.rate = float(rate)

    def forward(self, x, training=None):
        return F.dropout(x, self.rate, self.training if training is None else bool(training))
