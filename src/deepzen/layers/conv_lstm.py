"""ConvLSTM2D: an LSTM whose input and recurrent transformations are convolutions (Shi et al. 2015).

For sequences of images (video frames, radar maps): each step's gates are computed by a 2-d convolution
of the frame plus a "same" convolution of the previous hidden state, so the state keeps its spatial
layout. Gates i, f, c, o and the equations are Keras's LSTM's; the time loop is Python (PyTorch has
no fused ConvLSTM kernel).

Example:
    >>> import torch
    >>> layer = ConvLSTM2D(8, 3, padding="same", return_sequences=True)
    >>> layer(torch.randn(2, 5, 1, 16, 16)).shape   # (N, T, C, H, W), channels first
    torch.Size([2, 5, 8, 16, 16])
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from deepzen import config
from deepzen.layers.base import Layer, shape_str
from deepzen.layers.conv import conv_output_length, describe, normalize_padding, normalize_tuple, plan_padding


def _activation(identifier: Any):
    from deepzen import activations

    return activations.get(identifier)


class ConvLSTM2D(Layer):
    """Convolutional LSTM over ``(N, T, C, H, W)`` (channels first) or ``(N, T, H, W, C)`` (channels last).

    Args:
        filters: channels of the hidden state and output.
        kernel_size, strides, padding, dilation_rate: of the input convolution (see ``Conv2D``); the
            recurrent convolution uses the same kernel size with stride 1 and "same" padding.
        data_format: ``"channels_first"`` / ``"channels_last"`` (default: the global setting).
        activation / recurrent_activation: "tanh" / "sigmoid", as in Keras.
        use_bias, kernel_initializer, recurrent_initializer, bias_initializer: as in ``LSTM``.
        unit_forget_bias: add 1 to the forget gate's bias at initialization.
        return_sequences: return every step ``(N, T, filters, H', W')`` instead of the last one.
        return_state: also return the final ``h`` and ``c``.
        go_backwards: read the sequence from its end.

    Call arguments:
        x: ``(N, T, C, H, W)`` (or channels last). initial_state: optional ``(h, c)``.

    Weights: ``kernel`` ``(4 * filters, C, kh, kw)``, ``recurrent_kernel`` ``(4 * filters, filters, kh, kw)``,
    ``bias`` ``(4 * filters,)``.
    """

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid", data_format: str | None = None,
                 dilation_rate=1, activation: Any = "tanh", recurrent_activation: Any = "sigmoid",
                 use_bias: bool = True, kernel_initializer: Any = "glorot_uniform",
                 recurrent_initializer: Any = "orthogonal", bias_initializer: Any = "zeros",
                 unit_forget_bias: bool = True, return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, **kwargs):
        super().__init__(**kwargs)
        where = describe(self)
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            raise ValueError(f"{where} expects filters to be a positive integer. Received: filters={filters!r}")
        self.filters = filters
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size", where)
        self.strides = normalize_tuple(strides, 2, "strides", where)
        self.dilation_rate = normalize_tuple(dilation_rate, 2, "dilation_rate", where)
        self.padding = normalize_padding(padding, 2, where, explicit=False)
        self.data_format = config.normalize_data_format(data_format, where)
        self._init_arguments["data_format"] = self.data_format  # saved resolved: independent of the global
        self.activation, self.recurrent_activation = _activation(activation), _activation(recurrent_activation)
        self.use_bias, self.unit_forget_bias = use_bias, unit_forget_bias
        self.kernel_initializer, self.recurrent_initializer = kernel_initializer, recurrent_initializer
        self.bias_initializer = bias_initializer
        self.return_sequences, self.return_state, self.go_backwards = return_sequences, return_state, go_backwards
        self._input_padding, self._input_pad = plan_padding(self.padding, self.kernel_size, self.strides,
                                                            self.dilation_rate)
        self._state_padding, self._state_pad = plan_padding("same", self.kernel_size, (1, 1), self.dilation_rate)

    def build(self, input_shape):
        if len(input_shape) != 5:
            axes = "(batch, time, channels, height, width)" if self.data_format == "channels_first" \
                else "(batch, time, height, width, channels)"
            raise ValueError(f"Layer '{self.display_name}' (ConvLSTM2D) expects inputs of shape {axes}. "
                             f"Received: input_shape={shape_str((None, *input_shape[1:]))}")
        channels = input_shape[2] if self.data_format == "channels_first" else input_shape[-1]
        spatial = input_shape[3:] if self.data_format == "channels_first" else input_shape[2:4]
        self.output_spatial = tuple(conv_output_length(*axis) for axis in zip(spatial, self.kernel_size, self.strides,
                                                                                (self.padding,) * 2,
                                                                                self.dilation_rate))
        if min(self.output_spatial) < 1:
            raise ValueError(f"Layer '{self.display_name}' (ConvLSTM2D): frames of size {tuple(spatial)} are smaller "
                             f"than kernel_size={self.kernel_size} with padding={self.padding!r}")
        self.kernel = self.new_parameter((4 * self.filters, channels, *self.kernel_size), self.kernel_initializer)
        self.recurrent_kernel = self.new_parameter((4 * self.filters, self.filters, *self.kernel_size),
                                                   self.recurrent_initializer)
        self.bias = self.new_parameter((4 * self.filters,), self.bias_initializer) if self.use_bias else None
        if self.bias is not None and self.unit_forget_bias:
            with torch.no_grad():
                self.bias[self.filters:2 * self.filters] += 1.0

    def forward(self, x, initial_state=None):
        if self.data_format == "channels_last":
            x = x.permute(0, 1, 4, 2, 3)  # (N, T, C, H, W)
        batch, steps = x.shape[:2]
        frames = x.reshape(batch * steps, *x.shape[2:])
        if self._input_pad is not None:
            frames = self._input_pad(frames)
        # The input convolution of every step at once: (N * T, 4 * filters, H', W').
        gates_in = F.conv2d(frames, self.kernel, self.bias, self.strides, self._input_padding, self.dilation_rate)
        gates_in = gates_in.reshape(batch, steps, *gates_in.shape[1:])
        if initial_state is None:
            h = x.new_zeros(batch, self.filters, *self.output_spatial)
            c = torch.zeros_like(h)
        else:
            h, c = (s.permute(0, 3, 1, 2) if self.data_format == "channels_last" else s for s in initial_state)
        outputs = []
        order = range(steps - 1, -1, -1) if self.go_backwards else range(steps)
        gate = self.recurrent_activation
        for t in order:
            state = self._state_pad(h) if self._state_pad is not None else h
            z = gates_in[:, t] + F.conv2d(state, self.recurrent_kernel, None, 1, self._state_padding,
                                          self.dilation_rate)
            i, f, g, o = z.chunk(4, dim=1)
            c = gate(f) * c + gate(i) * self.activation(g)
            h = gate(o) * self.activation(c)
            if self.return_sequences:
                outputs.append(h)
        result = torch.stack(outputs, dim=1) if self.return_sequences else h
        states = (h, c)
        if self.data_format == "channels_last":
            result = result.movedim(-3, -1)
            states = tuple(s.permute(0, 2, 3, 1) for s in states)
        return (result, *states) if self.return_state else result
