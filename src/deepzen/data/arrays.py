"""Batching of in-memory data: moved to the device once, batched by index on the device.

No ``DataLoader`` and no per-sample ``__getitem__``: one epoch is a device permutation and one
gather per batch. Inputs may be a tensor/array or a (nested) tuple, list or dict of them.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator

import numpy as np
import torch


def map_structure(fn: Callable[[Any], Any], data: Any) -> Any:
    """Applies ``fn`` to every leaf of a nested tuple/list/dict."""
    if isinstance(data, dict):
        return {key: map_structure(fn, value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(map_structure(fn, value) for value in data)
    return fn(data)


def leaves(data: Any) -> list[Any]:
    if isinstance(data, dict):
        return [leaf for value in data.values() for leaf in leaves(value)]
    if isinstance(data, (list, tuple)):
        return [leaf for value in data for leaf in leaves(value)]
    return [data]


def to_tensor(value: Any, device: torch.device | str | None = None, *, float_dtype: torch.dtype = torch.float32,
              integers_as_float: bool = False) -> torch.Tensor:
    """Array-like -> tensor on ``device``: floats become ``float_dtype``, integers int64 (or float).

    Args:
        integers_as_float: cast integer arrays to ``float_dtype`` (a Dense network given an integer
            array like XOR's ``[[0, 1]]``); otherwise they stay int64 (class ids, token ids).
    """
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    if tensor.is_floating_point():
        tensor = tensor.to(float_dtype)
    elif tensor.dtype == torch.bool:
        tensor = tensor.to(float_dtype)
    elif integers_as_float:
        tensor = tensor.to(float_dtype)
    elif tensor.dtype != torch.int64:
        tensor = tensor.long()
    return tensor.to(device) if device is not None else tensor


def num_samples(data: Any, what: str = "x") -> int:
    sizes = {int(leaf.shape[0]) if hasattr(leaf, "shape") and len(leaf.shape) else len(leaf) for leaf in leaves(data)}
    if len(sizes) != 1:
        raise ValueError(f"All arrays in {what} must have the same number of samples. Received sizes: {sorted(sizes)}")
    return sizes.pop()


class ArrayData:
    """In-memory (x, y, sample_weight) moved to one device, yielding batches by index.

    Args:
        x: inputs, a tensor/array or nested tuple/list/dict of them; first axis = samples.
        y: targets in the same form, or None (prediction).
        sample_weight: (N,) per-sample loss weights, or None.
        device: where the data lives for training.
        integer_inputs_as_float: see :func:`to_tensor`.
        keep_input_dtypes: take the inputs' tensors as they are (only moved to ``device``): e.g. uint8
            pixels that the model's ``train_step`` scales batch by batch (4x less memory than floats).
        drop_remainder: leave out an incomplete last batch (Keras's ``Dataset.batch(drop_remainder=True)``;
            batch-norm GANs need full batches).
    """

    def __init__(self, x: Any, y: Any = None, sample_weight: Any = None, *, device=None,
                 integer_inputs_as_float: bool = True, keep_input_dtypes: bool = False,
                 drop_remainder: bool = False):
        n = num_samples(x, "x")
        if y is not None and num_samples(y, "y") != n:
            raise ValueError(f"x and y must have the same number of samples. Received: x has {n}, "
                             f"y has {num_samples(y, 'y')}")
        if sample_weight is not None and num_samples(sample_weight, "sample_weight") != n:
            raise ValueError(f"sample_weight must have one weight per sample ({n}). "
                             f"Received: {num_samples(sample_weight, 'sample_weight')}")
        self.n = n
        self.device = torch.device(device) if device is not None else None
        self.drop_remainder = drop_remainder
        if keep_input_dtypes:
            self.x = map_structure(lambda v: torch.as_tensor(v).to(self.device) if self.device is not None
                                   else torch.as_tensor(v), x)
        else:
            self.x = map_structure(lambda v: to_tensor(v, self.device, integers_as_float=integer_inputs_as_float), x)
        self.y = None if y is None else map_structure(lambda v: to_tensor(v, self.device), y)
        self.sample_weight = None if sample_weight is None else to_tensor(sample_weight, self.device).float()

    def __len__(self) -> int:
        return self.n

    def num_batches(self, batch_size: int) -> int:
        return self.n // batch_size if self.drop_remainder else math.ceil(self.n / batch_size)

    def _take(self, index) -> tuple[Any, Any, Any]:
        pick = (lambda t: t[index]) if isinstance(index, slice) else (lambda t: t.index_select(0, index))
        return (map_structure(pick, self.x), None if self.y is None else map_structure(pick, self.y),
                None if self.sample_weight is None else pick(self.sample_weight))

    def batches(self, batch_size: int, shuffle: bool = False,
                generator: torch.Generator | None = None) -> Iterator[tuple[Any, Any, Any]]:
        """Yields (x, y, sample_weight) batches; with ``shuffle`` a fresh device permutation per call."""
        end = self.num_batches(batch_size) * batch_size if self.drop_remainder else self.n
        if not shuffle:
            for start in range(0, end, batch_size):
                yield self._take(slice(start, start + batch_size))
            return
        order = torch.randperm(self.n, device=self.device if generator is None else generator.device,
                               generator=generator)
        if self.device is not None and order.device != self.device:
            order = order.to(self.device)
        for start in range(0, end, batch_size):
            yield self._take(order[start:start + batch_size])

    def split(self, fraction: float) -> tuple["ArrayData", "ArrayData"]:
        """(first 1-fraction, last fraction) of the samples, like Keras's ``validation_split``."""
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"validation_split must be in (0, 1). Received: validation_split={fraction}")
        cut = int(round(self.n * (1.0 - fraction)))
        if cut <= 0 or cut >= self.n:
            raise ValueError(f"validation_split={fraction} leaves no samples on one side of {self.n} samples")
        return self.subset(slice(0, cut)), self.subset(slice(cut, self.n))

    def subset(self, index) -> "ArrayData":
        part = ArrayData.__new__(ArrayData)
        part.device, part.drop_remainder = self.device, self.drop_remainder
        part.x, part.y, part.sample_weight = self._take(index)
        part.n = num_samples(part.x)
        return part
