"""Embedding: integer token ids -> dense vectors, with an optional padding mask (Keras ``mask_zero``)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from deepzen import regularizers
from deepzen.layers.base import Layer


class Embedding(Layer):
    """Looks up a learned ``output_dim`` vector for each integer id in ``[0, input_dim)``.

    Args:
        input_dim: vocabulary size (largest id + 1).
        output_dim: size of each embedding vector.
        embeddings_initializer: name or callable (Keras's default, U(-0.05, 0.05)).
        embeddings_regularizer: penalty on the embedding matrix added to the training loss.
        mask_zero: id 0 is padding: :meth:`compute_mask` returns ``ids != 0`` so that later layers
            (RNNs, attention) skip padded steps. As in Keras, the vector of id 0 is still learned.
        padding_idx: PyTorch's padding: this id's vector starts at zero and gets no gradient.
            Independent of ``mask_zero``; pass both to mask and freeze id 0.

    Call arguments:
        ids: integer tensor of any shape (N, ...). Returns (N, ..., output_dim).

    The matrix is stored as ``weight`` with shape (input_dim, output_dim), like ``nn.Embedding``.

    Example:
        >>> import torch
        >>> layer = Embedding(10, 4, mask_zero=True)
        >>> ids = torch.tensor([[3, 5, 0, 0]])
        >>> layer(ids).shape
        torch.Size([1, 4, 4])
        >>> layer.compute_mask(ids)
        tensor([[ True,  True, False, False]])
    """

    takes_integer_inputs = True  # models keep their input ids as integers
    produces_steps_features = True  # (N, T) ids -> (N, T, output_dim)

    def __init__(self, input_dim: int, output_dim: int, embeddings_initializer: Any = "random_uniform",
                 embeddings_regularizer: Any = None, mask_zero: bool = False, padding_idx: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        for argument, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Embedding expects {argument} to be a positive integer. "
                                 f"Received: {argument}={value!r}")
        if padding_idx is not None and not 0 <= padding_idx < input_dim:
            raise ValueError(f"Embedding expects padding_idx in [0, input_dim={input_dim}). "
                             f"Received: padding_idx={padding_idx}")
        self.input_dim, self.output_dim = input_dim, output_dim
        self.embeddings_initializer = embeddings_initializer
        self.mask_zero, self.padding_idx = mask_zero, padding_idx
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)

    def build_for(self, x: torch.Tensor) -> None:
        if not self.built and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
            raise TypeError(f"Layer '{self.display_name}' (Embedding) expects integer token ids. "
                            f"Received: dtype={x.dtype} with shape {tuple(x.shape)}")
        super().build_for(x)

    def build(self, input_shape):
        self.weight = self.new_parameter((self.input_dim, self.output_dim), self.embeddings_initializer)
        if self.padding_idx is not None:
            with torch.no_grad():
                self.weight[self.padding_idx].zero_()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight, self.padding_idx)  # (N, ...) -> (N, ..., output_dim)

    def compute_mask(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """``inputs != 0`` (True = real token) when ``mask_zero``, else None."""
        return inputs != 0 if self.mask_zero else None

    def regularization_terms(self):
        return [(self.weight, self.embeddings_regularizer)] if self.embeddings_regularizer is not None else []
