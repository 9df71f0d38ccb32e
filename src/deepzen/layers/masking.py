"""Masking: marks time steps whose features all equal ``mask_value`` as padding, as in Keras.

Example:
    >>> import torch
    >>> x = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [3.0, 0.0]]])  # (N=1, T=3, F=2)
    >>> layer = Masking(mask_value=0.0)
    >>> layer.compute_mask(x)
    tensor([[ True, False,  True]])
"""

from __future__ import annotations

import torch

from deepzen.layers.base import Layer


class Masking(Layer):
    """Skips padded time steps in the layers that follow (RNNs, attention) and zeroes them.

    A step of a ``(N, T, F)`` sequence is masked when every feature equals ``mask_value``.

    Args:
        mask_value: the padding value (default 0.0).

    Call arguments:
        x: ``(N, T, F)``. Returns ``x`` with masked steps set to zero (Keras's output).

    :meth:`compute_mask` returns the ``(N, T)`` boolean mask (True = real step) that a model passes to
    the next layers' ``mask=`` argument.
    """

    def __init__(self, mask_value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = mask_value

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(f"Layer '{self.display_name}' (Masking) expects sequences (batch, steps, features). "
                             f"Received shape: {tuple(input_shape)}")

    def forward(self, x):
        keep = (x != self.mask_value).any(-1, keepdim=True)  # (N, T, 1)
        return x * keep.to(x.dtype)

    def compute_mask(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, T)``: True where some feature differs from ``mask_value``."""
        return (inputs != self.mask_value).any(-1)
