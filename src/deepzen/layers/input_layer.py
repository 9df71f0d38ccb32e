"""InputLayer: Keras's explicit input layer for Sequential models (the layer behind ``Input``).

Example:
    >>> import torch
    >>> from deepzen.models import Sequential
    >>> from deepzen.layers.core import Dense
    >>> model = Sequential([InputLayer(shape=(4,)), Dense(2)])
    >>> model(torch.zeros(3, 4)).shape
    torch.Size([3, 2])
"""

from __future__ import annotations

from typing import Any

import torch

from deepzen.layers.base import Layer

_INTEGER_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "bool")


class InputLayer(Layer):
    """Declares the per-sample input shape (and dtype) of a model; passes its input through.

    Args:
        shape: per-sample shape, without the batch axis (Keras 2's ``input_shape`` is accepted too).
        batch_size: optional fixed batch size.
        dtype: the input's dtype name, e.g. ``"int64"`` for token ids (then the model keeps its inputs
            as integers, as for an Embedding).
        batch_shape: ``(batch_size, *shape)`` in one tuple, instead of ``shape`` and ``batch_size``.
    """

    def __init__(self, shape: Any = None, batch_size: int | None = None, dtype: Any = None,
                 batch_shape: Any = None, **kwargs):
        if batch_shape is not None:
            if shape is not None:
                raise ValueError(f"InputLayer expects shape or batch_shape, not both. "
                                 f"Received: shape={shape}, batch_shape={batch_shape}")
            batch_size, shape = batch_shape[0], tuple(batch_shape[1:])
        if shape is not None:
            if kwargs.get("input_shape") is not None:
                raise ValueError(f"InputLayer expects shape or input_shape, not both. "
                                 f"Received: shape={shape}, input_shape={kwargs['input_shape']}")
            kwargs["input_shape"] = tuple(shape)
        super().__init__(**kwargs)
        self.batch_size = batch_size
        self.dtype = None if dtype is None else str(dtype).replace("torch.", "")
        self._init_arguments["dtype"] = self.dtype  # a name, also when given a torch.dtype
        self.takes_integer_inputs = self.dtype in _INTEGER_DTYPES

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
