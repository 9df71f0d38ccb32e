"""Vision plots: each writes a PNG and returns a figure with the expected panels and content."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepzen.layers import Conv2D
from deepzen.vision import models
from deepzen.vision.plots import feature_maps, plot_confusion_matrix, plot_feature_maps, plot_misclassified

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_SIGNATURE


def image_panels(figure) -> list:
    return [axis for axis in figure.axes if axis.images]


def test_confusion_matrix_labels_every_nonzero_cell_with_its_count(tmp_path):
    matrix = np.array([[50, 2, 0], [1, 40, 9], [0, 0, 33]])
    figure = plot_confusion_matrix(matrix, tmp_path / "cm.png", class_names=["cat", "dog", "eel"], title="t")
    assert is_png(tmp_path / "cm.png")
    assert len(image_panels(figure)) == 1 and len(figure.axes) == 2  # the matrix and its colour bar
    axis = image_panels(figure)[0]
    cells = {(round(text.get_position()[1]), round(text.get_position()[0])): int(text.get_text())
             for text in axis.texts}
    assert cells == {(r, c): int(matrix[r, c]) for r in range(3) for c in range(3) if matrix[r, c]}
    np.testing.assert_allclose(axis.images[0].get_array(), matrix / matrix.sum(1, keepdims=True))
    assert [tick.get_text() for tick in axis.get_yticklabels()] == ["cat", "dog", "eel"]
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(np.zeros((2, 3)), tmp_path / "bad.png")


@pytest.mark.parametrize("count, channels", [(7, 1), (2, 3)])
def test_misclassified_grid_has_one_titled_panel_per_image(tmp_path, count, channels):
    rng = np.random.default_rng(0)
    images = rng.random((count, channels, 10, 10)).astype(np.float32)
    y_true, y_pred = rng.integers(0, 3, count), rng.integers(0, 3, count)
    names = ("zero", "one", "two")
    figure = plot_misclassified(images, y_true, y_pred, tmp_path / "wrong.png", class_names=names,
                                confidences=np.full(count, 0.5), columns=3)
    assert is_png(tmp_path / "wrong.png")
    panels = image_panels(figure)
    assert len(panels) == count
    assert [axis.get_title() for axis in panels] == [f"{names[t]} → {names[p]} (50%)" for t, p in zip(y_true, y_pred)]
    shown = panels[0].images[0].get_array()
    if channels == 1:
        np.testing.assert_allclose(shown, images[0, 0])
    else:  # RGB, min-max scaled
        expected = (images[0].transpose(1, 2, 0) - images[0].min()) / (images[0].max() - images[0].min())
        np.testing.assert_allclose(shown, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="one label"):
        plot_misclassified(images, y_true[:1], y_pred, tmp_path / "x.png")


def test_feature_maps_are_the_convolution_output(tmp_path):
    torch.manual_seed(0)
    net = models.create("lenet5")
    image = torch.randn(1, 28, 28)
    name, maps = feature_maps(net, image)  # default: the first convolution
    conv = net.features[0]
    assert name == "features.0"
    torch.testing.assert_close(maps, F.conv2d(image[None], conv.weight, conv.bias, padding=2)[0])
    figure = plot_feature_maps(net, image.numpy(), tmp_path / "maps.png")
    assert is_png(tmp_path / "maps.png")
    assert len(image_panels(figure)) == 1 + 6  # the input, then LeNet's six C1 maps
    figure = plot_feature_maps(net, image, tmp_path / "c3.png", layer="features.3", max_maps=10)
    assert len(image_panels(figure)) == 1 + 10
    np.testing.assert_allclose(image_panels(figure)[1].images[0].get_array(),
                               feature_maps(net, image, net.features[3])[1][0].numpy())
    with pytest.raises(ValueError, match="features.0, features.3.*layer='conv9'"):
        plot_feature_maps(net, image, tmp_path / "x.png", layer="conv9")


def test_feature_maps_find_deepzen_conv_layers(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(Conv2D(4, 3, padding="same"), nn.ReLU())
    image = torch.randn(3, 9, 9)
    name, maps = feature_maps(net, image)
    assert name == "0" and maps.shape == (4, 9, 9)
    figure = plot_feature_maps(net, image, tmp_path / "maps.png", layer="1")
    assert len(image_panels(figure)) == 1 + 4
    assert float(image_panels(figure)[1].images[0].get_array().min()) >= 0.0  # after the ReLU
