"""Keras 1/2 spellings of layer arguments (issue 15, item 9): converted with a DeprecationWarning naming the
new spelling; unknown arguments list the valid ones."""

import doctest
import warnings

import pytest
import torch

import deepzen.layers as layers
from deepzen.layers import legacy
from deepzen.layers.conv import Conv1D, Conv2D, Conv3D


def test_docstrings_run():
    result = doctest.testmod(legacy)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("make, attribute, expected, new_name", [
    (lambda: layers.Dense(output_dim=4), "units", 4, "units="),
    (lambda: layers.Dense(3, init="he_normal"), "kernel_initializer", "he_normal", "kernel_initializer="),
    (lambda: layers.Dense(3, bias=False), "use_bias", False, "use_bias="),
    (lambda: Conv2D(8, 3, border_mode="same"), "padding", "same", "padding="),
    (lambda: Conv2D(8, 3, subsample=(2, 2)), "strides", (2, 2), "strides="),
    (lambda: Conv2D(8, 3, dim_ordering="tf"), "data_format", "channels_last", "data_format="),
    (lambda: Conv1D(nb_filter=8, filter_length=5), "kernel_size", (5,), "kernel_size="),
    (lambda: Conv2D(nb_filter=8, nb_row=3, nb_col=5), "kernel_size", (3, 5), "kernel_size="),
    (lambda: layers.MaxPooling2D(border_mode="same"), "padding", "same", "padding="),
    (lambda: layers.MaxPooling1D(pool_length=3, stride=1), "pool_size", (3,), "pool_size="),
    (lambda: layers.LeakyReLU(alpha=0.1), "negative_slope", 0.1, "negative_slope="),
    (lambda: layers.Dropout(p=0.3), "rate", 0.3, "rate="),
    (lambda: layers.Embedding(10, 4, init="uniform"), "embeddings_initializer", "uniform", "embeddings_initializer="),
    (lambda: layers.LSTM(output_dim=5, inner_init="orthogonal"), "units", 5, "units="),
])
def test_keras1_spelling_converts_and_warns_naming_the_new_one(make, attribute, expected, new_name):
    with pytest.warns(DeprecationWarning, match=f"use {new_name}"):
        layer = make()
    assert getattr(layer, attribute) == expected


def test_regularizers_convert():
    with pytest.warns(DeprecationWarning, match="kernel_regularizer"):
        layer = layers.Dense(2, W_regularizer="l2", b_regularizer="l1")
    assert layer.kernel_regularizer is not None and layer.bias_regularizer is not None


def test_converted_layer_saves_with_the_new_names():
    with pytest.warns(DeprecationWarning):
        layer = layers.Dense(output_dim=4, init="he_normal")
    config = layer.get_config()
    assert config["units"] == 4 and config["kernel_initializer"] == "he_normal" and "output_dim" not in config


def test_embedding_input_length_is_accepted_and_ignored_as_in_keras3():
    with pytest.warns(DeprecationWarning, match="input_length=.*ignored"):
        layer = layers.Embedding(100, 8, input_length=10)
    assert layer(torch.randint(0, 100, (2, 12))).shape == (2, 12, 8)
    assert "input_length" not in layer.get_config()


@pytest.mark.parametrize("factory, args, expected_class, kernel", [
    (layers.Convolution2D, (32, 3, 3), Conv2D, (3, 3)),
    (layers.Convolution1D, (16, 5), Conv1D, (5,)),
    (layers.Convolution3D, (4, 2, 3, 3), Conv3D, (2, 3, 3)),
])
def test_convolution_aliases(factory, args, expected_class, kernel):
    with pytest.warns(DeprecationWarning, match=f"use {expected_class.__name__}"):
        layer = factory(*args, border_mode="same")
    assert type(layer) is expected_class and layer.kernel_size == kernel and layer.padding == "same"


def test_textbook_convolution2d_line_runs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        layer = layers.Convolution2D(32, 3, 3, border_mode="valid", subsample=(1, 1), init="glorot_uniform",
                                     activation="relu", W_regularizer="l2")
    assert layer(torch.zeros(1, 1, 28, 28)).shape == (1, 32, 26, 26)


def test_old_and_new_spelling_together_is_an_error():
    with pytest.raises(TypeError, match="both output_dim=.*and units="):
        layers.Dense(3, output_dim=4)


def test_unknown_argument_lists_the_valid_ones():
    with pytest.raises(TypeError, match=r"Dense got unexpected argument\(s\): unitz\. Valid arguments: units, "
                                        r"activation, .*name, input_shape, input_dim"):
        layers.Dense(unitz=3)
    with pytest.raises(TypeError, match=r"Conv2D got unexpected argument\(s\): kernal_size.*data_format"):
        Conv2D(4, kernal_size=3)


def test_a_layer_own_argument_is_not_renamed():
    class Scale(layers.Layer):
        def __init__(self, bias=0.0, **kwargs):  # its own "bias", not Keras 1's use_bias
            super().__init__(**kwargs)
            self.bias = bias

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Scale(bias=2.0).bias == 2.0

    class Strict(layers.Layer):
        def __init__(self, units):
            super().__init__()

    with pytest.raises(TypeError, match="Strict got unexpected argument.*: size. Valid arguments: units"):
        Strict(size=3)


def test_more_of_the_keras2_table():
    with pytest.warns(DeprecationWarning, match="use alpha_initializer="):
        assert layers.PReLU(init="ones").alpha_initializer == "ones"
    with pytest.warns(DeprecationWarning, match="use unit_forget_bias="):
        assert layers.LSTMCell(3, forget_bias_init="zero").unit_forget_bias is False
    with pytest.warns(DeprecationWarning, match="use dilation_rate="):
        layer = layers.AtrousConvolution2D(4, 3, 3, atrous_rate=(2, 2))
    assert type(layer) is Conv2D and layer.dilation_rate == (2, 2)
    with pytest.warns(DeprecationWarning, match="use Conv2DTranspose"):
        assert type(layers.Deconvolution2D(4, 3, 3)) is layers.Conv2DTranspose
    with pytest.warns(DeprecationWarning, match="use stddev="):
        assert layers.GaussianNoise(sigma=0.2).stddev == 0.2
    with pytest.warns(DeprecationWarning, match="use size="):
        assert layers.UpSampling1D(length=3).size == (3,)
    with pytest.warns(DeprecationWarning, match="mode=.*ignored"):
        layers.BatchNormalization(mode=0)
