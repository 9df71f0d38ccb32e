"""Image layout (issue 15, item 7): data_format on every image layer, Keras's global setting, and the
warning for channels-last-looking shapes under channels_first."""

import doctest
import warnings

import pytest
import torch

import deepzen.config
from deepzen import config
from deepzen.layers import image_layout
from deepzen.layers.conv import Conv1D, Conv2D, Conv2DTranspose, Conv3D, DepthwiseConv2D, SeparableConv2D
from deepzen.layers import LSTM, Dropout, Embedding, Permute
from deepzen.layers.core import Dense, Flatten, Input
from deepzen.layers.image_layout import ImageLayoutWarning
from deepzen.layers.normalization import BatchNormalization
from deepzen.layers.pooling import (AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling1D, MaxPooling2D,
                                    MaxPooling3D, UpSampling2D, ZeroPadding2D)
from deepzen.models import Sequential


@pytest.fixture(autouse=True)
def default_layout():
    yield
    config.set_image_data_format("channels_first")


def test_global_setting_defaults_to_channels_first_and_validates():
    assert config.image_data_format() == "channels_first"
    config.set_image_data_format("Channels_Last")
    assert config.image_data_format() == "channels_last"
    with pytest.raises(ValueError, match="data_format.*Received: data_format='nhwc'"):
        config.set_image_data_format("nhwc")
    with pytest.raises(ValueError, match="Conv2D expects data_format"):
        Conv2D(4, 3, data_format="NCHW")


def test_config_docstring_runs():
    result = doctest.testmod(deepzen.config)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (8, 8, 1), (64, 64, 4)])
def test_channels_last_looking_input_warns_and_names_the_setting(shape):
    with pytest.warns(ImageLayoutWarning, match="data_format='channels_last'.*set_image_data_format"):
        Conv2D(4, 3, padding="same")(torch.zeros(2, *shape))


def test_sequential_with_channels_last_input_shape_warns():
    with pytest.warns(ImageLayoutWarning, match=r"\(None, 28, 28, 1\)"):
        model = Sequential([Input((28, 28, 1)), Conv2D(8, 3, padding="same"), Flatten(), Dense(10)])
        model(torch.zeros(2, 28, 28, 1))
    with pytest.warns(ImageLayoutWarning), pytest.raises(ValueError, match="max_pooling2d"):
        # read as 28 channels of 28x1 images: the warning comes first, then the pooling cannot fit
        Sequential([Input((28, 28, 1)), Conv2D(8, 3, padding="same"), MaxPooling2D()])(torch.zeros(2, 28, 28, 1))
    with pytest.warns(ImageLayoutWarning, match=r"\(None, 32, 32, 3\)"):
        model = Sequential([Conv2D(8, 3, padding="same", input_shape=(32, 32, 3)), Flatten(), Dense(10)])
        model(torch.zeros(2, 32, 32, 3))
    with pytest.warns(ImageLayoutWarning):
        MaxPooling3D(padding="same")(torch.zeros(1, 16, 16, 16, 1))


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (16, 5, 7, 4)[:3]])
def test_channels_first_inputs_and_declared_channels_last_do_not_warn(shape):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Conv2D(4, 3, padding="same")(torch.zeros(2, *shape))
        Conv2D(4, 3, data_format="channels_last")(torch.zeros(2, 28, 28, 1))
        Conv1D(4, 3)(torch.zeros(2, 100, 3))  # sequences: no heuristic in 1-d
        config.set_image_data_format("channels_last")
        Conv2D(4, 3)(torch.zeros(2, 28, 28, 1))


def _text_model(*middle, lazy=False):
    head = [] if lazy else [Input((50,), dtype="int64")]
    return Sequential([*head, Embedding(100, 8), *middle, GlobalMaxPooling1D(), Dense(1)])


@pytest.mark.parametrize("middle", [
    lambda: [],
    lambda: [Conv1D(6, 3)],
    lambda: [Dropout(0.2), Conv1D(6, 3)],  # the tag passes through shape-keeping layers
    lambda: [LSTM(4, return_sequences=True)],
])
@pytest.mark.parametrize("lazy", [False, True])
def test_keras_text_models_under_channels_first_warn_that_1d_layers_read_channels_then_steps(middle, lazy):
    # Keras's text examples (Embedding -> Conv1D / pooling 1-d) would otherwise convolve over the embedding
    # dimensions, the 50 steps read as channels, without a word
    with pytest.warns(ImageLayoutWarning, match=r"received \(None, \d+, \d+\) from an Embedding or a recurrent "
                                                r"layer.*data_format='channels_last'"):
        model = _text_model(*middle(), lazy=lazy)
        model(torch.randint(1, 100, (2, 50)))


def test_keras_text_models_in_the_steps_features_layout_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = Sequential([Input((50,), dtype="int64"), Embedding(100, 8),
                            Conv1D(6, 3, data_format="channels_last"), GlobalMaxPooling1D(data_format="channels_last"),
                            Dense(1)])
        assert tuple(model(torch.randint(1, 100, (2, 50))).shape) == (2, 1)
        model = _text_model(Permute((2, 1)), Conv1D(6, 3))  # PyTorch's way: channels (the features) first
        assert tuple(model(torch.randint(1, 100, (2, 50))).shape) == (2, 1)
        config.set_image_data_format("channels_last")
        _text_model(Conv1D(6, 3))(torch.randint(1, 100, (2, 50)))


def test_conv2d_channels_last_takes_and_returns_nhwc():
    out = Conv2D(6, 5, data_format="channels_last")(torch.randn(2, 32, 32, 3))  # Keras's LeNet C1
    assert out.shape == (2, 28, 28, 6)
    layer = MaxPooling2D(2, data_format="channels_last")
    assert layer(torch.randn(2, 28, 28, 6)).shape == (2, 14, 14, 6)
    assert layer.compute_output_shape((2, 28, 28, 6)) == (2, 14, 14, 6)


def test_channels_last_error_names_the_layout():
    with pytest.raises(ValueError, match=r"\(batch, height, width, channels\), channels last .*"
                                         r"Received: input_shape=\(None, 8, 3\)"):
        Conv2D(4, 3, data_format="channels_last")(torch.zeros(1, 8, 3))


def _image_stack(data_format):
    return Sequential([
        Conv2D(4, 3, padding="same", activation="relu", data_format=data_format),
        BatchNormalization(axis=1 if data_format == "channels_first" else -1),
        ZeroPadding2D(((1, 0), (0, 2)), data_format=data_format),
        MaxPooling2D(2, padding="same", data_format=data_format),
        DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same", data_format=data_format),
        SeparableConv2D(5, 3, padding="same", data_format=data_format),
        UpSampling2D(2, interpolation="bilinear", data_format=data_format),
        AveragePooling2D(3, strides=2, padding="same", data_format=data_format),
        Conv2DTranspose(3, 4, strides=2, padding="same", data_format=data_format),
        GlobalAveragePooling2D(keepdims=True, data_format=data_format),
    ])


def test_channels_last_model_matches_channels_first_on_transposed_input():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 17, 13)  # (N, C, H, W)
    first, last = _image_stack("channels_first"), _image_stack("channels_last")
    first(x), last(x.permute(0, 2, 3, 1))
    last.load_state_dict(first.state_dict())  # the weights keep PyTorch's layout in both formats
    for model in (first, last):
        model.eval()
    expected = first(x)
    assert expected.shape == (3, 3, 1, 1)
    torch.testing.assert_close(last(x.permute(0, 2, 3, 1)), expected.permute(0, 2, 3, 1))


def test_global_setting_is_read_at_construction_and_saved_resolved():
    config.set_image_data_format("channels_last")
    conv, pool, norm = Conv3D(2, 3), GlobalMaxPooling1D(), BatchNormalization()
    assert conv.data_format == pool.data_format == "channels_last"
    assert norm.axis == -1  # Keras's default under channels_last
    config.set_image_data_format("channels_first")
    assert Conv2D(2, 3).data_format == "channels_first" and BatchNormalization().axis == 1
    assert conv.get_config()["data_format"] == "channels_last" and norm.get_config()["axis"] == -1
    rebuilt = Conv3D.from_config(conv.get_config())  # loads with the layout it was saved with
    assert rebuilt.data_format == "channels_last"
    assert rebuilt(torch.zeros(1, 5, 5, 5, 7)).shape == (1, 3, 3, 3, 2)
    assert GlobalMaxPooling1D(data_format="channels_last")(torch.zeros(2, 9, 4)).shape == (2, 4)


def test_heuristic():
    assert image_layout.looks_channels_last((28, 28, 1), 2)
    assert not image_layout.looks_channels_last((1, 28, 28), 2)
    assert not image_layout.looks_channels_last((5, 7, 4), 2)
    assert not image_layout.looks_channels_last((100, 3), 1)


def test_config_is_reachable_from_the_package():
    import importlib
    import subprocess
    import sys

    code = "import deepzen; deepzen.config.set_image_data_format('channels_last'); print(deepzen.config.image_data_format())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "channels_last"
    assert importlib.import_module("deepzen").config is config


@pytest.mark.gpu
def test_channels_last_matches_channels_first_on_cuda():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 17, 13, device="cuda")
    first, last = _image_stack("channels_first").cuda(), _image_stack("channels_last").cuda()
    first(x), last(x.permute(0, 2, 3, 1))
    last.load_state_dict(first.state_dict())
    first.eval(), last.eval()
    torch.testing.assert_close(last(x.permute(0, 2, 3, 1)), first(x).permute(0, 2, 3, 1), atol=1e-4, rtol=1e-4)
