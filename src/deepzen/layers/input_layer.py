"""``Input`` and ``InputLayer``: a model's inputs (Keras's ``keras.Input`` and ``keras.layers.InputLayer``).

``Input(shape)`` returns a symbolic tensor for the Functional API (``Model(inputs, outputs)``); put into a
``Sequential`` it declares the input shape, as in Keras.

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
from deepzen.layers.symbolic import Node, SymbolicTensor
from deepzen.serializable import register_serializable

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
            if not isinstance(shape, (tuple, list)):
                raise ValueError(f"InputLayer expects shape as a tuple of axis sizes, without the batch axis, e.g. "
                                 f"shape=({shape!r},). Received: shape={shape!r}")
            if kwargs.get("input_shape") is not None:
                raise ValueError(f"InputLayer expects shape or input_shape, not both. "
                                 f"Received: shape={shape}, input_shape={kwargs['input_shape']}")
            kwargs["input_shape"] = tuple(shape)
        super().__init__(**kwargs)
        self.batch_size = batch_size
        self.dtype = None if dtype is None else str(dtype).replace("torch.", "")
        self._init_arguments["dtype"] = self.dtype  # a name, also when given a torch.dtype
        self.takes_integer_inputs = self.dtype in _INTEGER_DTYPES
        if self.input_shape is not None:  # the symbolic tensor Input() returns
            dtype = getattr(torch, self.dtype) if self.dtype is not None else torch.get_default_dtype()
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"InputLayer expects a dtype name such as 'float32' or 'int64'. "
                                 f"Received: dtype={dtype!r}")
            node = Node(self, (), {}, [])
            node.outputs = SymbolicTensor((batch_size, *self.input_shape), dtype, node, 0)
            self.__dict__["output"] = node.outputs

    def adopt_integer_ids(self) -> None:
        """An Input given no dtype that feeds an Embedding holds token ids: it becomes int64 (Keras's
        Embedding casts its inputs to integers; deepzen keeps the ids integers from the start)."""
        if self._init_arguments.get("dtype") is None and "output" in self.__dict__:
            self.dtype = self._init_arguments["dtype"] = "int64"
            self.takes_integer_inputs = True
            self.output.dtype = torch.int64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


# Files saved before Input returned a symbolic tensor name an "Input" layer in Sequential configs.
register_serializable(name="Input")(InputLayer)


def Input(shape: Any = None, batch_size: int | None = None, dtype: Any = None, name: str | None = None,
          batch_shape: Any = None) -> SymbolicTensor:
    """A model input: a symbolic tensor of per-sample ``shape`` for the Functional API (Keras's ``keras.Input``).

    Args:
        shape: per-sample shape, without the batch axis; ``None`` leaves an axis open (e.g. ``(None,)`` for
            sequences of any length).
        batch_size: optional fixed batch size.
        dtype: e.g. ``"int64"`` for token ids (default: float32).
        name: the input's name; a dict of arrays given to ``fit``/``predict`` is matched to inputs by name.
        batch_shape: ``(batch_size, *shape)`` in one tuple.

    Example:
        >>> from deepzen.layers import Dense
        >>> from deepzen.models import Model
        >>> inputs = Input((4,))
        >>> model = Model(inputs, Dense(2)(inputs))
        >>> model.output_shape
        (None, 2)
    """
    if shape is None and batch_shape is None:
        raise ValueError("Input expects a shape, e.g. Input((784,)) or Input(shape=(None,), dtype='int64'). "
                         "Received: shape=None")
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, batch_shape=batch_shape, name=name).output
