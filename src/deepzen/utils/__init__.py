"""Keras's ``keras.utils`` helpers. Each lives in its own module and loads on first use (``plot_model``
imports matplotlib only when called).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "pad_sequences": "deepzen.utils.sequence_padding",
    "plot_model": "deepzen.utils.model_plot",
    "set_random_seed": "deepzen.utils.random_seed",
    "to_categorical": "deepzen.utils.categorical",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'deepzen.utils' has no attribute {name!r}")
