"""The generic ``RNN`` layer and Keras's cells: SimpleRNNCell, LSTMCell, GRUCell (and stacked cells).

``RNN(cell)`` runs any cell over the time steps of ``(N, T, F)`` in a Python loop, as Keras's RNN
layer does: the way to write a new recurrence (a custom cell) or to get Keras's per-step
``dropout``/``recurrent_dropout``. For the standard LSTM/GRU/SimpleRNN prefer the layers of
:mod:`deepzen.layers.recurrent`: they run PyTorch's fused kernels (about 4x faster here) and give the
same results as ``RNN(LSTMCell(...))`` with the same weights (the tests check it).

A cell is a module with ``state_size`` (an int, or a list of ints) and
``forward(inputs, states) -> (output, new_states)``, ``inputs`` of shape ``(N, F)`` and ``states`` a
list of ``(N, size)`` tensors; it may take ``training=``. Weights use PyTorch's layout: ``kernel``
``(gates * units, F)``, ``recurrent_kernel`` ``(gates * units, units)``; gates in Keras's order.

Example:
    >>> import torch
    >>> layer = RNN(LSTMCell(8), return_sequences=True)
    >>> layer(torch.randn(4, 5, 3)).shape
    torch.Size([4, 5, 8])
    >>> output, h1, h2 = RNN([GRUCell(6), GRUCell(4)], return_state=True)(torch.randn(4, 5, 3))
    >>> output.shape, h1.shape, h2.shape
    (torch.Size([4, 4]), torch.Size([4, 6]), torch.Size([4, 4]))
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deepzen.layers.base import Layer, shape_str


def _activation(identifier: Any):
    from deepzen import activations

    return activations.get(identifier)


def _rate(cell: str, argument: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{cell} expects {argument} in [0, 1). Received: {argument}={value!r}")
    return float(value)


class RecurrentCell(Layer):
    """Base of the built-in cells: weights, initializers and Keras's per-sequence dropout masks.

    Args:
        units: size of the hidden state.
        activation: the candidate / output activation (default "tanh").
        use_bias: whether to add biases.
        kernel_initializer / recurrent_initializer / bias_initializer: Keras's defaults
            glorot_uniform / orthogonal / zeros.
        dropout: fraction of the inputs dropped while training, with one mask for the whole sequence.
        recurrent_dropout: the same for the previous state fed to the recurrent kernel.
    """

    gates: int = 1

    def __init__(self, units: int, activation: Any = "tanh", use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", recurrent_initializer: Any = "orthogonal",
                 bias_initializer: Any = "zeros", dropout: float = 0.0, recurrent_dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        kind = type(self).__name__
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"{kind} expects units to be a positive integer. Received: units={units!r}")
        self.units, self.use_bias = units, use_bias
        self.activation = _activation(activation)
        self.kernel_initializer, self.recurrent_initializer = kernel_initializer, recurrent_initializer
        self.bias_initializer = bias_initializer
        self.dropout = _rate(kind, "dropout", dropout)
        self.recurrent_dropout = _rate(kind, "recurrent_dropout", recurrent_dropout)
        self.reset_dropout_mask()

    @property
    def state_size(self) -> int | list[int]:
        return self.units

    @property
    def output_size(self) -> int:
        return self.units

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"Layer '{self.display_name}' ({type(self).__name__}) expects one time step of shape "
                             f"(batch, features). Received: input_shape={shape_str((None, *input_shape[1:]))}")
        self.kernel = self.new_parameter((self.gates * self.units, input_shape[-1]), self.kernel_initializer)
        self.recurrent_kernel = self.new_parameter((self.gates * self.units, self.units), self.recurrent_initializer)
        self.bias = self.new_parameter(self.bias_shape(), self.bias_initializer) if self.use_bias else None

    def bias_shape(self) -> tuple[int, ...]:
        return (self.gates * self.units,)

    def reset_dropout_mask(self) -> None:
        """Forgets the dropout masks; the RNN layer calls it before each sequence."""
        self._masks: dict[str, torch.Tensor] = {}

    def dropped(self, x: torch.Tensor, which: str, rate: float, training: bool | None) -> torch.Tensor:
        """``x`` times this sequence's dropout mask (drawn at its first step) while training."""
        if rate == 0.0 or not (self.training if training is None else training):
            return x
        mask = self._masks.get(which)
        if mask is None or mask.shape != x.shape:
            mask = self._masks[which] = F.dropout(torch.ones_like(x), rate, True)
        return x * mask


class SimpleRNNCell(RecurrentCell):
    """``h_t = activation(x_t W^T + h_{t-1} U^T + b)``; output ``h_t``. See :class:`RecurrentCell`."""

    def forward(self, inputs, states, training=None):
        previous = states[0] if isinstance(states, (list, tuple)) else states
        x = self.dropped(inputs, "input", self.dropout, training)
        h = self.dropped(previous, "recurrent", self.recurrent_dropout, training)
        output = self.activation(F.linear(x, self.kernel, self.bias) + F.linear(h, self.recurrent_kernel))
        return output, [output]


class LSTMCell(RecurrentCell):
    """Long short-term memory (Hochreiter & Schmidhuber 1997), gates i, f, c, o as in Keras and PyTorch.

    ``z = x W^T + h U^T + b``; ``i, f, o = recurrent_activation(z_i, z_f, z_o)``;
    ``c_t = f * c_{t-1} + i * activation(z_c)``; ``h_t = o * activation(c_t)``. States ``[h, c]``.

    Args:
        recurrent_activation: the gates' activation (default "sigmoid").
        unit_forget_bias: add 1 to the forget gate's bias at initialization (Jozefowicz et al. 2015).
        others: see :class:`RecurrentCell`.
    """

    gates = 4

    def __init__(self, units: int, activation: Any = "tanh", recurrent_activation: Any = "sigmoid",
                 unit_forget_bias: bool = True, **kwargs):
        super().__init__(units, activation, **kwargs)
        self.recurrent_activation = _activation(recurrent_activation)
        self.unit_forget_bias = unit_forget_bias

    @property
    def state_size(self):
        return [self.units, self.units]

    def build(self, input_shape):
        super().build(input_shape)
        if self.bias is not None and self.unit_forget_bias:
            with torch.no_grad():
                self.bias[self.units:2 * self.units] += 1.0

    def forward(self, inputs, states, training=None):
        h_previous, c_previous = states
        x = self.dropped(inputs, "input", self.dropout, training)
        h = self.dropped(h_previous, "recurrent", self.recurrent_dropout, training)
        z = F.linear(x, self.kernel, self.bias) + F.linear(h, self.recurrent_kernel)  # (N, 4 * units)
        i, f, c, o = z.chunk(4, dim=-1)
        gate = self.recurrent_activation
        c_new = gate(f) * c_previous + gate(i) * self.activation(c)
        h_new = gate(o) * self.activation(c_new)
        return h_new, [h_new, c_new]


class GRUCell(RecurrentCell):
    """Gated recurrent unit (Cho et al. 2014), gates z, r, h in Keras's order.

    With ``reset_after=True`` (Keras's default, cuDNN's and PyTorch's form) the reset gate multiplies
    the recurrent term after the kernel: ``hh = activation(x W_h^T + b_h + r * (h U_h^T + b'_h))``, and
    the bias has two rows, input and recurrent. ``h_t = z * h_{t-1} + (1 - z) * hh``.

    Args:
        recurrent_activation: the gates' activation (default "sigmoid").
        reset_after: see above; False applies the reset gate to ``h`` before the kernel (one bias row).
        others: see :class:`RecurrentCell`.
    """

    gates = 3

    def __init__(self, units: int, activation: Any = "tanh", recurrent_activation: Any = "sigmoid",
                 reset_after: bool = True, **kwargs):
        super().__init__(units, activation, **kwargs)
        self.recurrent_activation = _activation(recurrent_activation)
        self.reset_after = reset_after

    def bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def forward(self, inputs, states, training=None):
        h_previous = states[0] if isinstance(states, (list, tuple)) else states
        x = self.dropped(inputs, "input", self.dropout, training)
        h = self.dropped(h_previous, "recurrent", self.recurrent_dropout, training)
        input_bias, recurrent_bias = (None, None) if self.bias is None else \
            (self.bias[0], self.bias[1]) if self.reset_after else (self.bias, None)
        x_z, x_r, x_h = F.linear(x, self.kernel, input_bias).chunk(3, dim=-1)
        u_z, u_r, u_h = self.recurrent_kernel.chunk(3, dim=0)
        gate = self.recurrent_activation
        if self.reset_after:
            r_z, r_r, r_h = F.linear(h, self.recurrent_kernel, recurrent_bias).chunk(3, dim=-1)
            z, r = gate(x_z + r_z), gate(x_r + r_r)
            candidate = self.activation(x_h + r * r_h)
        else:
            z, r = gate(x_z + F.linear(h, u_z)), gate(x_r + F.linear(h, u_r))
            candidate = self.activation(x_h + F.linear(r * h, u_h))
        h_new = z * h_previous + (1 - z) * candidate
        return h_new, [h_new]


def _sizes(state_size) -> list[int]:
    return list(state_size) if isinstance(state_size, (list, tuple)) else [state_size]


def _takes_training(cell: nn.Module) -> bool:
    return "training" in inspect.signature(cell.forward).parameters


class StackedRNNCells(Layer):
    """Several cells run one after another at each step (Keras's stacked cells); the last one's output is
    the output. ``RNN([cell1, cell2])`` builds one.

    Args:
        cells: the cells, first to last.
    """

    def __init__(self, cells: Sequence[nn.Module], **kwargs):
        super().__init__(**kwargs)
        self.cells = nn.ModuleList(cells)
        self._training_flags = [_takes_training(cell) for cell in self.cells]

    @property
    def state_size(self) -> list[int]:
        return [size for cell in self.cells for size in _sizes(cell.state_size)]

    def forward(self, inputs, states, training=None):
        new_states, position = [], 0
        for cell, takes_training in zip(self.cells, self._training_flags):
            count = len(_sizes(cell.state_size))
            own = list(states[position:position + count])
            position += count
            inputs, own = cell(inputs, own, training=training) if takes_training else cell(inputs, own)
            new_states.extend(own if isinstance(own, (list, tuple)) else [own])
        return inputs, new_states

    def reset_dropout_mask(self) -> None:
        for cell in self.cells:
            if hasattr(cell, "reset_dropout_mask"):
                cell.reset_dropout_mask()


class RNN(Layer):
    """Runs a cell over the time steps of a batch-first sequence, Keras's ``RNN`` layer.

    Args:
        cell: a cell (see the module docstring), or a list of cells (stacked).
        return_sequences: return every step's output ``(N, T, units)`` instead of the last ``(N, units)``.
        return_state: also return the final states: ``(output, *states)``, as deepzen's LSTM/GRU do.
        go_backwards: read the sequence from its end (outputs in that reversed order, as in Keras).
        stateful: not supported (raises); pass ``initial_state`` instead.
        unroll: accepted for Keras compatibility (the loop is always a Python loop).
        zero_output_for_mask: output zeros at masked steps instead of repeating the previous output.

    Call arguments:
        x: ``(N, T, F)``.
        mask: optional bool ``(N, T)``, True = real step; at masked steps the states are carried over.
        initial_state: optional list of ``(N, size)`` tensors (default zeros).
        training: passed to cells that take it (their dropout); None follows the module's mode.
    """

    @property
    def produces_steps_features(self) -> bool:  # (N, T, units) with return_sequences (see Layer)
        return self.return_sequences

    def __init__(self, cell: nn.Module | Sequence[nn.Module], return_sequences: bool = False,
                 return_state: bool = False, go_backwards: bool = False, stateful: bool = False,
                 unroll: bool = False, zero_output_for_mask: bool = False, **kwargs):
        super().__init__(**kwargs)
        if stateful:
            raise ValueError("RNN(stateful=True) is not supported: pass the last states as initial_state "
                             "(return_state=True gives them)")
        if isinstance(cell, (list, tuple)):
            cell = StackedRNNCells(cell)
        if not isinstance(cell, nn.Module) or not hasattr(cell, "state_size"):
            raise TypeError(f"RNN expects a cell: an nn.Module with state_size and forward(inputs, states). "
                            f"Received: {cell!r}")
        self.cell = cell
        self.return_sequences, self.return_state, self.go_backwards = return_sequences, return_state, go_backwards
        self.stateful, self.unroll, self.zero_output_for_mask = stateful, unroll, zero_output_for_mask
        self._cell_takes_training = _takes_training(cell)

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Layer '{self.display_name}' (RNN) expects inputs of shape (batch, timesteps, "
                             f"features). Received: input_shape={shape_str((None, *input_shape[1:]))}")

    def forward(self, x, mask=None, initial_state=None, training=None):
        batch, steps = x.shape[:2]
        if initial_state is None:
            states = [x.new_zeros(batch, size) for size in _sizes(self.cell.state_size)]
        else:
            states = [initial_state] if isinstance(initial_state, torch.Tensor) else list(initial_state)
        if hasattr(self.cell, "reset_dropout_mask"):
            self.cell.reset_dropout_mask()
        order = range(steps - 1, -1, -1) if self.go_backwards else range(steps)
        outputs, output = [], None
        for t in order:
            if self._cell_takes_training:
                step_output, new_states = self.cell(x[:, t], states, training=training)
            else:
                step_output, new_states = self.cell(x[:, t], states)
            new_states = list(new_states) if isinstance(new_states, (list, tuple)) else [new_states]
            if mask is not None:
                keep = mask[:, t].unsqueeze(-1)  # (N, 1)
                new_states = [torch.where(keep, new, old) for new, old in zip(new_states, states)]
                held = torch.zeros_like(step_output) if self.zero_output_for_mask or output is None else output
                step_output = torch.where(keep, step_output, held)
            states, output = new_states, step_output
            if self.return_sequences:
                outputs.append(step_output)
        result = torch.stack(outputs, dim=1) if self.return_sequences else output  # (N, T, units) / (N, units)
        return (result, *states) if self.return_state else result

    def compute_mask(self, inputs, mask=None):
        """The input mask for sequence outputs (reversed with ``go_backwards``), None for a last output."""
        if mask is None or not self.return_sequences:
            return None
        return mask.flip(1) if self.go_backwards else mask
