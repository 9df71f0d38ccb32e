"""What a served (or exported) model takes: its per-sample input shape and dtype, and valid example inputs.

These need only torch, so ``deepzen export`` uses them without the serving extra installed.
"""

from __future__ import annotations

import torch
from torch import nn


def input_spec(model: nn.Module) -> tuple[tuple[int, ...], torch.dtype]:
    """The per-sample input shape and dtype of a built single-input deepzen model.

    Raises:
        ValueError: the model is not built, or takes several inputs.
    """
    spec = getattr(model, "input_spec", None)
    if spec is None:
        raise ValueError("The model is not built: call it once (or load it from a model file) before serving")
    if not hasattr(spec, "shape"):
        raise ValueError(f"Serving and export take models with one input tensor. Received a model with inputs {spec}")
    return tuple(spec.shape), spec.dtype


def vocabulary_size(model: nn.Module) -> int | None:
    """The number of ids the model's first embedding accepts (None for models without integer inputs)."""
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            return module.num_embeddings
        if getattr(module, "takes_integer_inputs", False):
            return getattr(module, "input_dim", None)
    return None


def random_inputs(model: nn.Module, batch_size: int, seed: int = 0) -> torch.Tensor:
    """A batch ``(batch_size, *shape)`` of valid random inputs: uniform [0, 1) floats, or ids within the vocabulary."""
    shape, dtype = input_spec(model)
    generator = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return torch.rand((batch_size, *shape), generator=generator, dtype=dtype)
    return torch.randint(0, vocabulary_size(model) or 2, (batch_size, *shape), generator=generator, dtype=dtype)
