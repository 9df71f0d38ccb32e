"""RNN with SimpleRNNCell / LSTMCell / GRUCell: the same numbers as the fused layers (and Keras's equations)."""

import doctest

import pytest
import torch

from deepzen.layers import rnn
from deepzen.layers.base import Layer
from deepzen.layers.recurrent import GRU, LSTM, SimpleRNN
from deepzen.layers.rnn import RNN, GRUCell, LSTMCell, SimpleRNNCell


def test_docstrings_run():
    result = doctest.testmod(rnn)
    assert result.attempted > 0 and result.failed == 0


def _copy_into_fused(cell, fused, block_order=None):
    """Copies a cell's weights into a fused layer's nn.RNN/LSTM/GRU (PyTorch's gate order)."""
    def reorder(t):
        return t if block_order is None else torch.cat([t.chunk(3, 0)[i] for i in block_order])

    with torch.no_grad():
        fused.rnn.weight_ih_l0.copy_(reorder(cell.kernel))
        fused.rnn.weight_hh_l0.copy_(reorder(cell.recurrent_kernel))
        if cell.bias.dim() == 2:  # GRU reset_after: input and recurrent biases
            fused.rnn.bias_ih_l0.copy_(reorder(cell.bias[0]))
            fused.rnn.bias_hh_l0.copy_(reorder(cell.bias[1]))
        else:
            fused.rnn.bias_ih_l0.copy_(reorder(cell.bias))
            fused.rnn.bias_hh_l0.zero_()


@pytest.mark.parametrize("cell_class, fused_class, block_order", [
    (SimpleRNNCell, SimpleRNN, None), (LSTMCell, LSTM, None),
    (GRUCell, GRU, (1, 0, 2)),  # Keras's z, r, h -> PyTorch's r, z, n
])
def test_cell_in_rnn_equals_the_fused_layer(cell_class, fused_class, block_order):
    torch.manual_seed(0)
    x = torch.randn(3, 6, 4)
    cell = cell_class(5, bias_initializer="random_normal")
    layer = RNN(cell, return_sequences=True, return_state=True)
    fused = fused_class(5, return_sequences=True, return_state=True)
    outputs, *states = layer(x)
    fused(x)
    _copy_into_fused(cell, fused, block_order)
    expected, *expected_states = fused(x)
    torch.testing.assert_close(outputs, expected, atol=1e-5, rtol=1e-5)
    for state, expected_state in zip(states, expected_states):
        torch.testing.assert_close(state, expected_state, atol=1e-5, rtol=1e-5)


def test_lstm_cell_one_step_matches_keras_equations():
    torch.manual_seed(1)
    cell = LSTMCell(3)
    x, h, c = torch.randn(2, 4), torch.randn(2, 3), torch.randn(2, 3)
    out, (h_new, c_new) = cell(x, [h, c])
    z = x @ cell.kernel.T + h @ cell.recurrent_kernel.T + cell.bias
    i, f, g, o = z.chunk(4, -1)
    expected_c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    torch.testing.assert_close(c_new, expected_c)
    torch.testing.assert_close(out, torch.sigmoid(o) * torch.tanh(expected_c))
    torch.testing.assert_close(cell.bias[3:6], torch.ones(3))  # unit_forget_bias


def test_gru_reset_before_and_go_backwards():
    torch.manual_seed(2)
    x = torch.randn(2, 5, 3)
    cell = GRUCell(4, reset_after=False)
    forward = RNN(cell, return_sequences=True)
    backward = RNN(cell, go_backwards=True, return_sequences=True)
    torch.testing.assert_close(backward(x), forward(x.flip(1)))
    assert cell.bias.shape == (12,)


def test_mask_carries_states_over_masked_steps():
    torch.manual_seed(3)
    layer = RNN(LSTMCell(4))
    short = torch.randn(2, 3, 2)
    padded = torch.cat([short, torch.randn(2, 2, 2)], dim=1)
    mask = torch.tensor([[True] * 3 + [False] * 2] * 2)
    torch.testing.assert_close(layer(padded, mask=mask), layer(short))


def test_stacked_cells_and_custom_cell():
    class MinimalRNNCell(Layer):  # Keras's guide example of a custom cell
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = units

        def build(self, input_shape):
            self.kernel = self.new_parameter((input_shape[-1], self.units), "glorot_uniform")
            self.recurrent_kernel = self.new_parameter((self.units, self.units), "orthogonal")

        def forward(self, inputs, states):
            output = inputs @ self.kernel + states[0] @ self.recurrent_kernel
            return output, [output]

    out, h1, h2 = RNN([MinimalRNNCell(8), MinimalRNNCell(5)], return_state=True)(torch.randn(4, 7, 3))
    assert out.shape == (4, 5) and h1.shape == (4, 8) and torch.equal(out, h2)


def test_dropout_uses_one_mask_per_sequence_and_only_in_training():
    torch.manual_seed(4)
    cell = SimpleRNNCell(4, dropout=0.5, recurrent_dropout=0.5)
    layer = RNN(cell, return_sequences=True)
    x = torch.randn(2, 5, 3)
    layer.eval()
    first = layer(x)
    torch.testing.assert_close(layer(x), first)  # no dropout at inference
    layer(x, training=True)
    input_mask = cell._masks["input"]
    assert set(input_mask.unique().tolist()) <= {0.0, 2.0}
    with pytest.raises(ValueError, match="dropout in \\[0, 1\\)"):
        LSTMCell(3, dropout=1.0)


def test_errors_and_config():
    with pytest.raises(ValueError, match="stateful"):
        RNN(LSTMCell(3), stateful=True)
    with pytest.raises(TypeError, match="expects a cell"):
        RNN(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"\(batch, timesteps, features\)"):
        RNN(LSTMCell(3))(torch.zeros(2, 3))
    layer = RNN(GRUCell(3, reset_after=False), return_sequences=True)
    rebuilt = RNN.from_config(layer.get_config())
    assert isinstance(rebuilt.cell, GRUCell) and rebuilt.cell.reset_after is False and rebuilt.return_sequences
