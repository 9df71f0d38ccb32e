"""Friendly errors for a failing forward pass: which layer failed, on what input shape.

Used only on the first batch of ``fit``/``evaluate``/``predict`` and when a model is built, never
on the hot path: hooks are attached for that one call and removed after it.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

from deepzen.layers.base import shape_str


class ShapeError(ValueError):
    """A layer received an input it cannot take; the message names the layer and both shapes."""


def _shapes(args: tuple) -> str:
    shapes = [shape_str((None, *a.shape[1:])) for a in args if isinstance(a, torch.Tensor)]
    return ", ".join(shapes) if shapes else "no tensor input"


def _expected(module: nn.Module) -> str | None:
    """What the module was built for, when it can tell (deepzen layers after build, torch layers by size)."""
    built = getattr(module, "built_input_shape", None)
    if built is not None:
        return shape_str((None, *built[1:]))
    for attribute in ("in_features", "input_size"):
        if hasattr(module, attribute):
            return f"with last axis of size {getattr(module, attribute)}"
    for attribute in ("in_channels", "num_features"):
        if hasattr(module, attribute):
            return f"with axis 1 of size {getattr(module, attribute)}"
    return None


@contextlib.contextmanager
def named_layer_errors(model: nn.Module) -> Iterator[None]:
    """Re-raises errors from inside ``model``'s forward as :class:`ShapeError` naming the failing layer.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3))
        >>> with named_layer_errors(net):
        ...     net(torch.zeros(4, 5))
        Traceback (most recent call last):
        ...
        deepzen.training.diagnostics.ShapeError: Layer '0' (Linear) expected input with last axis of size 2, received (None, 5): mat1 and mat2 shapes cannot be multiplied (4x5 and 2x3)
    """
    stack: list[tuple[str, nn.Module, tuple]] = []
    handles = []
    names = {module: name for name, module in model.named_modules()}

    def enter(module, args):
        stack.append((names.get(module, type(module).__name__), module, args))

    def leave(module, args, output):
        stack.pop()

    for module in names:
        if module is model:
            continue
        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
    try:
        yield
    except ShapeError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        if not stack:
            raise
        name, module, args = stack[-1]
        expected = _expected(module)
        expectation = f"expected input {expected}, received" if expected else "received input"
        raise ShapeError(f"Layer '{name}' ({type(module).__name__}) {expectation} {_shapes(args)}: {error}") from error
    finally:
        for handle in handles:
            handle.remove()


def describe(value: Any) -> str:
    """A short description of a (nested) batch: shapes and dtypes."""
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(describe(v) for v in value) + ")"
    return type(value).__name__
