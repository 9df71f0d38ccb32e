"""Attention layers: additive (Bahdanau), dot-product (Luong), scaled dot-product and multi-head.

Every layer is called like Keras's: ``attn(query, value, key=None, mask=...)`` with query (N, Tq, Dq)
and value (N, Tv, Dv); the key defaults to the value and the value to the query (self-attention).
Dot-product scores run on ``F.scaled_dot_product_attention`` (fused kernels); the attention
weights are computed explicitly only when ``return_attention_scores=True``.

Masks are bool with True = attend (Keras's convention; PyTorch's ``key_padding_mask`` is the
opposite):

- ``mask``: (N, Tv) padding mask of the keys/values. In a ``Sequential`` it is the mask of the
  previous layer, which for self-attention is the padding of the sequence.
- ``attention_mask``: (N, Tq, Tv) or (Tq, Tv) arbitrary mask.
- ``use_causal_mask``: query i attends to keys j <= i (aligned at the last step, so a query decoded
  against cached keys sees all of them). A constructor default, overridable per call.

A query whose keys are all masked gets zero attention weights (a zero context, as in
``F.scaled_dot_product_attention``), never NaN. Padded query positions are computed like the
others (not zeroed); later layers ignore them through the propagated mask.

Incremental decoding: pass the same dict as ``cache`` at every step; the projected keys and
values of earlier steps are kept in it, so each step only projects its new tokens.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from deepzen.layers.base import Layer
from deepzen.serializable import register_serializable


def causal_mask(query_steps: int, key_steps: int, device=None) -> torch.Tensor:
    """Bool (Tq, Tv): query i may attend to key j iff j <= i + (Tv - Tq) (last steps aligned)."""
    return torch.ones(query_steps, key_steps, dtype=torch.bool, device=device).tril(key_steps - query_steps)


def combine_masks(mask: torch.Tensor | None, attention_mask: torch.Tensor | None, causal: bool,
                  query_steps: int, key_steps: int, device=None) -> tuple[torch.Tensor | None, bool]:
    """One bool keep-mask broadcastable to (N, Tq, Tv), or None with ``is_causal=True`` (SDPA's fast path).

    Args:
        mask: (N, Tv) key padding mask, True = real key.
        attention_mask: (N, Tq, Tv) or (Tq, Tv), True = may attend.
        causal: add the causal mask.

    Returns:
        ``(keep, is_causal)``.
    """
    keep = None if mask is None else mask[:, None, :]  # (N, 1, Tv)
    if attention_mask is not None:
        keep = attention_mask if keep is None else keep & attention_mask
    if causal:
        if keep is None and query_steps == key_steps:
            return None, True
        triangle = causal_mask(query_steps, key_steps, device)
        keep = triangle if keep is None else keep & triangle
    return keep, False


def softmax_attention(scores: torch.Tensor, value: torch.Tensor, keep: torch.Tensor | None,
                      dropout: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``dropout(softmax(scores)) @ value`` with masked scores left out.

    Args:
        scores: (..., Tq, Tv) unnormalized scores.
        value: (..., Tv, Dv).
        keep: bool broadcastable to scores, True = attend (or None).
        dropout: dropout rate on the weights (0 outside training).

    Returns:
        output (..., Tq, Dv) and the weights before dropout (..., Tq, Tv); a row with no key left
        has zero weights, as in ``F.scaled_dot_product_attention``.
    """
    if keep is not None:
        scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=-1)
    if keep is not None:
        weights = weights.masked_fill(~keep, 0.0)
    return F.dropout(weights, dropout, training=dropout > 0) @ value, weights


def dot_product_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, keep: torch.Tensor | None,
                          is_causal: bool, scale: float | None, dropout: float,
                          return_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``softmax(scale * q k^T) v`` on (..., T, E) tensors; fused unless the weights are asked for.

    ``scale=None`` means 1 / sqrt(E). Returns output (..., Tq, Ev) and weights (..., Tq, Tv) or None.
    """
    if not return_weights:
        output = F.scaled_dot_product_attention(query, key, value, attn_mask=keep, dropout_p=dropout,
                                                is_causal=is_causal, scale=scale)
        return output, None
    if is_causal:
        keep = causal_mask(query.shape[-2], key.shape[-2], query.device)
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    return softmax_attention(query @ key.transpose(-2, -1) * scale, value, keep, dropout)  # scores (..., Tq, Tv)


class BaseAttention(Layer):
    """What the attention layers share: the call, masks, the cache and shape inference.

    Subclasses create weights in :meth:`build_attention` from the feature sizes and implement
    :meth:`project` (inputs -> the query, key and value they score) and :meth:`attend`.

    Args:
        dropout: dropout rate on the attention weights while training.
        use_causal_mask: default for the call argument of the same name.

    Call arguments:
        query: (N, Tq, Dq).
        value: (N, Tv, Dv); default: the query (self-attention).
        key: (N, Tv, Dk); default: the value.
        mask: bool (N, Tv), True = real key (with ``cache``: over cached and new keys).
        attention_mask: bool (N, Tq, Tv) or (Tq, Tv), True = may attend.
        use_causal_mask: mask keys after each query (None: the constructor's setting).
        return_attention_scores: also return the attention weights (N, [heads,] Tq, Tv).
        cache: a dict kept across decoding steps (see the module docstring).
    """

    def __init__(self, dropout: float = 0.0, use_causal_mask: bool = False, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{type(self).__name__} expects dropout in [0, 1). Received: dropout={dropout}")
        self.dropout, self.use_causal_mask = float(dropout), use_causal_mask
        self.value_shape: tuple[int, ...] | None = None
        self.key_shape: tuple[int, ...] | None = None
        # The base class builds from the first positional input (the query); this hook, run before
        # it on the first call only, records the value and key shapes the weights also depend on.
        self._shape_hook = self.register_forward_pre_hook(BaseAttention._record_shapes, prepend=True,
                                                          with_kwargs=True)

    def _record_shapes(self, args, kwargs):
        inputs = dict(zip(("query", "value", "key"), args))
        inputs.update((name, kwargs[name]) for name in ("value", "key") if name in kwargs)
        if inputs.get("value") is not None:
            self.value_shape = tuple(inputs["value"].shape)
        if inputs.get("key") is not None:
            self.key_shape = tuple(inputs["key"].shape)
        self._shape_hook.remove()

    def build(self, input_shape):
        value_shape = self.value_shape or tuple(input_shape)
        shapes = {"query": tuple(input_shape), "value": value_shape, "key": self.key_shape or value_shape}
        for role, shape in shapes.items():
            if len(shape) != 3:
                raise ValueError(f"Layer '{self.display_name}' ({type(self).__name__}) expects {role} of shape "
                                 f"(batch, steps, features). Received: {role} shape {shape}")
        if len({shape[0] for shape in shapes.values()}) > 1 or shapes["key"][1] != value_shape[1]:
            raise ValueError(f"Layer '{self.display_name}' ({type(self).__name__}) expects query, value and key "
                             f"with one batch size, and key and value with the same steps. Received: "
                             + ", ".join(f"{role} shape {shape}" for role, shape in shapes.items()))
        self.build_attention(shapes["query"][-1], value_shape[-1], shapes["key"][-1])

    def build_attention(self, query_dim: int, value_dim: int, key_dim: int) -> None:
        """Creates the weights for these feature sizes (none by default)."""

    def forward(self, query: torch.Tensor, value: torch.Tensor | None = None, key: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                use_causal_mask: bool | None = None, return_attention_scores: bool = False,
                cache: dict | None = None):
        value = query if value is None else value
        key = value if key is None else key
        query, key, value = self.project(query, key, value)
        if cache is not None:  # incremental decoding: keys and values of earlier steps come first
            if "key" in cache:
                key = torch.cat((cache["key"], key), dim=-2)
                value = torch.cat((cache["value"], value), dim=-2)
            cache["key"], cache["value"] = key, value
        causal = self.use_causal_mask if use_causal_mask is None else use_causal_mask
        keep, is_causal = combine_masks(mask, attention_mask, causal, query.shape[-2], key.shape[-2], query.device)
        output, weights = self.attend(query, key, value, keep, is_causal, return_attention_scores)
        return (output, weights) if return_attention_scores else output

    def project(self, query, key, value):
        """Maps the inputs to the tensors that are scored and averaged (identity by default)."""
        return query, key, value

    def attend(self, query, key, value, keep, is_causal, return_weights):
        """Returns the attended output and (when ``return_weights``) the weights."""
        raise NotImplementedError

    @property
    def dropout_rate(self) -> float:
        return self.dropout if self.training else 0.0

    def compute_mask(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """The mask passes through (in a Sequential this is self-attention: the query's padding)."""
        return mask


class AdditiveAttention(BaseAttention):
    """Bahdanau et al. (2015) attention: ``score(q_i, k_j) = v^T tanh(W q_i + U k_j)``.

    Args:
        units: size of the hidden layer of the score (default: the query's feature size).
        kernel_initializer: initializer of W, U and v.
        dropout / use_causal_mask: see :class:`BaseAttention`.

    Call arguments: see :class:`BaseAttention`. Returns (N, Tq, Dv).

    Weights: ``query_weight`` (units, Dq), ``key_weight`` (units, Dk), ``score_weight`` (units,).
    """

    def __init__(self, units: int | None = None, kernel_initializer: Any = "glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if units is not None and (not isinstance(units, int) or units < 1):
            raise ValueError(f"AdditiveAttention expects units to be a positive integer. Received: units={units!r}")
        self.units, self.kernel_initializer = units, kernel_initializer

    def build_attention(self, query_dim, value_dim, key_dim):
        units = self.units or query_dim
        self.query_weight = self.new_parameter((units, query_dim), self.kernel_initializer)
        self.key_weight = self.new_parameter((units, key_dim), self.kernel_initializer)
        self.score_weight = self.new_parameter((units,), self.kernel_initializer)

    def project(self, query, key, value):
        return F.linear(query, self.query_weight), F.linear(key, self.key_weight), value  # (N, T, units)

    def attend(self, query, key, value, keep, is_causal, return_weights):
        if is_causal:
            keep = causal_mask(query.shape[-2], key.shape[-2], query.device)
        hidden = torch.tanh(query.unsqueeze(-2) + key.unsqueeze(-3))  # (N, Tq, Tv, units)
        output, weights = softmax_attention(hidden @ self.score_weight, value, keep, self.dropout_rate)
        return output, weights


class Attention(BaseAttention):
    """Luong et al. (2015) multiplicative attention: ``score = q . k`` ("dot") or ``q^T W k`` ("general").

    Args:
        score_mode: "dot" or "general" (a learned W of shape (Dk, Dq) maps the query to key space).
        use_scale: multiply the scores by a learned scalar (initialized to 1), as Keras's ``use_scale``.
        kernel_initializer: initializer of W.
        dropout / use_causal_mask: see :class:`BaseAttention`.

    Call arguments: see :class:`BaseAttention`. Returns (N, Tq, Dv).

    Example:
        >>> import torch
        >>> query, value = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
        >>> Attention()(query, value).shape
        torch.Size([2, 3, 4])
    """

    fixed_scale: float | None = 1.0  # the scores' factor before any learned scale; None: 1 / sqrt(Dk)

    def __init__(self, score_mode: str = "dot", use_scale: bool = False, kernel_initializer: Any = "glorot_uniform",
                 **kwargs):
        super().__init__(**kwargs)
        if score_mode not in ("dot", "general"):
            raise ValueError(f"{type(self).__name__} expects score_mode 'dot' or 'general'. "
                             f"Received: score_mode={score_mode!r}")
        self.score_mode, self.use_scale, self.kernel_initializer = score_mode, use_scale, kernel_initializer

    def build_attention(self, query_dim, value_dim, key_dim):
        if self.score_mode == "dot" and query_dim != key_dim:
            raise ValueError(f"Layer '{self.display_name}' ({type(self).__name__}) with score_mode='dot' expects "
                             f"query and key of one feature size. Received: query features {query_dim}, key "
                             f"features {key_dim} (use score_mode='general' to learn a map between them)")
        general = self.score_mode == "general"
        self.weight = self.new_parameter((key_dim, query_dim), self.kernel_initializer) if general else None
        self.scale = self.new_parameter((), "ones") if self.use_scale else None

    def project(self, query, key, value):
        if self.weight is not None:
            query = F.linear(query, self.weight)  # (N, Tq, Dk)
        if self.scale is not None:
            query = query * self.scale
        return query, key, value

    def attend(self, query, key, value, keep, is_causal, return_weights):
        return dot_product_attention(query, key, value, keep, is_causal, self.fixed_scale, self.dropout_rate,
                                     return_weights)


LuongAttention = Attention
register_serializable(Attention, name="LuongAttention")


class ScaledDotProductAttention(Attention):
    """Vaswani et al. (2017): ``softmax(q k^T / sqrt(d_k)) v``, no weights.

    Args:
        dropout / use_causal_mask: see :class:`BaseAttention`.

    Call arguments: see :class:`BaseAttention`. Returns (N, Tq, Dv).
    """

    fixed_scale = None

    def __init__(self, dropout: float = 0.0, use_causal_mask: bool = False, **kwargs):
        super().__init__(dropout=dropout, use_causal_mask=use_causal_mask, **kwargs)


class MultiHeadAttention(BaseAttention):
    """Multi-head attention (Vaswani et al. 2017), Keras's interface on ``F.scaled_dot_product_attention``.

    ``concat_h(softmax(Q_h K_h^T / sqrt(key_dim)) V_h) W_o`` with per-head projections Q_h = q W_q,h, ...

    Args:
        num_heads: number of heads H.
        key_dim: size of each head's query and key.
        value_dim: size of each head's value (default ``key_dim``).
        dropout: dropout rate on the attention weights while training.
        use_bias: biases in the four projections.
        use_causal_mask: default for the call argument.
        kernel_initializer / bias_initializer: initializers of the projections.

    Call arguments: see :class:`BaseAttention`. Returns (N, Tq, Dq), and with
    ``return_attention_scores`` the weights (N, H, Tq, Tv).

    Weights (PyTorch layout): ``query_weight`` (H * key_dim, Dq), ``key_weight`` (H * key_dim, Dk),
    ``value_weight`` (H * value_dim, Dv), ``output_weight`` (Dq, H * value_dim) and the biases.
    With ``key_dim = Dq / H`` the layer computes what ``nn.MultiheadAttention`` does.

    Example:
        >>> import torch
        >>> x = torch.randn(2, 5, 16)
        >>> MultiHeadAttention(num_heads=4, key_dim=4)(x, x).shape
        torch.Size([2, 5, 16])
    """

    def __init__(self, num_heads: int, key_dim: int, value_dim: int | None = None, dropout: float = 0.0,
                 use_bias: bool = True, use_causal_mask: bool = False, kernel_initializer: Any = "glorot_uniform",
                 bias_initializer: Any = "zeros", **kwargs):
        super().__init__(dropout=dropout, use_causal_mask=use_causal_mask, **kwargs)
        for argument, value in (("num_heads", num_heads), ("key_dim", key_dim), ("value_dim", value_dim or key_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"MultiHeadAttention expects {argument} to be a positive integer. "
                                 f"Received: {argument}={value!r}")
        self.num_heads, self.key_dim, self.value_dim = num_heads, key_dim, value_dim or key_dim
        self.use_bias, self.kernel_initializer, self.bias_initializer = use_bias, kernel_initializer, bias_initializer

    def build_attention(self, query_dim, value_dim, key_dim):
        heads = self.num_heads
        for role, out_features, in_features in (("query", heads * self.key_dim, query_dim),
                                                ("key", heads * self.key_dim, key_dim),
                                                ("value", heads * self.value_dim, value_dim),
                                                ("output", query_dim, heads * self.value_dim)):
            setattr(self, f"{role}_weight", self.new_parameter((out_features, in_features), self.kernel_initializer))
            setattr(self, f"{role}_bias",
                    self.new_parameter((out_features,), self.bias_initializer) if self.use_bias else None)

    def project(self, query, key, value):
        return (self._split_heads(F.linear(query, self.query_weight, self.query_bias)),
                self._split_heads(F.linear(key, self.key_weight, self.key_bias)),
                self._split_heads(F.linear(value, self.value_weight, self.value_bias)))

    def _split_heads(self, x):
        batch, steps, _ = x.shape
        return x.view(batch, steps, self.num_heads, -1).transpose(1, 2)  # (N, T, H * E) -> (N, H, T, E)

    def attend(self, query, key, value, keep, is_causal, return_weights):
        keep = None if keep is None else keep.unsqueeze(-3)  # a head axis: (N, 1, Tq, Tv)
        output, weights = dot_product_attention(query, key, value, keep, is_causal, None, self.dropout_rate,
                                                return_weights)  # (N, H, Tq, value_dim)
        output = output.transpose(1, 2).flatten(2)  # (N, Tq, H * value_dim)
        return F.linear(output, self.output_weight, self.output_bias), weights
