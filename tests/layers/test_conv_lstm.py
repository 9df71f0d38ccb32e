"""ConvLSTM2D: with 1x1 kernels on 1x1 frames it is an LSTM; channels-last equals channels-first."""

import doctest

import pytest
import torch

from deepzen.layers import conv_lstm
from deepzen.layers.conv_lstm import ConvLSTM2D
from deepzen.layers.recurrent import LSTM


def test_docstrings_run():
    result = doctest.testmod(conv_lstm)
    assert result.attempted > 0 and result.failed == 0


def test_one_by_one_conv_lstm_is_an_lstm():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 3)  # (N, T, F)
    conv = ConvLSTM2D(4, 1, return_sequences=True, return_state=True, bias_initializer="random_normal")
    lstm = LSTM(4, return_sequences=True, return_state=True)
    out, h, c = conv(x[:, :, :, None, None])
    lstm(x)
    with torch.no_grad():
        lstm.rnn.weight_ih_l0.copy_(conv.kernel[:, :, 0, 0])
        lstm.rnn.weight_hh_l0.copy_(conv.recurrent_kernel[:, :, 0, 0])
        lstm.rnn.bias_ih_l0.copy_(conv.bias)
        lstm.rnn.bias_hh_l0.zero_()
    expected, expected_h, expected_c = lstm(x)
    torch.testing.assert_close(out[..., 0, 0], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h[..., 0, 0], expected_h, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c[..., 0, 0], expected_c, atol=1e-5, rtol=1e-5)


def test_channels_last_matches_channels_first_and_shapes():
    torch.manual_seed(1)
    x = torch.randn(2, 4, 3, 9, 8)  # (N, T, C, H, W)
    first = ConvLSTM2D(5, (3, 2), strides=2, padding="same", data_format="channels_first")
    last = ConvLSTM2D(5, (3, 2), strides=2, padding="same", data_format="channels_last")
    expected = first(x)
    last(x.permute(0, 1, 3, 4, 2))
    last.load_state_dict(first.state_dict())
    assert expected.shape == (2, 5, 5, 4)
    torch.testing.assert_close(last(x.permute(0, 1, 3, 4, 2)), expected.permute(0, 2, 3, 1))
    assert ConvLSTM2D(2, 3, return_sequences=True)(torch.randn(1, 3, 1, 7, 7)).shape == (1, 3, 2, 5, 5)
    with pytest.raises(ValueError, match=r"\(batch, time, channels, height, width\)"):
        ConvLSTM2D(2, 3)(torch.randn(1, 3, 7, 7))
