"""``pad_sequences``: Keras's ``keras.utils.pad_sequences`` (NumPy out, padding and truncating at the start
by default), the one padder of the project (the text recipes' ``deepzen.data.text.pad_ids`` calls it)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def pad_sequences(sequences: Sequence[Any], maxlen: int | None = None, dtype: Any = "int32", padding: str = "pre",
                  truncating: str = "pre", value: float = 0.0) -> np.ndarray:
    """Pads (and truncates) sequences to one length, as Keras does.

    Args:
        sequences: N sequences (lists or arrays); each item may itself be a vector.
        maxlen: output length; default the longest sequence.
        dtype: output dtype.
        padding: ``"pre"`` pads at the start, ``"post"`` at the end.
        truncating: ``"pre"`` drops the start of longer sequences, ``"post"`` the end.
        value: the padding value.

    Returns:
        array ``(N, maxlen, *item_shape)``.

    Example:
        >>> pad_sequences([[1, 2, 3], [4]], maxlen=2)
        array([[2, 3],
               [0, 4]], dtype=int32)
    """
    for name, arg in (("padding", padding), ("truncating", truncating)):
        if arg not in ("pre", "post"):
            raise ValueError(f"Expected {name}='pre' or 'post'. Received: {name}={arg!r}")
    if not hasattr(sequences, "__len__"):
        raise ValueError(f"pad_sequences expects a list of sequences. Received: {type(sequences).__name__}")
    rows = [np.asarray(s) for s in sequences]
    item_shape = next((row.shape[1:] for row in rows if len(row)), ())
    maxlen = max((len(row) for row in rows), default=0) if maxlen is None else int(maxlen)
    out = np.full((len(rows), maxlen, *item_shape), value, dtype=dtype)
    for i, row in enumerate(rows):
        if not len(row) or not maxlen:
            continue
        kept = row[-maxlen:] if truncating == "pre" else row[:maxlen]
        if kept.shape[1:] != item_shape:
            raise ValueError(f"pad_sequences expects items of one shape {item_shape}. "
                             f"Received: {kept.shape[1:]} in sequence {i}")
        if padding == "post":
            out[i, :len(kept)] = kept
        else:
            out[i, maxlen - len(kept):] = kept
    return out
