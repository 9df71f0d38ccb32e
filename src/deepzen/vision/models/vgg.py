"""VGG (Simonyan & Zisserman 2015, "Very deep convolutional networks for large-scale image recognition").

Configurations A, B, D and E of the paper's Table 1 (VGG-11/13/16/19): five stages of 3x3
convolutions (64, 128, 256, 512, 512 channels), each closed by a 2x2 max pool, then two
4096-wide fully connected layers. The ``_bn`` variants put BatchNorm after every convolution
(a later, common addition). An adaptive average pool to 7x7 before the classifier lets inputs
from 32x32 up work; at 224x224 it is the identity.
"""

from __future__ import annotations

from torch import nn

from deepzen.vision.models.base import ImageClassifier
from deepzen.vision.models.registry import register_model

STAGE_WIDTHS = (64, 128, 256, 512, 512)
DEPTHS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


class VGG(ImageClassifier):
    """VGG network.

    Args:
        depth: 11, 13, 16 or 19 weight layers.
        batch_norm: BatchNorm after each convolution.
        num_classes: output classes.
        in_channels: image channels.
        dropout: dropout rate after each hidden fully connected layer (0.5 in the paper).

    Call arguments:
        x: (N, in_channels, H, W) images, H and W >= 32 (224 in the paper).

    Returns:
        (N, num_classes) logits.
    """

    min_input_size = 32
    # torchvision's VGG: the same ``features`` indices; its ``classifier`` Sequential holds the three linear layers
    # at 0, 3 and 6, which are ``pre_logits`` 2 and 5 (after the pool and the flatten) and ``classifier`` here.
    torchvision_names = (
        (r"features\.(.+)", r"features.\1"),
        (r"classifier\.0\.(.+)", r"pre_logits.2.\1"),
        (r"classifier\.3\.(.+)", r"pre_logits.5.\1"),
        (r"classifier\.6\.(.+)", r"classifier.\1"),
    )

    def __init__(self, depth: int, *, batch_norm: bool = False, num_classes: int = 1000, in_channels: int = 3,
                 dropout: float = 0.5):
        super().__init__(num_classes=num_classes, in_channels=in_channels)
        if depth not in DEPTHS:
            raise ValueError(f"VGG: expected depth to be one of {', '.join(map(str, DEPTHS))}. "
                             f"Received: depth={depth!r}")
        layers: list[nn.Module] = []
        channels = in_channels
        for width, convs in zip(STAGE_WIDTHS, DEPTHS[depth]):
            for _ in range(convs):
                layers.append(nn.Conv2d(channels, width, 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.ReLU(inplace=True))
                channels = width
            layers.append(nn.MaxPool2d(2))  # halves H and W: 224 -> 112 -> 56 -> 28 -> 14 -> 7
        self.features = nn.Sequential(*layers)  # (N, 512, H/32, W/32)
        self.pre_logits = nn.Sequential(
            nn.AdaptiveAvgPool2d(7),
            nn.Flatten(),  # (N, 25088)
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.num_features = 4096
        self.classifier = self.make_classifier(self.num_features, num_classes)
        self.init_weights()


@register_model
def vgg11(**kwargs) -> VGG:
    """VGG-11 (configuration A), 132.9M parameters."""
    return VGG(11, **kwargs)


@register_model
def vgg13(**kwargs) -> VGG:
    """VGG-13 (configuration B), 133.0M parameters."""
    return VGG(13, **kwargs)


@register_model
def vgg16(**kwargs) -> VGG:
    """VGG-16 (configuration D), 138.4M parameters."""
    return VGG(16, **kwargs)


@register_model
def vgg19(**kwargs) -> VGG:
    """VGG-19 (configuration E), 143.7M parameters."""
    return VGG(19, **kwargs)


@register_model
def vgg11_bn(**kwargs) -> VGG:
    """VGG-11 with BatchNorm."""
    return VGG(11, batch_norm=True, **kwargs)


@register_model
def vgg13_bn(**kwargs) -> VGG:
    """VGG-13 with BatchNorm."""
    return VGG(13, batch_norm=True, **kwargs)


@register_model
def vgg16_bn(**kwargs) -> VGG:
    """VGG-16 with BatchNorm."""
    return VGG(16, batch_norm=True, **kwargs)


@register_model
def vgg19_bn(**kwargs) -> VGG:
    """VGG-19 with BatchNorm."""
    return VGG(19, batch_norm=True, **kwargs)
