"""Inception v3 (Szegedy et al. 2016, "Rethinking the Inception architecture for computer vision").

The network of the paper's Table 1 as released in TensorFlow (and ported to torchvision): a stem
of plain convolutions, three 35x35 modules with factorized 5x5 convolutions (A), a grid
reduction (B), four 17x17 modules with factorized 7x7 convolutions (C), a second reduction (D)
and two 8x8 modules with expanded filter banks (E); every convolution is followed by BatchNorm.

The auxiliary classifier on the last 17x17 module is off by default; with ``aux_logits=True``
the model returns ``(logits, aux)`` in training mode. Parameter counts at 1000 classes: 23.83M
without it, 27.16M with it (torchvision's figure, which counts the auxiliary classifier).
The stem's unpadded convolutions make 75x75 the smallest input (299x299 in the paper).

torchvision's state dicts load by name (``create("inception_v3", aux_logits=True, weights=...)`` for its
file, which holds the auxiliary classifier). Its ImageNet file, ported from TensorFlow, expects pixels
scaled to [-1, 1], which torchvision's builder computes from ImageNet-normalized inputs
(``transform_input``); give this model the [-1, 1] inputs. The auxiliary head pools adaptively, so its
logits differ a little from torchvision's (the main logits are the same).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from torch import nn

from deepzen.vision.models.base import ImageClassifier
from deepzen.vision.models.blocks import ConvBNReLU
from deepzen.vision.models.registry import register_model

Conv = partial(ConvBNReLU, eps=1e-3)  # the TensorFlow original's BatchNorm epsilon


def _torchvision_names() -> tuple[tuple[str, str], ...]:
    """torchvision's names: ``Conv2d_1a_3x3``, ``Mixed_5b`` ... with numbered branch units (``branch5x5_1``)
    where deepzen keeps each branch as a Sequential (``branch5x5.0``), plus ``AuxLogits`` and ``fc``."""
    stem = {"Conv2d_1a_3x3": "conv1a", "Conv2d_2a_3x3": "conv2a", "Conv2d_2b_3x3": "conv2b",
            "Conv2d_3b_1x1": "conv3b", "Conv2d_4a_3x3": "conv4a"}
    rules = [(rf"{name}\.(.+)", rf"features.{ours}.\1") for name, ours in stem.items()]
    numbered = {"branch5x5": 2, "branch3x3dbl": 3, "branch7x7": 3, "branch7x7dbl": 5, "branch7x7x3": 4}
    for branch, units in numbered.items():
        rules += [(rf"Mixed_(\w+)\.{branch}_{unit}\.(.+)", rf"features.mixed\1.{branch}.{unit - 1}.\2")
                  for unit in range(1, units + 1)]
    rules += [
        (r"Mixed_7a\.branch3x3_1\.(.+)", r"features.mixed7a.branch3x3.0.\1"),  # InceptionD: two units
        (r"Mixed_7a\.branch3x3_2\.(.+)", r"features.mixed7a.branch3x3.1.\1"),
        (r"Mixed_(7[bc])\.branch3x3_1\.(.+)", r"features.mixed\1.branch3x3.\2"),  # InceptionE: one unit
        (r"Mixed_(7[bc])\.branch3x3_2a\.(.+)", r"features.mixed\1.branch3x3_split.0.\2"),
        (r"Mixed_(7[bc])\.branch3x3_2b\.(.+)", r"features.mixed\1.branch3x3_split.1.\2"),
        (r"Mixed_(7[bc])\.branch3x3dbl_3a\.(.+)", r"features.mixed\1.branch3x3dbl_split.0.\2"),
        (r"Mixed_(7[bc])\.branch3x3dbl_3b\.(.+)", r"features.mixed\1.branch3x3dbl_split.1.\2"),
        (r"Mixed_(\w+)\.branch_pool\.(.+)", r"features.mixed\1.branch_pool.1.\2"),  # after the pool
        (r"Mixed_(\w+)\.(branch1x1|branch3x3)\.(.+)", r"features.mixed\1.\2.\3"),
        (r"AuxLogits\.conv0\.(.+)", r"aux_heads.mixed6e.pre_logits.1.\1"),
        (r"AuxLogits\.conv1\.(.+)", r"aux_heads.mixed6e.pre_logits.2.\1"),
        (r"AuxLogits\.fc\.(.+)", r"aux_heads.mixed6e.classifier.\1"),
        (r"fc\.(.+)", r"classifier.\1"),
    ]
    return tuple(rules)


class InceptionA(nn.Module):
    """35x35 module (Figure 5): 1x1 | 1x1->5x5 | 1x1->3x3->3x3 | avg pool->1x1; out 224 + pool_features."""

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = Conv(in_channels, 64, 1)
        self.branch5x5 = nn.Sequential(Conv(in_channels, 48, 1), Conv(48, 64, 5, padding=2))
        self.branch3x3dbl = nn.Sequential(Conv(in_channels, 64, 1), Conv(64, 96, 3, padding=1),
                                          Conv(96, 96, 3, padding=1))
        self.branch_pool = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), Conv(in_channels, pool_features, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1x1(x), self.branch5x5(x), self.branch3x3dbl(x), self.branch_pool(x))
        return torch.cat(branches, dim=1)  # (N, 224 + pool_features, H, W)


class InceptionB(nn.Module):
    """Grid reduction 35x35 -> 17x17 (Figure 10): 3x3/2 | 1x1->3x3->3x3/2 | max pool/2; out 480 + in."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = Conv(in_channels, 384, 3, stride=2)
        self.branch3x3dbl = nn.Sequential(Conv(in_channels, 64, 1), Conv(64, 96, 3, padding=1),
                                          Conv(96, 96, 3, stride=2))
        self.branch_pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch3x3(x), self.branch3x3dbl(x), self.branch_pool(x))
        return torch.cat(branches, dim=1)  # (N, 480 + in_channels, (H - 3) / 2 + 1, ...)


class InceptionC(nn.Module):
    """17x17 module with 7x7 convolutions factorized into 1x7 and 7x1 (Figure 6); out 768."""

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = Conv(in_channels, 192, 1)
        self.branch7x7 = nn.Sequential(Conv(in_channels, c7, 1), Conv(c7, c7, (1, 7), padding=(0, 3)),
                                       Conv(c7, 192, (7, 1), padding=(3, 0)))
        self.branch7x7dbl = nn.Sequential(
            Conv(in_channels, c7, 1),
            Conv(c7, c7, (7, 1), padding=(3, 0)),
            Conv(c7, c7, (1, 7), padding=(0, 3)),
            Conv(c7, c7, (7, 1), padding=(3, 0)),
            Conv(c7, 192, (1, 7), padding=(0, 3)),
        )
        self.branch_pool = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), Conv(in_channels, 192, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1x1(x), self.branch7x7(x), self.branch7x7dbl(x), self.branch_pool(x))
        return torch.cat(branches, dim=1)  # (N, 768, H, W)


class InceptionD(nn.Module):
    """Grid reduction 17x17 -> 8x8: 1x1->3x3/2 | 1x1->1x7->7x1->3x3/2 | max pool/2; out 512 + in."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = nn.Sequential(Conv(in_channels, 192, 1), Conv(192, 320, 3, stride=2))
        self.branch7x7x3 = nn.Sequential(
            Conv(in_channels, 192, 1),
            Conv(192, 192, (1, 7), padding=(0, 3)),
            Conv(192, 192, (7, 1), padding=(3, 0)),
            Conv(192, 192, 3, stride=2),
        )
        self.branch_pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch3x3(x), self.branch7x7x3(x), self.branch_pool(x))
        return torch.cat(branches, dim=1)  # (N, 512 + in_channels, (H - 3) / 2 + 1, ...)


class InceptionE(nn.Module):
    """8x8 module with expanded filter banks: 3x3s split into parallel 1x3 and 3x1 (Figure 7); out 2048."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch1x1 = Conv(in_channels, 320, 1)
        self.branch3x3 = Conv(in_channels, 384, 1)
        self.branch3x3dbl = nn.Sequential(Conv(in_channels, 448, 1), Conv(448, 384, 3, padding=1))
        # Both 3x3 branches end in a 1x3 and a 3x1 convolution applied side by side.
        self.branch3x3_split = nn.ModuleList([Conv(384, 384, (1, 3), padding=(0, 1)),
                                              Conv(384, 384, (3, 1), padding=(1, 0))])
        self.branch3x3dbl_split = nn.ModuleList([Conv(384, 384, (1, 3), padding=(0, 1)),
                                                 Conv(384, 384, (3, 1), padding=(1, 0))])
        self.branch_pool = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), Conv(in_channels, 192, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        b3dbl = self.branch3x3dbl(x)
        branches = (
            self.branch1x1(x),
            *(conv(b3) for conv in self.branch3x3_split),
            *(conv(b3dbl) for conv in self.branch3x3dbl_split),
            self.branch_pool(x),
        )
        return torch.cat(branches, dim=1)  # (N, 320 + 768 + 768 + 192 = 2048, H, W)


class InceptionAux(nn.Module):
    """Auxiliary classifier on the 17x17 grid: 5x5 average pool, 1x1 conv 128, 5x5 conv 768, linear.

    Pools adaptively to 5x5 (the original's 5x5/3 average pool does that at 299x299), so the
    5x5 convolution always sees a 5x5 map.

    Call arguments:
        x: (N, 768, H, W) output of the last 17x17 module.

    Returns:
        (N, num_classes) logits.
    """

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.pre_logits = nn.Sequential(
            nn.AdaptiveAvgPool2d(5),
            Conv(in_channels, 128, 1),
            Conv(128, 768, 5),  # (N, 768, 1, 1)
            nn.Flatten(),
        )
        self.num_features = 768
        self.classifier = ImageClassifier.make_classifier(self.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pre_logits(x))


class InceptionV3(ImageClassifier):
    """Inception v3.

    Args:
        num_classes: output classes.
        in_channels: image channels.
        aux_logits: add the auxiliary classifier (used in training mode only).
        dropout: dropout rate before the classifier.

    Call arguments:
        x: (N, in_channels, H, W) images, H and W >= 75 (299 in the paper).

    Returns:
        (N, num_classes) logits; ``(logits, aux)`` in training mode with ``aux_logits``.
    """

    min_input_size = 75
    torchvision_names = _torchvision_names()

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = False,
                 dropout: float = 0.5):
        super().__init__(num_classes=num_classes, in_channels=in_channels)
        self.features = nn.Sequential(OrderedDict(
            conv1a=Conv(in_channels, 32, 3, stride=2),  # (N, 32, 149, 149) at 299x299
            conv2a=Conv(32, 32, 3),  # (N, 32, 147, 147)
            conv2b=Conv(32, 64, 3, padding=1),
            pool1=nn.MaxPool2d(3, stride=2),  # (N, 64, 73, 73)
            conv3b=Conv(64, 80, 1),
            conv4a=Conv(80, 192, 3),  # (N, 192, 71, 71)
            pool2=nn.MaxPool2d(3, stride=2),  # (N, 192, 35, 35)
            mixed5b=InceptionA(192, pool_features=32),  # (N, 256, 35, 35)
            mixed5c=InceptionA(256, pool_features=64),  # (N, 288, 35, 35)
            mixed5d=InceptionA(288, pool_features=64),
            mixed6a=InceptionB(288),  # (N, 768, 17, 17)
            mixed6b=InceptionC(768, channels_7x7=128),
            mixed6c=InceptionC(768, channels_7x7=160),
            mixed6d=InceptionC(768, channels_7x7=160),
            mixed6e=InceptionC(768, channels_7x7=192),
            mixed7a=InceptionD(768),  # (N, 1280, 8, 8)
            mixed7b=InceptionE(1280),  # (N, 2048, 8, 8)
            mixed7c=InceptionE(2048),
        ))
        if aux_logits:
            self.aux_heads["mixed6e"] = InceptionAux(768, num_classes)
        self.pre_logits = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))  # (N, 2048)
        self.num_features = 2048
        self.classifier = self.make_classifier(self.num_features, num_classes)
        self.init_weights()


@register_model
def inception_v3(**kwargs) -> InceptionV3:
    """Inception v3, 23.8M parameters (27.2M with ``aux_logits=True``)."""
    return InceptionV3(**kwargs)
