"""Recurrent layers: SimpleRNN, LSTM and GRU on PyTorch's fused kernels, and the Bidirectional wrapper.

The three layers are one implementation, :class:`Recurrent`, around ``nn.RNN`` / ``nn.LSTM`` /
``nn.GRU`` (cuDNN / oneDNN kernels; no Python loop over time steps). What deepzen adds is Keras's
interface: lazy input size, Keras initializers, ``return_sequences`` / ``return_state``,
``go_backwards``, merge modes for bidirectional layers, and padding masks. A masked batch is run
as a ``PackedSequence``, so padded steps change neither the outputs of real steps nor the final
state, and the final state of each sequence is the one after its last real step.

Inputs are batch-first, (N, T, F). PyTorch's gate equations are Keras's (LSTM gates i, f, g, o;
GRU with ``reset_after=True``, Keras's default, keeps two biases as PyTorch does).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from deepzen import initializers
from deepzen.layers.base import Layer

_MERGES = {
    "concat": lambda forward, backward: torch.cat((forward, backward), -1),
    "sum": torch.add,
    "mul": torch.mul,
    "ave": lambda forward, backward: (forward + backward) / 2,
}


class Recurrent(Layer):
    """Shared implementation of :class:`SimpleRNN`, :class:`LSTM` and :class:`GRU`.

    Subclasses choose the PyTorch module (``torch_module``) and name its states (``state_names``).

    Args:
        units: size of the hidden state.
        return_sequences: return the outputs of every step (N, T, D) instead of the last one (N, D).
        return_state: also return the final states, Keras-style: ``(output, h)`` or ``(output, h, c)``.
            Each state is (N, units) for a single-layer, one-direction layer, otherwise PyTorch's
            (num_layers * num_directions, N, units), layer-major with the forward direction first.
        go_backwards: read each sequence from its end; with ``return_sequences`` the outputs come
            in that (reversed) order, as in Keras.
        num_layers: stacked recurrent layers inside one fused kernel.
        dropout: dropout between stacked layers (needs ``num_layers > 1``). The fused kernels have no
            per-step input or recurrent dropout; for input dropout put a ``Dropout`` layer before.
        bidirectional: also run a backward layer; its outputs are merged by ``merge_mode``
            (the :class:`Bidirectional` wrapper is the Keras spelling of the same thing).
        merge_mode: "concat" (D = 2 * units), "sum", "mul" or "ave" (D = units).
        use_bias: whether the cell has biases.
        kernel_initializer / recurrent_initializer / bias_initializer: Keras defaults glorot_uniform /
            orthogonal / zeros. PyTorch keeps two biases (input and recurrent); the bias initializer
            fills the input one and the recurrent one starts at zero, so their sum is Keras's bias.

    Call arguments:
        x: (N, T, F) batch-first inputs.
        mask: optional bool (N, T), True = real step (any pattern: pre- or post-padding). Masked
            steps are skipped; their outputs are zero.
        lengths: optional (N,) lengths of post-padded (right-padded) sequences, instead of ``mask``.
        initial_state: optional ``h`` (or ``(h, c)`` for LSTM) in the shapes ``return_state`` gives.

    Packing a masked batch reads the lengths on the host (a device sync); unmasked batches run the
    kernel directly.
    """

    torch_module: type[nn.RNNBase] = nn.RNN
    state_names: tuple[str, ...] = ("h",)

    @property
    def produces_steps_features(self) -> bool:  # (N, T, units) with return_sequences (see Layer)
        return self.return_sequences

    def __init__(self, units: int, return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, num_layers: int = 1, dropout: float = 0.0, bidirectional: bool = False,
                 merge_mode: str = "concat", use_bias: bool = True, kernel_initializer: Any = "glorot_uniform",
                 recurrent_initializer: Any = "orthogonal", bias_initializer: Any = "zeros", **kwargs):
        super().__init__(**kwargs)
        kind = type(self).__name__
        for argument, value in (("units", units), ("num_layers", num_layers)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{kind} expects {argument} to be a positive integer. Received: {argument}={value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{kind} expects dropout in [0, 1). Received: dropout={dropout}")
        if dropout > 0 and num_layers == 1:
            raise ValueError(f"{kind} applies dropout between stacked layers, so it needs num_layers > 1. "
                             f"Received: dropout={dropout}, num_layers=1. For dropout on the inputs put a "
                             f"Dropout layer before this one")
        if merge_mode not in _MERGES:
            raise ValueError(f"{kind} expects merge_mode in {tuple(_MERGES)}. Received: merge_mode={merge_mode!r}")
        self.units, self.num_layers, self.dropout = units, num_layers, float(dropout)
        self.return_sequences, self.return_state, self.go_backwards = return_sequences, return_state, go_backwards
        self.bidirectional, self.merge_mode, self.use_bias = bidirectional, merge_mode, use_bias
        self.kernel_initializer = kernel_initializer
        self.recurrent_initializer = recurrent_initializer
        self.bias_initializer = bias_initializer
        self.num_directions = 2 if bidirectional else 1
        self.unit_forget_bias = False

    def module_options(self) -> dict[str, Any]:
        """Extra keyword arguments of ``torch_module`` (e.g. SimpleRNN's nonlinearity)."""
        return {}

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Layer '{self.display_name}' ({type(self).__name__}) expects inputs of shape "
                             f"(batch, timesteps, features). Received shape: {tuple(input_shape)}")
        self.rnn = self.torch_module(input_shape[-1], self.units, self.num_layers, bias=self.use_bias,
                                     batch_first=True, dropout=self.dropout, bidirectional=self.bidirectional,
                                     device=self._device, dtype=self._dtype, **self.module_options())
        kernel, recurrent, bias = (initializers.get(i) for i in
                                   (self.kernel_initializer, self.recurrent_initializer, self.bias_initializer))
        with torch.no_grad():
            for name, parameter in self.rnn.named_parameters():
                if name.startswith("weight_ih"):
                    kernel(parameter)  # (gates * units, in): fans as Keras's (in, gates * units) kernel
                elif name.startswith("weight_hh"):
                    recurrent(parameter)
                elif name.startswith("bias_ih"):
                    bias(parameter)
                    if self.unit_forget_bias:  # gate order i, f, g, o: the forget gate is the second block
                        parameter[self.units:2 * self.units] = 1.0
                else:  # bias_hh: zero, so b_ih + b_hh is the single Keras bias
                    parameter.zero_()
        self.rnn.train(self.training)  # created after any .eval(): follow it (inter-layer dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, lengths: Any = None,
                initial_state: torch.Tensor | Sequence[torch.Tensor] | None = None):
        if self.go_backwards:
            x = x.flip(1)
            if mask is None and lengths is not None:  # reversed post-padding is pre-padding: use a mask
                mask = torch.arange(x.shape[1], device=x.device) < torch.as_tensor(lengths, device=x.device)[:, None]
            mask = None if mask is None else mask.flip(1)
        hx = None if initial_state is None else self._torch_state(initial_state)
        if mask is not None:
            output, state = self._run_masked(x, mask.to(torch.bool), hx)
        elif lengths is not None:
            output, state = self._run_packed(x, lengths, hx)
        else:
            output, state = self.rnn(x, hx)  # (N, T, D * units)
        states = state if isinstance(state, tuple) else (state,)  # each (L * D, N, units)

        if self.return_sequences:
            result = output
            if self.bidirectional and self.merge_mode != "concat":
                result = _MERGES[self.merge_mode](*output.chunk(2, dim=-1))
        else:
            top = states[0][-self.num_directions:]  # final h of the top layer, per direction: (D, N, units)
            result = top[0] if not self.bidirectional else _MERGES[self.merge_mode](top[0], top[1])
        if not self.return_state:
            return result
        if self.num_layers * self.num_directions == 1:
            states = tuple(s[0] for s in states)  # (N, units), Keras's shape
        return (result, *states)

    def _run_packed(self, x, lengths, hx):
        # host sync: pack_padded_sequence needs the lengths on the CPU. Empty sequences run one padded step.
        lengths = torch.as_tensor(lengths).cpu().clamp(min=1)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        output, state = self.rnn(packed, hx)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=x.shape[1])
        return output, state

    def _run_masked(self, x, mask, hx):
        # Any mask (pre-padding, holes): move each row's real steps to the front in time order,
        # run them packed, then put every output back at the step it belongs to.
        order = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True).unsqueeze(-1)  # (N, T, 1)
        output, state = self._run_packed(x.gather(1, order.expand_as(x)), mask.sum(1), hx)
        return torch.empty_like(output).scatter_(1, order.expand_as(output), output), state

    def _torch_state(self, initial_state):
        states = (initial_state,) if isinstance(initial_state, torch.Tensor) else tuple(initial_state)
        if len(states) != len(self.state_names):
            raise ValueError(f"Layer '{self.display_name}' ({type(self).__name__}) expects initial_state "
                             f"({', '.join(self.state_names)}): {len(self.state_names)} tensor(s). "
                             f"Received: {len(states)} tensor(s)")
        states = tuple(s.unsqueeze(0) if s.dim() == 2 else s for s in states)  # (N, units) -> (1, N, units)
        return states if len(states) > 1 else states[0]

    def compute_mask(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """The input mask for sequence outputs (reversed with ``go_backwards``), None for a last output."""
        if mask is None or not self.return_sequences:
            return None
        return mask.flip(1) if self.go_backwards else mask


class SimpleRNN(Recurrent):
    """Fully connected recurrent layer (Elman): ``h_t = activation(W x_t + U h_{t-1} + b)``.

    Args:
        units: size of the hidden state.
        activation: "tanh" or "relu" (the two the fused kernel has).
        **kwargs: see :class:`Recurrent` (return_sequences, return_state, bidirectional, ...).

    Example:
        >>> import torch
        >>> SimpleRNN(8, return_sequences=True)(torch.randn(2, 5, 3)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(self, units: int, activation: str = "tanh", **kwargs):
        super().__init__(units, **kwargs)
        if activation not in ("tanh", "relu"):
            raise ValueError(f"SimpleRNN expects activation 'tanh' or 'relu'. Received: activation={activation!r}")
        self.activation = activation

    def module_options(self):
        return {"nonlinearity": self.activation}


class LSTM(Recurrent):
    """Long short-term memory (Hochreiter & Schmidhuber 1997), with forget gate (Gers et al. 2000).

    Args:
        units: size of the hidden and cell states.
        unit_forget_bias: start the forget-gate bias at 1 (Jozefowicz et al. 2015), as Keras does.
        **kwargs: see :class:`Recurrent`.

    Returns the output, and with ``return_state`` also the final ``h`` and ``c``.

    Example:
        >>> import torch
        >>> output, h, c = LSTM(8, return_state=True)(torch.randn(2, 5, 3))
        >>> output.shape, h.shape, c.shape
        (torch.Size([2, 8]), torch.Size([2, 8]), torch.Size([2, 8]))
    """

    torch_module = nn.LSTM
    state_names = ("h", "c")

    def __init__(self, units: int, unit_forget_bias: bool = True, **kwargs):
        super().__init__(units, **kwargs)
        self.unit_forget_bias = unit_forget_bias


class GRU(Recurrent):
    """Gated recurrent unit (Cho et al. 2014), Keras's ``reset_after=True`` variant (PyTorch's and cuDNN's).

    Args:
        units: size of the hidden state.
        **kwargs: see :class:`Recurrent`.
    """

    torch_module = nn.GRU


class Bidirectional(Layer):
    """Keras's bidirectional wrapper: runs ``layer`` forwards and backwards and merges the outputs.

    The wrapped layer's configuration is reused with ``bidirectional=True``; the forward and backward
    directions then run in one fused kernel. ``Bidirectional(LSTM(32), merge_mode="sum")`` equals
    ``LSTM(32, bidirectional=True, merge_mode="sum")``, including the state layout with
    ``return_state`` (see :class:`Recurrent`).

    Args:
        layer: an unbuilt :class:`SimpleRNN`, :class:`LSTM` or :class:`GRU`.
        merge_mode: "concat", "sum", "mul" or "ave".

    Call arguments: as the wrapped layer (x, mask, lengths, initial_state).

    Example:
        >>> import torch
        >>> Bidirectional(GRU(4, return_sequences=True))(torch.randn(2, 5, 3)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(self, layer: Recurrent, merge_mode: str = "concat", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(layer, Recurrent):
            raise TypeError(f"Bidirectional wraps a SimpleRNN, LSTM or GRU layer. Received: {type(layer).__name__}")
        if layer.built or layer.bidirectional:
            raise ValueError(f"Bidirectional expects an unbuilt, one-directional layer (its configuration is "
                             f"reused). Received: '{layer.display_name}' with built={layer.built}, "
                             f"bidirectional={layer.bidirectional}")
        self.merge_mode = merge_mode
        self.layer = type(layer).from_config({**layer.get_config(), "bidirectional": True, "merge_mode": merge_mode})

    def forward(self, x, mask=None, lengths=None, initial_state=None):
        return self.layer(x, mask=mask, lengths=lengths, initial_state=initial_state)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)
