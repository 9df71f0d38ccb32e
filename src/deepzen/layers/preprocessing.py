"""Numeric preprocessing layers: Rescaling, Normalization (with ``adapt``) and CategoryEncoding.

They run inside the model, so a saved model takes raw inputs: ``Rescaling(1 / 255)`` for pixel
values, ``Normalization`` whose mean and variance :meth:`Normalization.adapt` learned from the
training data (stored as buffers, so they are saved with the weights), ``CategoryEncoding`` for
integer categories. Semantics and defaults are Keras 3's.

Example:
    >>> import torch
    >>> layer = Normalization()
    >>> layer.adapt(torch.tensor([[1.0, 10.0], [3.0, 30.0]]))
    >>> layer(torch.tensor([[2.0, 20.0], [3.0, 30.0]]))
    tensor([[0., 0.],
            [1., 1.]])
    >>> CategoryEncoding(num_tokens=4, output_mode="multi_hot")(torch.tensor([[0, 1], [1, 3]]))
    tensor([[1., 1., 0., 0.],
            [0., 1., 0., 1.]])
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from deepzen.layers.base import Layer, shape_str

EPSILON = 1e-7  # Keras's backend.epsilon(): the smallest standard deviation divided by


class Rescaling(Layer):
    """``x * scale + offset`` (e.g. ``Rescaling(1 / 255)`` maps pixels to [0, 1], ``Rescaling(1 / 127.5, -1)``
    to [-1, 1]). Integer inputs become floating point.

    Args:
        scale: the factor (a number, or a sequence broadcast against the input).
        offset: added after scaling (default 0).
    """

    def __init__(self, scale: float | Sequence[float], offset: float | Sequence[float] = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset = scale, offset

    def build(self, input_shape):
        self.register_buffer("_scale", torch.as_tensor(self.scale, dtype=self._dtype, device=self._device),
                             persistent=False)
        self.register_buffer("_offset", torch.as_tensor(self.offset, dtype=self._dtype, device=self._device),
                             persistent=False)

    def forward(self, x):
        if not x.is_floating_point():
            x = x.to(self._scale.dtype)
        return x * self._scale + self._offset


def _as_tensor(data: Any) -> torch.Tensor:
    if isinstance(data, torch.Tensor):
        return data.detach()
    array = np.asarray(data)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"Normalization.adapt expects numeric data (an array, tensor or iterable of batches). "
                        f"Received: dtype={array.dtype}")
    return torch.from_numpy(array)


class Normalization(Layer):
    """Shifts and scales each feature to mean 0 and variance 1: ``(x - mean) / max(sqrt(variance), 1e-7)``.

    The statistics come from :meth:`adapt` on the training data, or are given as ``mean``/``variance``.

    Args:
        axis: the axis (or axes) that keep separate statistics — the feature axis, -1 by default. Every
            other axis is averaged over. ``None``: one mean and variance for all values.
        mean, variance: known statistics (numbers or arrays broadcastable to the kept axes); give both
            or neither.
        invert: apply the inverse, ``mean + x * sqrt(variance)`` (e.g. to un-normalize predictions).

    Call arguments:
        x: any shape whose kept axes match the statistics. Returns the same shape, floating point.

    Buffers: ``mean`` and ``variance`` in the input's rank (size 1 on averaged axes), saved with the weights.
    """

    def __init__(self, axis: int | Sequence[int] | None = -1, mean: Any = None, variance: Any = None,
                 invert: bool = False, **kwargs):
        super().__init__(**kwargs)
        if (mean is None) != (variance is None):
            raise ValueError(f"Normalization expects both mean and variance, or neither. "
                             f"Received: mean={mean!r}, variance={variance!r}")
        self.axis = None if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)
        self.given_mean, self.given_variance, self.invert = mean, variance, bool(invert)
        self.adapted = False

    def _kept_axes(self, rank: int) -> tuple[int, ...]:
        if self.axis is None:
            return ()
        if any(not -rank <= a < rank for a in self.axis):
            raise ValueError(f"Layer '{self.display_name}' (Normalization) has axis={self.axis} but its inputs "
                             f"have {rank} axes")
        return tuple(sorted(a % rank for a in self.axis))

    def _statistics_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        kept = self._kept_axes(len(shape))
        return tuple(size if axis in kept else 1 for axis, size in enumerate(shape))

    def _store(self, mean: torch.Tensor, variance: torch.Tensor) -> None:
        for name, value in (("mean", mean), ("variance", variance)):
            if name in self._buffers:
                self._buffers[name] = value
            else:
                self.register_buffer(name, value)

    def build(self, input_shape):
        shape = self._statistics_shape(input_shape)
        if self.adapted:
            if tuple(self.mean.shape) != shape:
                raise ValueError(f"Layer '{self.display_name}' (Normalization) was adapted to statistics of shape "
                                 f"{tuple(self.mean.shape)}, which do not fit "
                                 f"input_shape={shape_str((None, *input_shape[1:]))}")
            return
        if self.given_mean is not None:
            mean = torch.as_tensor(self.given_mean, dtype=self._dtype, device=self._device)
            variance = torch.as_tensor(self.given_variance, dtype=self._dtype, device=self._device)
            kept = self._kept_axes(len(input_shape))
            sizes = tuple(input_shape[a] for a in kept)
            self._store(mean.expand(sizes).reshape(shape).clone(), variance.expand(sizes).reshape(shape).clone())
        else:  # statistics to come from load_state_dict (a saved model) or adapt
            self._store(torch.zeros(shape, dtype=self._dtype, device=self._device),
                        torch.ones(shape, dtype=self._dtype, device=self._device))

    def adapt(self, data: Any, batch_size: int | None = None, steps: int | None = None) -> None:
        """Computes the mean and (population) variance of ``data`` over every axis but the kept ones.

        Args:
            data: an array or tensor ``(N, ...)``, or an iterable of such batches (e.g. a DataLoader
                yielding inputs, or ``(inputs, targets)`` pairs whose inputs are used).
            batch_size: with an array, summed in chunks of this many samples (memory only).
            steps: with an iterable, use at most this many batches.
        """
        if isinstance(data, (torch.Tensor, np.ndarray, list, tuple)):
            tensor = _as_tensor(data)
            size = batch_size or max(len(tensor), 1)
            batches: Iterable = (tensor[i:i + size] for i in range(0, len(tensor), size))
        else:
            batches = data
        count, total, total_sq, shape = 0, None, None, None
        for step, batch in enumerate(batches):
            if steps is not None and step >= steps:
                break
            if isinstance(batch, (tuple, list)) and not isinstance(data, (list, tuple)):
                batch = batch[0]  # (inputs, targets)
            batch = _as_tensor(batch).to(torch.float64)  # exact sums for large data
            shape = self._statistics_shape(batch.shape) if shape is None else shape
            kept = self._kept_axes(batch.dim())
            reduce = tuple(a for a in range(batch.dim()) if a not in kept)
            count += batch.numel() // max(int(np.prod([batch.shape[a] for a in kept])), 1)
            s, s2 = batch.sum(reduce, keepdim=True), batch.square().sum(reduce, keepdim=True)
            total, total_sq = (s, s2) if total is None else (total + s, total_sq + s2)
        if total is None:
            raise ValueError(f"Layer '{self.display_name}' (Normalization).adapt received no data")
        mean = total / count
        variance = (total_sq / count - mean.square()).clamp(min=0)
        device = getattr(self, "_device", None) or torch.device("cpu")
        dtype = getattr(self, "_dtype", None) or torch.get_default_dtype()
        self._store(mean.to(device, dtype).reshape(shape), variance.to(device, dtype).reshape(shape))
        self.adapted = True

    def forward(self, x):
        if not x.is_floating_point():
            x = x.to(self.mean.dtype)
        std = self.variance.sqrt().clamp(min=EPSILON)
        return self.mean + x * std if self.invert else (x - self.mean) / std


_OUTPUT_MODES = ("one_hot", "multi_hot", "count")


class CategoryEncoding(Layer):
    """Encodes integer categories in ``[0, num_tokens)`` as one-hot, multi-hot or count vectors.

    Args:
        num_tokens: the number of categories.
        output_mode: ``"multi_hot"`` (default: each sample — the last axis — becomes a 0/1 vector of
            the categories present), ``"count"`` (how often each occurs; weighted by ``count_weights``),
            or ``"one_hot"`` (each value its own vector: a last axis of size 1 is replaced, otherwise a
            new one is appended).

    Call arguments:
        ids: integer tensor, e.g. ``(N,)`` or ``(N, k)``. count_weights: same shape, for ``"count"``.
        Returns float ``(*ids.shape[:-1], num_tokens)`` (``"one_hot"``: see above).
    """

    takes_integer_inputs = True

    def __init__(self, num_tokens: int, output_mode: str = "multi_hot", sparse: bool = False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 1:
            raise ValueError(f"CategoryEncoding expects num_tokens to be a positive integer. "
                             f"Received: num_tokens={num_tokens!r}")
        if output_mode not in _OUTPUT_MODES:
            raise ValueError(f"CategoryEncoding expects output_mode to be one of {_OUTPUT_MODES}. "
                             f"Received: output_mode={output_mode!r}")
        if sparse:
            raise ValueError("CategoryEncoding: sparse=True is not supported (outputs are dense tensors)")
        self.num_tokens, self.output_mode, self.sparse = num_tokens, output_mode, sparse

    def build_for(self, x: torch.Tensor) -> None:
        if not self.built:
            if x.is_floating_point() and not torch.equal(x, x.round()):
                raise TypeError(f"Layer '{self.display_name}' (CategoryEncoding) expects integer categories. "
                                f"Received: dtype={x.dtype}")
            if x.numel() and (x.min() < 0 or x.max() >= self.num_tokens):  # host sync: first call only
                raise ValueError(f"Layer '{self.display_name}' (CategoryEncoding) expects values in "
                                 f"[0, num_tokens={self.num_tokens}). Received: min={int(x.min())}, "
                                 f"max={int(x.max())}")
        super().build_for(x)

    def forward(self, ids, count_weights=None):
        ids = ids.long()
        if ids.dim() == 0:
            ids = ids.unsqueeze(-1)
        if self.output_mode == "one_hot" and ids.shape[-1] != 1:
            ids = ids.unsqueeze(-1)
        dtype = count_weights.dtype if count_weights is not None else torch.get_default_dtype()
        out = torch.zeros(*ids.shape[:-1], self.num_tokens, dtype=dtype, device=ids.device)
        if self.output_mode == "count":
            weights = torch.ones_like(ids, dtype=dtype) if count_weights is None else count_weights.to(dtype)
            return out.scatter_add_(-1, ids, weights.reshape(ids.shape))
        return out.scatter_(-1, ids, 1.0)  # one_hot / multi_hot
