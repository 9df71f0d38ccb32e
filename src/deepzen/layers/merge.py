"""Merge layers: combine a list of tensors into one (Keras's Concatenate, Add, Subtract, Multiply, Average,
Maximum, Minimum and Dot), each with its lowercase functional form (``add([a, b])``).

The element-wise layers take tensors of the same shape (PyTorch's broadcasting applies beyond that, as in
Keras); the shapes are checked once, when the layer is built.

Example:
    >>> import torch
    >>> Add()([torch.ones(2, 3), torch.ones(2, 3)])
    tensor([[2., 2., 2.],
            [2., 2., 2.]])
    >>> Concatenate()([torch.zeros(2, 3), torch.zeros(2, 4)]).shape
    torch.Size([2, 7])
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

from deepzen.layers.base import Layer, shape_str


class Merge(Layer):
    """Base of the merge layers: ``forward(inputs)`` takes a list (or tuple) of tensors, batch axis first."""

    min_inputs = 2
    max_inputs: int | None = None

    def _build_on_first_call(self, args):
        self.build_for(args[0] if args else None)

    def build_for(self, inputs: Any) -> None:
        if self.built:
            return
        if not isinstance(inputs, (list, tuple)) or not all(isinstance(t, torch.Tensor) for t in inputs):
            raise TypeError(f"Layer '{self.display_name}' ({type(self).__name__}) expects a list of tensors. "
                            f"Received: {type(inputs).__name__}")
        count = len(inputs)
        if count < self.min_inputs or (self.max_inputs is not None and count > self.max_inputs):
            wanted = (f"exactly {self.max_inputs}" if self.max_inputs == self.min_inputs
                      else f"at least {self.min_inputs}")
            raise ValueError(f"Layer '{self.display_name}' ({type(self).__name__}) expects {wanted} inputs. "
                             f"Received: {count} inputs")
        self.build([tuple(t.shape) for t in inputs])
        self.built_input_shape = tuple(inputs[0].shape)
        self.built = True
        self._build_hook.remove()

    def compute_mask(self, inputs: list[torch.Tensor], mask: list[torch.Tensor | None] | None = None):
        """Keras's rule for element-wise merges: a position is kept where every masked input keeps it (the
        masks given, AND-ed); None when no input has a mask."""
        given = [m for m in (mask or []) if m is not None]
        return functools.reduce(torch.logical_and, given) if given else None

    def build(self, input_shapes: list[tuple[int, ...]]) -> None:
        """Element-wise merges: every input has the same shape (after the batch axis)."""
        first = input_shapes[0]
        if any(tuple(shape[1:]) != tuple(first[1:]) for shape in input_shapes[1:]):
            raise ValueError(f"Layer '{self.display_name}' ({type(self).__name__}) expects inputs of the same shape. "
                             f"Received: {', '.join(shape_str((None, *s[1:])) for s in input_shapes)}")


class Add(Merge):
    """The element-wise sum of the inputs."""

    def forward(self, inputs):
        return functools.reduce(torch.add, inputs)


class Subtract(Merge):
    """``inputs[0] - inputs[1]`` (exactly two inputs)."""

    max_inputs = 2

    def forward(self, inputs):
        return inputs[0] - inputs[1]


class Multiply(Merge):
    """The element-wise product of the inputs."""

    def forward(self, inputs):
        return functools.reduce(torch.mul, inputs)


class Average(Merge):
    """The element-wise mean of the inputs."""

    def forward(self, inputs):
        return functools.reduce(torch.add, inputs) / len(inputs)


class Maximum(Merge):
    """The element-wise maximum of the inputs."""

    def forward(self, inputs):
        return functools.reduce(torch.maximum, inputs)


class Minimum(Merge):
    """The element-wise minimum of the inputs."""

    def forward(self, inputs):
        return functools.reduce(torch.minimum, inputs)


class Concatenate(Merge):
    """Joins the inputs along ``axis`` (default the last; axis 0 is the batch axis, so it is refused).

    Args:
        axis: the axis to join along, counted with the batch axis (Keras's convention).
    """

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, int) or axis == 0:
            raise ValueError(f"Concatenate expects a non-batch axis (an int other than 0). Received: axis={axis!r}")
        self.axis = axis

    def build(self, input_shapes):
        rank = len(input_shapes[0])
        axis = self.axis % rank if -rank <= self.axis < rank else None
        others = [[d for i, d in enumerate(s) if i not in (0, axis)] for s in input_shapes]
        if axis in (None, 0) or any(len(s) != rank for s in input_shapes) or any(o != others[0] for o in others):
            raise ValueError(f"Layer '{self.display_name}' (Concatenate) expects inputs whose shapes match except "
                             f"along axis {self.axis}. Received: "
                             f"{', '.join(shape_str((None, *s[1:])) for s in input_shapes)}")

    def forward(self, inputs):
        return torch.cat(inputs, dim=self.axis)

    def compute_mask(self, inputs, mask=None):
        """Keras's rule: each input's mask (all kept where it has none) broadcast to its shape, joined along
        ``axis``, then a position is kept where any of its features is."""
        if mask is None or all(m is None for m in mask):
            return None
        full = [torch.ones_like(x, dtype=torch.bool) if m is None else
                (m[..., None].expand_as(x) if m.dim() < x.dim() else m) for x, m in zip(inputs, mask)]
        return torch.cat(full, dim=self.axis).any(dim=-1)


class Dot(Merge):
    """The dot product of two batches of vectors or matrices along ``axes`` (Keras's ``batch_dot``).

    Args:
        axes: the axis to contract, one int for both inputs or a pair, counted with the batch axis.
        normalize: L2-normalize both inputs along ``axes`` first (the result is then the cosine similarity).

    Call arguments:
        inputs: ``[a, b]`` of rank 2 or 3. (N, d) . (N, d) -> (N, 1); (N, i, d) . (N, d, j) -> (N, i, j)
        with ``axes=(2, 1)``; (N, i, d) . (N, j, d) -> (N, i, j) with ``axes=2``.

    Example:
        >>> import torch
        >>> Dot(axes=1)([torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0]])])
        tensor([[11.]])
    """

    min_inputs = max_inputs = 2

    def __init__(self, axes: Any, normalize: bool = False, **kwargs):
        super().__init__(**kwargs)
        pair = (axes, axes) if isinstance(axes, int) else tuple(axes)
        if len(pair) != 2 or not all(isinstance(a, int) for a in pair):
            raise ValueError(f"Dot expects axes as an int or a pair of ints. Received: axes={axes!r}")
        self.axes = pair
        self.normalize = bool(normalize)

    def build(self, input_shapes):
        shapes = [shape_str((None, *s[1:])) for s in input_shapes]
        ranks = [len(s) for s in input_shapes]
        if any(r not in (2, 3) for r in ranks):
            raise ValueError(f"Layer '{self.display_name}' (Dot) expects inputs of rank 2 or 3. "
                             f"Received: {', '.join(shapes)}")
        axes = [a % r for a, r in zip(self.axes, ranks)]
        if 0 in axes or input_shapes[0][axes[0]] != input_shapes[1][axes[1]]:
            raise ValueError(f"Layer '{self.display_name}' (Dot) cannot contract axes {self.axes} (batch axis "
                             f"excluded) of inputs of shapes {', '.join(shapes)}")
        self._axes = axes

    def compute_mask(self, inputs, mask=None):
        return None  # Keras's rule: the contraction leaves no per-position mask

    def forward(self, inputs):
        a, b = inputs
        if self.normalize:
            a, b = F.normalize(a, dim=self._axes[0]), F.normalize(b, dim=self._axes[1])
        a = a.movedim(self._axes[0], -1)  # (N, [i,] d)
        b = b.movedim(self._axes[1], 1)   # (N, d, [j])
        if a.dim() == 2 and b.dim() == 2:
            return (a * b).sum(-1, keepdim=True)  # (N, 1)
        return torch.matmul(a.unsqueeze(1) if a.dim() == 2 else a, b if b.dim() == 3 else b.unsqueeze(-1)
                            ).reshape(a.shape[0], *([a.shape[1]] if a.dim() == 3 else []),
                                      *([b.shape[2]] if b.dim() == 3 else []))


def _functional(cls):
    def merge(inputs: list, **kwargs) -> Any:
        return cls(**kwargs)(inputs)

    merge.__name__ = merge.__qualname__ = cls.__name__.lower()
    merge.__doc__ = f"``{cls.__name__}(**kwargs)(inputs)``: the functional form of :class:`{cls.__name__}`."
    return merge


add, subtract, multiply, average = (_functional(c) for c in (Add, Subtract, Multiply, Average))
maximum, minimum, concatenate, dot = (_functional(c) for c in (Maximum, Minimum, Concatenate, Dot))
