"""Symbolic tensors: what ``Input`` returns, and what a layer called on one returns (Keras's KerasTensor).

A symbolic tensor has a shape with ``None`` for the batch axis (and for any axis its ``Input`` left
open), a dtype, and the call that produced it (a :class:`Node`). Calling a deepzen layer or a model on
symbolic tensors builds the layer for real -- one forward pass on two zero samples, in inference mode and
without gradients -- and returns symbolic outputs with the shapes that pass produced. A layer that cannot
take its input fails there, once, with its name and the shapes in the message; ``Model(inputs, outputs)``
then reads the graph from the nodes (``deepzen.training.functional``).

Example:
    >>> from deepzen.layers import Dense, Input
    >>> x = Input((4,), name="features")
    >>> y = Dense(3)(x)
    >>> y
    <SymbolicTensor shape=(None, 3), dtype=float32, from dense>
    >>> y.node.inputs[0] is x
    True
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

PROBE_BATCH = 2
# An axis left open (None) is probed with two sizes: output axes that change with it stay open. Sizes far
# apart keep strided pooling from mapping both to one size; a layer that needs more (a large kernel) gets a
# second, larger pair.
OPEN_AXIS_SIZES = ((16, 23), (64, 91))


STEPS_FEATURES = "_deepzen_steps_features"
"""The attribute set on a tensor that holds ``(batch, steps, features)`` while a model builds (see
``Layer._mark_steps_features``): Keras's 1-d layers read that layout, deepzen's under channels_first do not."""


class SymbolicTensor:
    """A placeholder for a batch of tensors in a graph under construction (Keras's ``KerasTensor``).

    Attributes:
        shape: ``(batch, *per_sample)``; ``None`` marks an open axis, and the batch axis unless
            ``Input(batch_shape=...)`` fixed it.
        dtype: a ``torch.dtype``.
        node: the :class:`Node` (layer call) that produced it.
        index: its position among the flattened outputs of that call.
    """

    __slots__ = ("shape", "dtype", "node", "index", STEPS_FEATURES, "__weakref__")

    def __init__(self, shape: tuple, dtype: torch.dtype, node: "Node | None" = None, index: int = 0):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.node = node
        self.index = index
        setattr(self, STEPS_FEATURES, False)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def name(self) -> str:
        """The producing layer's name (an Input's name for model inputs)."""
        return layer_name(self.node.layer) if self.node is not None else "symbolic"

    def __repr__(self) -> str:
        dtype = str(self.dtype).replace("torch.", "")
        shape = "(" + ", ".join(map(str, self.shape)) + ("," if len(self.shape) == 1 else "") + ")"
        return f"<SymbolicTensor shape={shape}, dtype={dtype}, from {self.name}>"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        raise TypeError(f"{getattr(func, '__name__', func)} was called on a symbolic tensor (an Input or a layer's "
                        f"output in a graph under construction). Symbolic tensors go into deepzen layers and "
                        f"models; wrap other torch code as a layer: deepzen.layers.TorchModuleWrapper(module) or "
                        f"deepzen.layers.Lambda(function)")

    def __getattr__(self, name: str):
        raise AttributeError(f"A symbolic tensor has no attribute {name!r}: it has shape, dtype and ndim only. "
                             f"Tensor methods run inside layers: wrap the computation in deepzen.layers.Lambda")


class Node:
    """One call of a layer on symbolic tensors: the layer, the call's arguments with the symbolic tensors in
    place, the flat list of those tensors, and the outputs (a tensor or a list/tuple/dict of them)."""

    __slots__ = ("layer", "args", "kwargs", "inputs", "outputs")

    def __init__(self, layer: nn.Module, args: tuple, kwargs: dict, inputs: list, outputs: Any = None):
        self.layer, self.args, self.kwargs, self.inputs, self.outputs = layer, args, kwargs, inputs, outputs

    @property
    def flat_outputs(self) -> list[SymbolicTensor]:
        return [t for t in leaves(self.outputs) if isinstance(t, SymbolicTensor)]


def layer_name(layer: nn.Module) -> str:
    name = getattr(layer, "name", None) or getattr(layer, "display_name", None)
    return name or type(layer).__name__


def leaves(structure: Any) -> list:
    """The leaves of nested lists, tuples and dicts (dicts in insertion order)."""
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in leaves(item)]
    if isinstance(structure, dict):
        return [leaf for item in structure.values() for leaf in leaves(item)]
    return [structure]


def map_leaves(fn, structure: Any) -> Any:
    """``structure`` with ``fn`` applied to every leaf (lists, tuples and dicts keep their kind)."""
    if isinstance(structure, (list, tuple)):
        return type(structure)(map_leaves(fn, item) for item in structure)
    if isinstance(structure, dict):
        return {key: map_leaves(fn, item) for key, item in structure.items()}
    return fn(structure)


def has_symbolic(args: tuple, kwargs: dict) -> bool:
    """Whether a call's arguments hold a symbolic tensor (at the top level or inside lists and dicts).
    Called on every layer call, so the common case -- one tensor -- costs one isinstance check."""
    for value in args:
        if isinstance(value, SymbolicTensor):
            return True
        if isinstance(value, (list, tuple, dict)) and any(isinstance(v, SymbolicTensor) for v in leaves(value)):
            return True
    return bool(kwargs) and any(isinstance(v, SymbolicTensor) for v in leaves(kwargs))


def shape_text(shape: tuple) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + (",)" if len(shape) == 1 else ")")


def _device_of(module: nn.Module) -> torch.device | None:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return None  # not built yet: the default device (``meta`` inside ``with torch.device("meta")``)


def _probe_value(device, open_size: int):
    def make(value):
        if not isinstance(value, SymbolicTensor):
            return value
        shape = [open_size if d is None else d for d in value.shape[1:]]
        probe = torch.zeros((PROBE_BATCH, *shape), dtype=value.dtype, device=device)
        if getattr(value, STEPS_FEATURES):
            setattr(probe, STEPS_FEATURES, True)
        return probe
    return make


def _expected(layer: nn.Module, built_shape) -> str:
    """What ``layer`` takes, for an error message: the shape it was built for or declares, if it knows one."""
    if built_shape:
        return f"; it was built for inputs of shape {shape_text((None, *built_shape[1:]))}"
    declared = layer.__dict__.get("input_shape")  # a deepzen Layer's input_shape= argument
    if isinstance(declared, tuple):
        return f"; it declares input_shape {shape_text((None, *declared))}"
    try:  # a model: its inputs' shapes, when it knows them
        shapes = getattr(layer, "input_shape", None)
    except (ValueError, AttributeError):
        return ""
    if isinstance(shapes, tuple) and all(d is None or isinstance(d, int) for d in shapes):
        return f"; it takes inputs of shape {shape_text(shapes)}"
    return f"; it takes inputs of shapes {shapes}" if shapes else ""


def call_symbolic(layer: nn.Module, args: tuple, kwargs: dict) -> Any:
    """Records ``layer(*args, **kwargs)`` on symbolic tensors and returns its symbolic outputs.

    The layer runs once on zero samples (twice when an input has open axes), which builds a lazy layer.

    Raises:
        ValueError: naming the layer, the input shapes it received and (for a built layer) the shape it was
            built for, when the call fails.
    """
    inputs = [t for t in leaves((args, kwargs)) if isinstance(t, SymbolicTensor)]
    if getattr(layer, "takes_integer_inputs", False):  # Keras's Embedding casts an Input of default dtype
        for tensor in inputs:
            if tensor.dtype.is_floating_point and hasattr(tensor.node.layer, "adopt_integer_ids"):
                tensor.node.layer.adopt_integer_ids()
    open_axes = any(None in t.shape[1:] for t in inputs)
    attempts = OPEN_AXIS_SIZES if open_axes else ((OPEN_AXIS_SIZES[0][0],),)
    device = _device_of(layer)
    built_shape = getattr(layer, "built_input_shape", None)
    was_training = layer.training
    layer.eval()  # no batch statistics are updated, no dropout is drawn
    try:
        with torch.no_grad():
            for attempt, sizes in enumerate(attempts):
                try:
                    probes = [nn.Module.__call__(layer, *map_leaves(_probe_value(device, size), args),
                                                 **map_leaves(_probe_value(device, size), kwargs)) for size in sizes]
                    break
                except Exception:
                    if attempt == len(attempts) - 1:
                        raise
    except Exception as error:
        received = ", ".join(shape_text(t.shape) for t in inputs)
        raise ValueError(f"Layer '{layer_name(layer)}' ({type(layer).__name__}) cannot be called on "
                         f"{'an input' if len(inputs) == 1 else 'inputs'} of shape {received}"
                         f"{_expected(layer, built_shape)}: {type(error).__name__}: {error}") from error
    finally:
        layer.train(was_training)
    node = Node(layer, args, kwargs, inputs)
    batches = {t.shape[0] for t in inputs}
    batch = batches.pop() if len(batches) == 1 else None  # Input(batch_shape=...)'s fixed batch carries through
    twins = iter(leaves(probes[1])) if len(probes) > 1 else None  # map_leaves visits leaves in this order
    positions = itertools.count()

    def symbolic(value):
        twin = next(twins) if twins is not None else None
        if not isinstance(value, torch.Tensor):
            return value
        shape = list(value.shape[1:])
        if twin is not None:  # axes that changed with the open input axes stay open
            shape = [d if d == e else None for d, e in zip(shape, twin.shape[1:])]
        result = SymbolicTensor((batch, *shape), value.dtype, node, next(positions))
        setattr(result, STEPS_FEATURES, getattr(value, STEPS_FEATURES, False))
        return result

    node.outputs = map_leaves(symbolic, probes[0])
    layer.__dict__.setdefault("output", node.outputs)  # Keras's layer.output: the first call's output
    return node.outputs
