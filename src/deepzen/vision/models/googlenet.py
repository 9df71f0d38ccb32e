"""GoogLeNet, Inception v1 (Szegedy et al. 2015, "Going deeper with convolutions").

The layers and widths of the paper's Table 1, with two changes that are standard today: every
convolution is followed by BatchNorm (instead of the two local response normalizations), and the
auxiliary classifiers pool adaptively to 4x4 (the paper's 5x5/3 average pool gives 4x4 at
224x224), so smaller inputs work too. The auxiliary classifiers on inception (4a) and (4d) are
off by default; with ``aux_logits=True`` the model returns ``(logits, aux1, aux2)`` in training
mode, and the paper weights the auxiliary losses by 0.3.

The "5x5" branch really uses 5x5 kernels, as in the paper. torchvision's GoogLeNet uses 3x3
there (a bug kept for its pretrained weights, pytorch/vision#906), which is why it has 6.62M
parameters and this one 7.0M (1000 classes, no aux heads).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from deepzen.vision.models.base import ImageClassifier
from deepzen.vision.models.blocks import ConvBNReLU
from deepzen.vision.models.registry import register_model


class Inception(nn.Module):
    """The Inception module: 1x1, 1x1->3x3, 1x1->5x5 and 3x3-max-pool->1x1 branches, concatenated.

    Args:
        in_channels: input channels.
        ch1x1: channels of the 1x1 branch.
        ch3x3_reduce, ch3x3: channels of the 3x3 branch's 1x1 reduction and of its 3x3 convolution.
        ch5x5_reduce, ch5x5: the same for the 5x5 branch.
        pool_proj: channels of the 1x1 projection after the max pool.

    Call arguments:
        x: (N, in_channels, H, W).

    Returns:
        (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W).
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3_reduce: int, ch3x3: int, ch5x5_reduce: int,
                 ch5x5: int, pool_proj: int):
        super().__init__()
        self.branch1 = ConvBNReLU(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(ConvBNReLU(in_channels, ch3x3_reduce, 1),
                                     ConvBNReLU(ch3x3_reduce, ch3x3, 3, padding=1))
        self.branch3 = nn.Sequential(ConvBNReLU(in_channels, ch5x5_reduce, 1),
                                     ConvBNReLU(ch5x5_reduce, ch5x5, 5, padding=2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1),
                                     ConvBNReLU(in_channels, pool_proj, 1))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x))
        return torch.cat(branches, dim=1)  # (N, out_channels, H, W)


class AuxClassifier(nn.Module):
    """GoogLeNet's auxiliary classifier: 4x4 average pool, 1x1 conv 128, FC 1024, dropout 0.7, linear.

    Call arguments:
        x: (N, in_channels, H, W) output of inception (4a) or (4d).

    Returns:
        (N, num_classes) logits.
    """

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.pre_logits = nn.Sequential(
            nn.AdaptiveAvgPool2d(4),
            ConvBNReLU(in_channels, 128, 1),
            nn.Flatten(),  # (N, 2048)
            nn.Linear(128 * 4 * 4, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(0.7),
        )
        self.num_features = 1024
        self.classifier = ImageClassifier.make_classifier(self.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pre_logits(x))


class GoogLeNet(ImageClassifier):
    """GoogLeNet (Inception v1).

    Args:
        num_classes: output classes.
        in_channels: image channels.
        aux_logits: add the two auxiliary classifiers (used in training mode only).
        dropout: dropout rate before the classifier (0.4 in the paper).

    Call arguments:
        x: (N, in_channels, H, W) images, H and W >= 32 (224 in the paper).

    Returns:
        (N, num_classes) logits; ``(logits, aux1, aux2)`` in training mode with ``aux_logits``.
    """

    min_input_size = 32

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = False,
                 dropout: float = 0.4):
        super().__init__(num_classes=num_classes, in_channels=in_channels)
        # Caffe-style pooling (ceil mode, no padding) halves 112 -> 56 -> 28 -> 14 -> 7 as in Table 1.
        self.features = nn.Sequential(OrderedDict(
            conv1=ConvBNReLU(in_channels, 64, 7, stride=2, padding=3),  # (N, 64, 112, 112) at 224x224
            pool1=nn.MaxPool2d(3, stride=2, ceil_mode=True),  # (N, 64, 56, 56)
            conv2=ConvBNReLU(64, 64, 1),
            conv3=ConvBNReLU(64, 192, 3, padding=1),
            pool2=nn.MaxPool2d(3, stride=2, ceil_mode=True),  # (N, 192, 28, 28)
            inception3a=Inception(192, 64, 96, 128, 16, 32, 32),
            inception3b=Inception(256, 128, 128, 192, 32, 96, 64),
            pool3=nn.MaxPool2d(3, stride=2, ceil_mode=True),  # (N, 480, 14, 14)
            inception4a=Inception(480, 192, 96, 208, 16, 48, 64),
            inception4b=Inception(512, 160, 112, 224, 24, 64, 64),
            inception4c=Inception(512, 128, 128, 256, 24, 64, 64),
            inception4d=Inception(512, 112, 144, 288, 32, 64, 64),
            inception4e=Inception(528, 256, 160, 320, 32, 128, 128),
            pool4=nn.MaxPool2d(3, stride=2, ceil_mode=True),  # (N, 832, 7, 7)
            inception5a=Inception(832, 256, 160, 320, 32, 128, 128),
            inception5b=Inception(832, 384, 192, 384, 48, 128, 128),  # (N, 1024, 7, 7)
        ))
        if aux_logits:
            self.aux_heads["inception4a"] = AuxClassifier(512, num_classes)
            self.aux_heads["inception4d"] = AuxClassifier(528, num_classes)
        self.pre_logits = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))  # (N, 1024)
        self.num_features = 1024
        self.classifier = self.make_classifier(self.num_features, num_classes)
        self.init_weights()


@register_model
def googlenet(**kwargs) -> GoogLeNet:
    """GoogLeNet (Inception v1) with BatchNorm, 7.0M parameters without the auxiliary classifiers."""
    return GoogLeNet(**kwargs)
