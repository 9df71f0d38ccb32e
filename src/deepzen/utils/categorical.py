"""``to_categorical(y, num_classes)``: class indices to one-hot rows (Keras's ``keras.utils.to_categorical``)."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_categorical(x: Any, num_classes: int | None = None) -> np.ndarray:
    """One-hot encodes an array of class indices.

    Args:
        x: class indices, shape ``(...)`` (a trailing axis of size 1 is dropped, as in Keras).
        num_classes: number of classes; default ``max(x) + 1``.

    Returns:
        float32 array ``(..., num_classes)``.

    Example:
        >>> to_categorical([0, 2, 1], num_classes=3)
        array([[1., 0., 0.],
               [0., 0., 1.],
               [0., 1., 0.]], dtype=float32)
    """
    indices = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)
    if indices.dtype.kind == "f" and not np.all(indices == np.round(indices)):
        raise ValueError(f"to_categorical expects integer class indices. Received: {indices.dtype} values "
                         f"with fractions, e.g. {indices.ravel()[~(indices.ravel() == np.round(indices.ravel()))][0]}")
    if indices.dtype.kind not in "iuf" and indices.size:
        raise ValueError(f"to_categorical expects integer class indices. Received: dtype {indices.dtype}")
    indices = indices.astype(np.int64)
    if indices.ndim > 1 and indices.shape[-1] == 1:
        indices = indices[..., 0]
    num_classes = int(indices.max()) + 1 if num_classes is None else int(num_classes)
    if indices.size and (indices.min() < 0 or indices.max() >= num_classes):
        raise ValueError(f"to_categorical expects indices in [0, {num_classes}). "
                         f"Received: values from {indices.min()} to {indices.max()}")
    out = np.zeros((*indices.shape, num_classes), dtype=np.float32)
    np.put_along_axis(out, indices[..., None], 1.0, axis=-1)
    return out
