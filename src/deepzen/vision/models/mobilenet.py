"""MobileNet v1 (Howard et al. 2017, "MobileNets: efficient convolutional neural networks for mobile vision").

A 3x3/2 convolution followed by 13 depthwise separable convolutions (Table 1 of the paper): each
is a 3x3 depthwise convolution (one filter per channel) and a 1x1 pointwise convolution that mixes
channels, both with BatchNorm and ReLU. That costs about 1/8 of the multiply-adds of a 3x3
convolution. The width multiplier alpha thins every layer (channels ``max(8, int(alpha * c))``,
as in the TensorFlow release); the resolution multiplier is simply a smaller input.
4.2M parameters at alpha = 1 and 1000 classes.
"""

from __future__ import annotations

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
