"""The Transformer (Vaswani et al. 2017): position encodings, encoder and decoder layers and stacks.

Built on deepzen's :class:`~deepzen.layers.attention.MultiHeadAttention` (itself on
``F.scaled_dot_product_attention``). The model size d_model is the inputs' last axis, learned on the
first call. Each sublayer (attention, feed-forward) is wrapped in a residual connection and a
LayerNorm, either after the sum (``norm_first=False``, the original post-norm) or before the
sublayer (``norm_first=True``, pre-norm, which trains deep stacks without warm-up tricks):

    post-norm: x = norm(x + dropout(sublayer(x)))
    pre-norm:  x = x + dropout(sublayer(norm(x)))

With the same weights a layer computes what ``nn.TransformerEncoderLayer`` /
``nn.TransformerDecoderLayer`` (batch_first) compute. Masks follow the attention layers: bool,
True = real token.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepzen import activations, initializers
from deepzen.layers.attention import MultiHeadAttention
from deepzen.layers.base import Layer


def sinusoidal_encoding(steps: int, dim: int, base: float = 10000.0, device=None,
                        dtype: torch.dtype | None = None) -> torch.Tensor:
    """``PE[t, 2i] = sin(t / base^(2i / dim))``, ``PE[t, 2i + 1] = cos(t / base^(2i / dim))``: (steps, dim)."""
    position = torch.arange(steps, dtype=torch.float64, device=device)[:, None]  # (T, 1)
    frequency = base ** (-torch.arange(0, dim, 2, dtype=torch.float64, device=device) / dim)  # (ceil(dim / 2),)
    angles = position * frequency  # (T, ceil(dim / 2))
    encoding = torch.empty(steps, dim, dtype=torch.float64, device=device)
    encoding[:, 0::2] = torch.sin(angles)
    encoding[:, 1::2] = torch.cos(angles[:, :dim // 2])
    return encoding.to(dtype or torch.get_default_dtype())


class PositionalEncoding(Layer):
    """Adds the fixed sinusoidal position encoding to (N, T, D) inputs, then applies dropout.

    Args:
        max_len: the longest sequence (with ``start_index``) the layer accepts.
        dropout: dropout rate on the sum (Vaswani et al. use 0.1).
        base: the wavelength base (10000 in the paper).

    Call arguments:
        x: (N, T, D). Returns (N, T, D).
        start_index: position of the first step (for incremental decoding).

    The encoding is a non-persistent buffer: it is recomputed, not saved.

    Example:
        >>> import torch
        >>> PositionalEncoding()(torch.zeros(1, 3, 4))[0, 1]  # sin(1), cos(1), sin(0.01), cos(0.01)
        tensor([0.8415, 0.5403, 0.0100, 0.9999])
    """

    def __init__(self, max_len: int = 5000, dropout: float = 0.0, base: float = 10000.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"{type(self).__name__} expects max_len to be a positive integer. "
                             f"Received: max_len={max_len!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{type(self).__name__} expects dropout in [0, 1). Received: dropout={dropout}")
        self.max_len, self.dropout, self.base = max_len, float(dropout), base

    def build(self, input_shape):
        _check_sequence_input(self, input_shape)
        self.register_buffer("positions", sinusoidal_encoding(self.max_len, input_shape[-1], self.base,
                                                              self._device, self._dtype), persistent=False)

    def forward(self, x: torch.Tensor, start_index: int = 0) -> torch.Tensor:
        end = start_index + x.shape[1]
        if end > self.max_len:
            raise ValueError(f"Layer '{self.display_name}' ({type(self).__name__}) encodes positions below "
                             f"max_len={self.max_len}. Received: {x.shape[1]} steps from start_index={start_index}")
        return F.dropout(x + self.positions[start_index:end], self.dropout, self.training)

    def compute_mask(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor | None:
        return mask


class LearnedPositionalEmbedding(PositionalEncoding):
    """Adds a learned vector per position (BERT, GPT) to (N, T, D) inputs, then applies dropout.

    Args:
        max_len: number of positions learned.
        dropout: dropout rate on the sum.
        embeddings_initializer: initializer of the (max_len, D) table ``positions``.

    Call arguments: as :class:`PositionalEncoding`.
    """

    def __init__(self, max_len: int, dropout: float = 0.0, embeddings_initializer: Any = "glorot_uniform",
                 **kwargs):
        super().__init__(max_len=max_len, dropout=dropout, **kwargs)
        self.embeddings_initializer = embeddings_initializer

    def build(self, input_shape):
        _check_sequence_input(self, input_shape)
        self.positions = self.new_parameter((self.max_len, input_shape[-1]), self.embeddings_initializer)


class TransformerEncoderLayer(Layer):
    """Self-attention and a position-wise feed-forward network, each with residual and LayerNorm.

    Args:
        num_heads: attention heads; d_model (the inputs' last axis) must be divisible by it.
        intermediate_dim: hidden size of the feed-forward network (default 4 * d_model).
        dropout: dropout on the attention weights, inside the feed-forward network and on each
            sublayer's output.
        activation: of the feed-forward network, a name ("relu", "gelu") or a callable.
        norm_first: pre-norm if True, post-norm (the paper's) if False.
        layer_norm_epsilon: LayerNorm's epsilon.
        use_causal_mask: self-attention sees no later step (a GPT block).
        kernel_initializer: initializer of the attention and feed-forward weights (biases are zero).

    Call arguments:
        x: (N, T, d_model). Returns (N, T, d_model).
        mask: bool (N, T) padding mask, True = real token.
        attention_mask: bool (N, T, T) or (T, T), True = may attend.
    """

    def __init__(self, num_heads: int, intermediate_dim: int | None = None, dropout: float = 0.1,
                 activation: Any = "relu", norm_first: bool = False, layer_norm_epsilon: float = 1e-5,
                 use_causal_mask: bool = False, kernel_initializer: Any = "glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        kind = type(self).__name__
        for argument, value in (("num_heads", num_heads), ("intermediate_dim", intermediate_dim or 1)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{kind} expects {argument} to be a positive integer. Received: {argument}={value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{kind} expects dropout in [0, 1). Received: dropout={dropout}")
        self.num_heads, self.intermediate_dim, self.dropout = num_heads, intermediate_dim, float(dropout)
        self.activation = activations.get(activation)
        self.norm_first, self.layer_norm_epsilon = norm_first, layer_norm_epsilon
        self.use_causal_mask, self.kernel_initializer = use_causal_mask, kernel_initializer

    def build(self, input_shape):
        _check_sequence_input(self, input_shape)
        model_dim = input_shape[-1]
        if model_dim % self.num_heads:
            raise ValueError(f"Layer '{self.display_name}' ({type(self).__name__}) expects d_model (the inputs' last "
                             f"axis) divisible by num_heads. Received: d_model={model_dim}, num_heads={self.num_heads}")
        self.self_attention = self._attention(model_dim, self.use_causal_mask)
        self.self_attention_norm = self._norm(model_dim)
        hidden = self.intermediate_dim or 4 * model_dim
        self.feedforward_in = self._dense(model_dim, hidden)
        self.feedforward_out = self._dense(hidden, model_dim)
        self.feedforward_norm = self._norm(model_dim)

    def _attention(self, model_dim, causal):
        return MultiHeadAttention(self.num_heads, model_dim // self.num_heads, dropout=self.dropout,
                                  use_causal_mask=causal, kernel_initializer=self.kernel_initializer)

    def _norm(self, model_dim):
        return nn.LayerNorm(model_dim, eps=self.layer_norm_epsilon, device=self._device, dtype=self._dtype)

    def _dense(self, in_features, out_features):
        dense = nn.Linear(in_features, out_features, device=self._device, dtype=self._dtype)
        initializers.get(self.kernel_initializer)(dense.weight)
        nn.init.zeros_(dense.bias)
        return dense

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self._residual(x, self.self_attention_norm, self.self_attention, mask=mask, attention_mask=attention_mask)
        return self._residual(x, self.feedforward_norm, self._feedforward)

    def _residual(self, x, norm, sublayer, *args, **kwargs):
        if self.norm_first:
            return x + F.dropout(sublayer(norm(x), *args, **kwargs), self.dropout, self.training)
        return norm(x + F.dropout(sublayer(x, *args, **kwargs), self.dropout, self.training))

    def _feedforward(self, x):
        hidden = F.dropout(self.activation(self.feedforward_in(x)), self.dropout, self.training)  # (N, T, hidden)
        return self.feedforward_out(hidden)

    def compute_mask(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor | None:
        return mask


class TransformerDecoderLayer(TransformerEncoderLayer):
    """Causal self-attention, cross-attention to the encoder's output, and a feed-forward network.

    Args: as :class:`TransformerEncoderLayer`, with ``use_causal_mask=True`` by default.

    Call arguments:
        x: (N, T, d_model) target sequence. Returns (N, T, d_model).
        memory: (N, S, D_memory) encoder output; None skips cross-attention (a decoder-only model).
        mask: bool (N, T) target padding mask (with ``cache``: over cached and new steps).
        memory_mask: bool (N, S) source padding mask.
        attention_mask: bool (N, T, T) or (T, T) extra self-attention mask.
        cache: a dict kept across decoding steps; then ``x`` holds only the new steps.
    """

    def __init__(self, num_heads: int, intermediate_dim: int | None = None, use_causal_mask: bool = True, **kwargs):
        super().__init__(num_heads, intermediate_dim, use_causal_mask=use_causal_mask, **kwargs)

    def build(self, input_shape):
        super().build(input_shape)
        self.cross_attention = self._attention(input_shape[-1], False)
        self.cross_attention_norm = self._norm(input_shape[-1])

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                cache: dict | None = None) -> torch.Tensor:
        x = self._residual(x, self.self_attention_norm, self.self_attention, mask=mask, attention_mask=attention_mask,
                           cache=None if cache is None else cache.setdefault("self_attention", {}))
        if memory is not None:
            x = self._residual(x, self.cross_attention_norm, self.cross_attention, memory, mask=memory_mask)
        return self._residual(x, self.feedforward_norm, self._feedforward)


class TransformerEncoder(Layer):
    """A stack of ``num_layers`` :class:`TransformerEncoderLayer`; with pre-norm a final LayerNorm.

    Args:
        num_layers: number of layers.
        Others: as :class:`TransformerEncoderLayer`.

    Call arguments: as :class:`TransformerEncoderLayer`.

    Example:
        >>> import torch
        >>> TransformerEncoder(2, num_heads=2, dropout=0.0)(torch.randn(3, 5, 8)).shape
        torch.Size([3, 5, 8])
    """

    block: type[TransformerEncoderLayer] = TransformerEncoderLayer

    def __init__(self, num_layers: int, num_heads: int, intermediate_dim: int | None = None, dropout: float = 0.1,
                 activation: Any = "relu", norm_first: bool = False, layer_norm_epsilon: float = 1e-5,
                 use_causal_mask: bool = False, kernel_initializer: Any = "glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"{type(self).__name__} expects num_layers to be a positive integer. "
                             f"Received: num_layers={num_layers!r}")
        self.norm_first, self.layer_norm_epsilon = norm_first, layer_norm_epsilon
        self.layers = nn.ModuleList(
            self.block(num_heads, intermediate_dim, dropout=dropout, activation=activation, norm_first=norm_first,
                       layer_norm_epsilon=layer_norm_epsilon, use_causal_mask=use_causal_mask,
                       kernel_initializer=kernel_initializer, name=f"{self.display_name}_layer_{i}")
            for i in range(num_layers))

    def build(self, input_shape):
        _check_sequence_input(self, input_shape)
        self.final_norm = nn.LayerNorm(input_shape[-1], eps=self.layer_norm_epsilon, device=self._device,
                                       dtype=self._dtype) if self.norm_first else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask=mask, attention_mask=attention_mask)
        return x if self.final_norm is None else self.final_norm(x)

    def compute_mask(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor | None:
        return mask


class TransformerDecoder(TransformerEncoder):
    """A stack of ``num_layers`` :class:`TransformerDecoderLayer`; with pre-norm a final LayerNorm.

    Args: as :class:`TransformerEncoder`, with ``use_causal_mask=True`` by default.

    Call arguments: as :class:`TransformerDecoderLayer`; ``cache`` is one dict for the whole stack.

    Example (incremental decoding equals decoding the whole sequence):
        >>> import torch
        >>> decoder = TransformerDecoder(2, num_heads=2, dropout=0.0).eval()
        >>> target, memory = torch.randn(1, 4, 8), torch.randn(1, 6, 8)
        >>> full = decoder(target, memory)
        >>> cache = {}
        >>> steps = [decoder(target[:, t:t + 1], memory, cache=cache) for t in range(4)]
        >>> torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)
        True
    """

    block = TransformerDecoderLayer

    def __init__(self, num_layers: int, num_heads: int, intermediate_dim: int | None = None,
                 use_causal_mask: bool = True, **kwargs):
        super().__init__(num_layers, num_heads, intermediate_dim, use_causal_mask=use_causal_mask, **kwargs)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                cache: dict | None = None) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            x = layer(x, memory, mask=mask, memory_mask=memory_mask, attention_mask=attention_mask,
                      cache=None if cache is None else cache.setdefault(index, {}))
        return x if self.final_norm is None else self.final_norm(x)


def _check_sequence_input(layer: Layer, input_shape) -> None:
    if len(input_shape) != 3:
        raise ValueError(f"Layer '{layer.display_name}' ({type(layer).__name__}) expects inputs of shape "
                         f"(batch, steps, features). Received shape: {tuple(input_shape)}")
