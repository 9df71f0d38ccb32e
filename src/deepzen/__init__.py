"""deepzen: the classic deep-learning curriculum behind one small Keras-style API, on PyTorch.

Submodules load on first use, so ``import deepzen`` costs little more than importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Model": "deepzen.models",
    "Sequential": "deepzen.models",
    "Input": "deepzen.layers.input_layer",
    "load_model": "deepzen.training.serialization",
    "register_serializable": "deepzen.serializable",
    "custom_object_scope": "deepzen.serializable",
    "ModelFileError": "deepzen.serializable",
    "seed": "deepzen.runtime",
    "default_device": "deepzen.runtime",
}
_SUBMODULES = {"activations", "losses", "optimizers", "initializers", "regularizers", "metrics", "layers",
               "models", "callbacks", "data", "training", "vision", "text", "generative", "recommend", "rl",
               "recipes", "runtime", "cli", "config", "utils", "ops", "random", "datasets"}

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"deepzen.{name}")
    raise AttributeError(f"module 'deepzen' has no attribute {name!r}")
