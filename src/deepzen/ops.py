"""Keras's ``keras.ops`` on torch tensors: the everyday NumPy-style operations, with Keras's names and arguments.

Code written against Keras 3 (``ops.matmul``, ``ops.zeros``, ``ops.stack(xs, axis=1)``) runs with only the import
changed. Each function is a thin, direct mapping to torch: it takes tensors, NumPy arrays or Python numbers
(converted with :func:`convert_to_tensor`) and returns a ``torch.Tensor`` that autograd follows. Inside a graph
under construction (symbolic tensors from ``deepzen.Input``) use layers, or wrap the computation in
``deepzen.layers.Lambda``.

Example:
    >>> from deepzen import ops
    >>> x = ops.ones((2, 3))
    >>> ops.matmul(x, ops.transpose(x)).tolist()
    [[3.0, 3.0], [3.0, 3.0]]
    >>> ops.stack([ops.zeros((2,)), ops.ones((2,))], axis=1).shape
    torch.Size([2, 2])
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64,
           "int8": torch.int8, "int16": torch.int16, "int32": torch.int32, "int64": torch.int64,
           "uint8": torch.uint8, "bool": torch.bool}


def standardize_dtype(dtype: Any) -> torch.dtype | None:
    """``"float32"``, ``np.float32``, ``torch.float32`` or None -> a torch dtype (or None)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in _DTYPES:
        raise ValueError(f"Unknown dtype. Expected one of {', '.join(_DTYPES)}. Received: dtype={dtype!r}")
    return _DTYPES[name]


def convert_to_tensor(x: Any, dtype: Any = None) -> torch.Tensor:
    """A tensor from a tensor, array, list or number (float64 NumPy data becomes float32, as in Keras)."""
    dtype = standardize_dtype(dtype)
    if isinstance(x, torch.Tensor):
        return x if dtype is None else x.to(dtype)
    array = np.asarray(x)
    if dtype is None and array.dtype == np.float64:
        dtype = torch.float32
    return torch.as_tensor(array, dtype=dtype)


def convert_to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _axes(axis: Any) -> Any:
    return tuple(axis) if isinstance(axis, list) else axis


# -- creation ------------------------------------------------------------------------------------------
def zeros(shape: Sequence[int], dtype: Any = None) -> torch.Tensor:
    return torch.zeros(tuple(shape), dtype=standardize_dtype(dtype))


def ones(shape: Sequence[int], dtype: Any = None) -> torch.Tensor:
    return torch.ones(tuple(shape), dtype=standardize_dtype(dtype))


def full(shape: Sequence[int], fill_value: float, dtype: Any = None) -> torch.Tensor:
    return torch.full(tuple(shape), fill_value, dtype=standardize_dtype(dtype))


def zeros_like(x: Any, dtype: Any = None) -> torch.Tensor:
    return torch.zeros_like(convert_to_tensor(x), dtype=standardize_dtype(dtype))


def ones_like(x: Any, dtype: Any = None) -> torch.Tensor:
    return torch.ones_like(convert_to_tensor(x), dtype=standardize_dtype(dtype))


def arange(start: float, stop: float | None = None, step: float = 1, dtype: Any = None) -> torch.Tensor:
    return torch.arange(start, stop, step, dtype=standardize_dtype(dtype)) if stop is not None else \
        torch.arange(start, dtype=standardize_dtype(dtype))


def eye(N: int, M: int | None = None, dtype: Any = None) -> torch.Tensor:  # noqa: N803 (Keras's names)
    return torch.eye(N, M if M is not None else N, dtype=standardize_dtype(dtype) or torch.float32)


def one_hot(x: Any, num_classes: int, axis: int = -1, dtype: Any = None) -> torch.Tensor:
    encoded = F.one_hot(convert_to_tensor(x).long(), num_classes).to(standardize_dtype(dtype) or torch.float32)
    return encoded if axis == -1 else torch.movedim(encoded, -1, axis)


# -- shapes ----------------------------------------------------------------------------------------------
def shape(x: Any) -> tuple[int, ...]:
    return tuple(convert_to_tensor(x).shape)


def cast(x: Any, dtype: Any) -> torch.Tensor:
    return convert_to_tensor(x).to(standardize_dtype(dtype))


def reshape(x: Any, newshape: Sequence[int]) -> torch.Tensor:
    return convert_to_tensor(x).reshape(tuple(newshape))


def transpose(x: Any, axes: Sequence[int] | None = None) -> torch.Tensor:
    x = convert_to_tensor(x)
    return x.permute(*reversed(range(x.dim()))) if axes is None else x.permute(*axes)


def expand_dims(x: Any, axis: int) -> torch.Tensor:
    return convert_to_tensor(x).unsqueeze(axis)


def squeeze(x: Any, axis: int | Sequence[int] | None = None) -> torch.Tensor:
    x = convert_to_tensor(x)
    return x.squeeze() if axis is None else x.squeeze(_axes(axis))


def concatenate(xs: Sequence[Any], axis: int = 0) -> torch.Tensor:
    return torch.cat([convert_to_tensor(x) for x in xs], dim=axis)


def stack(x: Sequence[Any], axis: int = 0) -> torch.Tensor:
    return torch.stack([convert_to_tensor(t) for t in x], dim=axis)


def split(x: Any, indices_or_sections: int | Sequence[int], axis: int = 0) -> list[torch.Tensor]:
    """NumPy's split: an int splits into that many equal parts; a list gives the indices to split at."""
    x = convert_to_tensor(x)
    if isinstance(indices_or_sections, int):
        if x.shape[axis] % indices_or_sections:
            raise ValueError(f"split: axis {axis} of size {x.shape[axis]} does not divide into "
                             f"{indices_or_sections} equal parts")
        return list(torch.tensor_split(x, indices_or_sections, dim=axis))
    return list(torch.tensor_split(x, list(indices_or_sections), dim=axis))


def tile(x: Any, repeats: Sequence[int]) -> torch.Tensor:
    return convert_to_tensor(x).tile(tuple(repeats))


def repeat(x: Any, repeats: int, axis: int | None = None) -> torch.Tensor:
    return torch.repeat_interleave(convert_to_tensor(x), repeats, dim=axis)


# -- arithmetic and reductions ---------------------------------------------------------------------------
def add(x1: Any, x2: Any) -> torch.Tensor:
    return torch.add(convert_to_tensor(x1), convert_to_tensor(x2))


def subtract(x1: Any, x2: Any) -> torch.Tensor:
    return torch.subtract(convert_to_tensor(x1), convert_to_tensor(x2))


def multiply(x1: Any, x2: Any) -> torch.Tensor:
    return torch.multiply(convert_to_tensor(x1), convert_to_tensor(x2))


def divide(x1: Any, x2: Any) -> torch.Tensor:
    return torch.true_divide(convert_to_tensor(x1), convert_to_tensor(x2))


def matmul(x1: Any, x2: Any) -> torch.Tensor:
    return torch.matmul(convert_to_tensor(x1), convert_to_tensor(x2))


def dot(x1: Any, x2: Any) -> torch.Tensor:
    """NumPy's dot: the matrix product (an inner product for two vectors)."""
    return torch.matmul(convert_to_tensor(x1), convert_to_tensor(x2))


def maximum(x1: Any, x2: Any) -> torch.Tensor:
    return torch.maximum(convert_to_tensor(x1), convert_to_tensor(x2))


def minimum(x1: Any, x2: Any) -> torch.Tensor:
    return torch.minimum(convert_to_tensor(x1), convert_to_tensor(x2))


def where(condition: Any, x1: Any, x2: Any) -> torch.Tensor:
    return torch.where(convert_to_tensor(condition).bool(), convert_to_tensor(x1), convert_to_tensor(x2))


def clip(x: Any, x_min: float, x_max: float) -> torch.Tensor:
    return torch.clamp(convert_to_tensor(x), x_min, x_max)


def _reduce(name: str, fn):
    def reduce(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> torch.Tensor:
        x = convert_to_tensor(x)
        if axis is None:
            result = fn(x.reshape(-1), 0)
            return result.reshape([1] * x.dim()) if keepdims else result
        for a in sorted((axis,) if isinstance(axis, int) else tuple(axis), reverse=True):
            x = fn(x, a)
            x = x.unsqueeze(a) if keepdims else x
        return x
    reduce.__name__ = reduce.__qualname__ = name
    reduce.__doc__ = f"Keras's ops.{name}(x, axis=None, keepdims=False)."
    return reduce


sum = _reduce("sum", lambda x, a: x.sum(a))  # noqa: A001 (Keras's name)
mean = _reduce("mean", lambda x, a: x.float().mean(a) if not x.is_floating_point() else x.mean(a))
max = _reduce("max", lambda x, a: x.amax(a))  # noqa: A001
min = _reduce("min", lambda x, a: x.amin(a))  # noqa: A001
prod = _reduce("prod", lambda x, a: x.prod(a))
var = _reduce("var", lambda x, a: x.var(a, unbiased=False))
std = _reduce("std", lambda x, a: x.std(a, unbiased=False))


def argmax(x: Any, axis: int | None = None, keepdims: bool = False) -> torch.Tensor:
    return torch.argmax(convert_to_tensor(x), dim=axis, keepdim=keepdims)


def argmin(x: Any, axis: int | None = None, keepdims: bool = False) -> torch.Tensor:
    return torch.argmin(convert_to_tensor(x), dim=axis, keepdim=keepdims)


def norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> torch.Tensor:  # noqa: A002
    return torch.linalg.norm(convert_to_tensor(x), ord=ord, dim=_axes(axis), keepdim=keepdims)


# -- element-wise -------------------------------------------------------------------------------------------
def _elementwise(name: str, fn):
    def apply(x: Any) -> torch.Tensor:
        return fn(convert_to_tensor(x))
    apply.__name__ = apply.__qualname__ = name
    apply.__doc__ = f"Keras's ops.{name}(x), element-wise."
    return apply


abs = _elementwise("abs", torch.abs)  # noqa: A001
square = _elementwise("square", torch.square)
sqrt = _elementwise("sqrt", torch.sqrt)
exp = _elementwise("exp", torch.exp)
log = _elementwise("log", torch.log)
sign = _elementwise("sign", torch.sign)
relu = _elementwise("relu", torch.relu)
sigmoid = _elementwise("sigmoid", torch.sigmoid)
tanh = _elementwise("tanh", torch.tanh)
softplus = _elementwise("softplus", F.softplus)
gelu = _elementwise("gelu", F.gelu)
silu = _elementwise("silu", F.silu)


def softmax(x: Any, axis: int = -1) -> torch.Tensor:
    return torch.softmax(convert_to_tensor(x), dim=axis)


def log_softmax(x: Any, axis: int = -1) -> torch.Tensor:
    return torch.log_softmax(convert_to_tensor(x), dim=axis)


def stop_gradient(x: Any) -> torch.Tensor:
    return convert_to_tensor(x).detach()
