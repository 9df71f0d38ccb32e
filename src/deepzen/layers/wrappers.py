"""TimeDistributed: one layer applied to every time step (``Bidirectional`` is in ``recurrent``).

Example:
    >>> import torch
    >>> from deepzen.layers.core import Dense
    >>> TimeDistributed(Dense(8))(torch.randn(32, 10, 16)).shape
    torch.Size([32, 10, 8])
"""

from __future__ import annotations

from torch import nn

from deepzen.layers.base import Layer, shape_str


class TimeDistributed(Layer):
    """Applies ``layer`` to each time step of ``(N, T, ...)`` with the same weights.

    The steps are folded into the batch — ``(N * T, ...)`` — for one call of ``layer``, then unfolded:
    one kernel launch, not ``T``.

    Args:
        layer: any layer or ``nn.Module`` taking ``(batch, ...)``.

    Call arguments:
        x: ``(N, T, *features)``. Returns ``(N, T, *layer_output_features)``.
    """

    def __init__(self, layer: nn.Module, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(layer, nn.Module):
            raise TypeError(f"TimeDistributed expects a layer (an nn.Module). Received: {layer!r}")
        self.layer = layer

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(f"Layer '{self.display_name}' (TimeDistributed) expects inputs of at least 3 axes "
                             f"(batch, time, ...). Received: input_shape={shape_str((None, *input_shape[1:]))}")

    def forward(self, x):
        batch, steps = x.shape[:2]
        out = self.layer(x.reshape(batch * steps, *x.shape[2:]))  # (N * T, ...)
        return out.reshape(batch, steps, *out.shape[1:])
