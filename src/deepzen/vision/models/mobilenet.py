"""MobileNet v1 (Howard et al. 2017) and v2 (Sandler et al. 2018).

**v1** ("MobileNets: efficient convolutional neural networks for mobile vision"): a 3x3/2 convolution
followed by 13 depthwise separable convolutions (Table 1 of the paper): each is a 3x3 depthwise
convolution (one filter per channel) and a 1x1 pointwise convolution that mixes channels, both with BatchNorm and ReLU. That costs about 1/8 of the multiply-adds of a 3x3
convolution. The width multiplier alpha thins every layer (channels ``max(8, int(alpha * c))``,
as in the TensorFlow release); the resolution multiplier is simply a smaller input.
4.2M parameters at alpha = 1 and 1000 classes.

**v2** ("MobileNetV2: inverted residuals and linear bottlenecks"): after a 3x3/2 convolution, 17
inverted residual blocks (Table 2 of the paper): a 1x1 convolution expands the channels t = 6 times,
a 3x3 depthwise convolution filters them (both with BatchNorm and ReLU6), a 1x1 convolution projects
them back with no activation (the linear bottleneck), and a shortcut adds the input where the shape
allows; then a 1x1 convolution to 1280 channels, average pooling, dropout 0.2 and the classifier.
Widths are rounded to multiples of 8 as in the paper's release. 3.5M parameters (3,504,872, as
torchvision's) at width 1 and 1000 classes; torchvision's weight files load by name.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from deepzen.vision.models.base import ImageClassifier
from deepzen.vision.models.blocks import ConvBNReLU
from deepzen.vision.models.registry import register_model

# (output channels, stride) of the 13 depthwise separable layers.
SEPARABLE_LAYERS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


class DepthwiseSeparableConv(nn.Sequential):
    """3x3 depthwise convolution -> BN -> ReLU -> 1x1 pointwise convolution -> BN -> ReLU.

    Call arguments:
        x: (N, in_channels, H, W).

    Returns:
        (N, out_channels, H / stride, W / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.depthwise = ConvBNReLU(in_channels, in_channels, 3, stride, padding=1, groups=in_channels)
        self.pointwise = ConvBNReLU(in_channels, out_channels, 1)


class MobileNetV1(ImageClassifier):
    """MobileNet v1.

    Args:
        num_classes: output classes.
        in_channels: image channels.
        width_multiplier: alpha in (0, 1] in the paper (1, 0.75, 0.5, 0.25); scales every layer's width.
        dropout: dropout rate before the classifier (none in the paper).

    Call arguments:
        x: (N, in_channels, H, W) images, H and W >= 32 (224 in the paper).

    Returns:
        (N, num_classes) logits.
    """

    min_input_size = 32

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, width_multiplier: float = 1.0,
                 dropout: float = 0.0):
        super().__init__(num_classes=num_classes, in_channels=in_channels)
        if not width_multiplier > 0:
            raise ValueError("MobileNetV1: expected width_multiplier > 0. "
                             f"Received: width_multiplier={width_multiplier!r}")

        def width(channels: int) -> int:
            return max(8, int(channels * width_multiplier))

        layers = [ConvBNReLU(in_channels, width(32), 3, stride=2, padding=1)]  # (N, 32a, H/2, W/2)
        channels = width(32)
        for out_channels, stride in SEPARABLE_LAYERS:
            layers.append(DepthwiseSeparableConv(channels, width(out_channels), stride))
            channels = width(out_channels)
        self.features = nn.Sequential(*layers)  # (N, 1024a, H/32, W/32)
        self.pre_logits = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))  # (N, 1024a)
        self.num_features = channels
        self.classifier = self.make_classifier(self.num_features, num_classes)
        self.init_weights()


@register_model
def mobilenet_v1(**kwargs) -> MobileNetV1:
    """MobileNet v1; ``width_multiplier`` thins it (4.2M parameters at 1.0)."""
    return MobileNetV1(**kwargs)


# (expansion t, output channels c, blocks n, stride s of the first block) of the paper's Table 2.
INVERTED_RESIDUAL_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                            (6, 160, 3, 2), (6, 320, 1, 1))


def round_width(channels: float, divisor: int = 8) -> int:
    """The nearest multiple of ``divisor`` (at least ``divisor``), never more than 10% below ``channels``."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


class InvertedResidual(nn.Module):
    """1x1 expansion (t > 1) -> 3x3 depthwise -> 1x1 linear projection, plus the input where shapes agree.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the depthwise convolution (1 or 2).
        expansion: t, the expansion factor of the hidden width.

    Call arguments:
        x: (N, in_channels, H, W).

    Returns:
        (N, out_channels, H / stride, W / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = int(round(in_channels * expansion))
        self.residual = stride == 1 and in_channels == out_channels
        self.expand = ConvBNReLU(in_channels, hidden, 1, activation=nn.ReLU6) if expansion != 1 else nn.Identity()
        self.depthwise = ConvBNReLU(hidden, hidden, 3, stride, padding=1, groups=hidden, activation=nn.ReLU6)
        self.project = nn.Sequential(OrderedDict(conv=nn.Conv2d(hidden, out_channels, 1, bias=False),
                                                 bn=nn.BatchNorm2d(out_channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.residual else out


class MobileNetV2(ImageClassifier):
    """MobileNet v2.

    Args:
        num_classes: output classes.
        in_channels: image channels.
        width_multiplier: scales every layer's width (rounded to multiples of 8); the last 1x1
            convolution keeps 1280 channels below 1.
        dropout: dropout rate before the classifier (0.2, as in torchvision's training).

    Call arguments:
        x: (N, in_channels, H, W) images, H and W >= 32 (224 in the paper).

    Returns:
        (N, num_classes) logits.
    """

    min_input_size = 32
    # torchvision numbers each Conv-BN-ReLU6 unit's children 0, 1, 2 and a block's units in ``conv``; the first
    # block (t = 1) has no expansion, so its units sit one place earlier than in the other blocks.
    torchvision_names = (
        (r"features\.1\.conv\.0\.0\.(.+)", r"features.1.depthwise.conv.\1"),
        (r"features\.1\.conv\.0\.1\.(.+)", r"features.1.depthwise.bn.\1"),
        (r"features\.1\.conv\.1\.(.+)", r"features.1.project.conv.\1"),
        (r"features\.1\.conv\.2\.(.+)", r"features.1.project.bn.\1"),
        (r"features\.(\d+)\.conv\.0\.0\.(.+)", r"features.\1.expand.conv.\2"),
        (r"features\.(\d+)\.conv\.0\.1\.(.+)", r"features.\1.expand.bn.\2"),
        (r"features\.(\d+)\.conv\.1\.0\.(.+)", r"features.\1.depthwise.conv.\2"),
        (r"features\.(\d+)\.conv\.1\.1\.(.+)", r"features.\1.depthwise.bn.\2"),
        (r"features\.(\d+)\.conv\.2\.(.+)", r"features.\1.project.conv.\2"),
        (r"features\.(\d+)\.conv\.3\.(.+)", r"features.\1.project.bn.\2"),
        (r"features\.(\d+)\.0\.(.+)", r"features.\1.conv.\2"),  # the first and the last convolution
        (r"features\.(\d+)\.1\.(.+)", r"features.\1.bn.\2"),
        (r"classifier\.1\.(.+)", r"classifier.\1"),
    )

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, width_multiplier: float = 1.0,
                 dropout: float = 0.2):
        super().__init__(num_classes=num_classes, in_channels=in_channels)
        if not width_multiplier > 0:
            raise ValueError("MobileNetV2: expected width_multiplier > 0. "
                             f"Received: width_multiplier={width_multiplier!r}")
        channels = round_width(32 * width_multiplier)
        layers: list[nn.Module] = [ConvBNReLU(in_channels, channels, 3, stride=2, padding=1,
                                              activation=nn.ReLU6)]  # (N, 32, H/2, W/2)
        for expansion, width, blocks, stride in INVERTED_RESIDUAL_STAGES:
            out_channels = round_width(width * width_multiplier)
            for index in range(blocks):
                layers.append(InvertedResidual(channels, out_channels, stride if index == 0 else 1, expansion))
                channels = out_channels
        last = round_width(1280 * max(1.0, width_multiplier))
        layers.append(ConvBNReLU(channels, last, 1, activation=nn.ReLU6))  # (N, 1280, H/32, W/32)
        self.features = nn.Sequential(*layers)
        self.pre_logits = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))  # (N, 1280)
        self.num_features = last
        self.classifier = self.make_classifier(self.num_features, num_classes)
        self.init_weights()


@register_model
def mobilenet_v2(**kwargs) -> MobileNetV2:
    """MobileNet v2; ``width_multiplier`` thins it (3.5M parameters at 1.0)."""
    return MobileNetV2(**kwargs)
