"""Residual networks: ImageNet ResNets and CIFAR ResNets (He et al. 2016), ResNeXt (Xie et al. 2017).

One :class:`ResNet` class covers all three families; they differ in the stem, the stage widths
and the shortcut used where a block changes shape:

- ImageNet ResNet-18/34 (basic blocks) and 50/101/152 (bottlenecks): 7x7/2 convolution and 3x3/2
  max pool stem, stages of 64/128/256/512 channels (x4 for bottlenecks), 1x1-convolution
  projection shortcuts (the paper's option B). The stride-2 convolution of a bottleneck is its
  3x3 one ("ResNet v1.5", as in torchvision; the paper strides the first 1x1) — the parameter
  count is the same and accuracy slightly better.
- CIFAR ResNet-20/32/44/56/110 (§4.2 of the paper, depth 6n+2): 3x3 convolution stem, three
  stages of n basic blocks with 16/32/64 channels, parameter-free option A shortcuts (subsample
  and zero-pad the new channels), so ResNet-20 has 0.27M parameters as in the paper's Table 6.
- ResNeXt-50 (32x4d): ResNet-50 with grouped 3x3 convolutions, 32 groups of width 4 in the first
  stage.

Global average pooling makes every variant input-size agnostic.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deepzen.vision.models.base import ImageClassifier
from deepzen.vision.models.registry import register_model


class ZeroPadShortcut(nn.Module):
    """Option A shortcut: keep every ``stride``-th pixel and append zero channels; no parameters.

    Call arguments:
        x: (N, C, H, W).

    Returns:
        (N, C + extra_channels, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, extra_channels: int, stride: int):
        super().__init__()
        self.extra_channels = extra_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))  # pads the channel axis at the end

    def extra_repr(self) -> str:
        return f"extra_channels={self.extra_channels}, stride={self.stride}"


def make_shortcut(kind: str, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """The identity where shapes agree, else an option B ("projection") or option A ("zero_pad") shortcut."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if kind == "projection":
        return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))
    return ZeroPadShortcut(out_channels - in_channels, stride)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)).

    Args:
        in_channels: input channels.
        width: output channels (``expansion`` = 1).
        stride: stride of the first convolution.
        shortcut: module applied to the input on the residual path.
        groups, width_per_group: must be 1 and 64 (grouped convolutions are for bottlenecks).

    Call arguments:
        x: (N, in_channels, H, W).

    Returns:
        (N, width, H / stride, W / stride).
    """

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, shortcut: nn.Module,
                 groups: int = 1, width_per_group: int = 64):
        super().__init__()
        if groups != 1 or width_per_group != 64:
            raise ValueError("BasicBlock: expected groups=1 and width_per_group=64 (use Bottleneck for ResNeXt). "
                             f"Received: groups={groups}, width_per_group={width_per_group}")
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, grouped for ResNeXt), 1x1 expand to ``4 * width``, plus a shortcut.

    Args:
        in_channels: input channels.
        width: the block's nominal width; the output has ``expansion * width`` = 4 * width channels.
        stride: stride of the 3x3 convolution.
        shortcut: module applied to the input on the residual path.
        groups: groups of the 3x3 convolution (ResNeXt's cardinality).
        width_per_group: channels per group at width 64; the 3x3 convolution has
            ``width * width_per_group / 64 * groups`` channels (= width for ResNet).

    Call arguments:
        x: (N, in_channels, H, W).

    Returns:
        (N, 4 * width, H / stride, W / stride).
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, shortcut: nn.Module,
                 groups: int = 1, width_per_group: int = 64):
        super().__init__()
        inner = int(width * width_per_group / 64) * groups
        self.conv1 = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, inner, 3, stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = nn.Conv2d(inner, width * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


_STEMS = ("imagenet", "cifar")
_SHORTCUTS = ("projection", "zero_pad")


class ResNet(ImageClassifier):
    """Residual network: stem, stages of residual blocks, global average pool, linear classifier.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18, (3, 3, 3) for ResNet-20.
        widths: nominal width of each stage; every stage after the first halves H and W.
        stem: "imagenet" (7x7/2 convolution + 3x3/2 max pool) or "cifar" (3x3 convolution).
        shortcut: "projection" (option B) or "zero_pad" (option A) where a block changes shape.
        groups: groups of the bottleneck 3x3 convolutions (ResNeXt cardinality).
        width_per_group: bottleneck channels per group at width 64 (ResNeXt's "d").
        num_classes: output classes.
        in_channels: image channels.

    Call arguments:
        x: (N, in_channels, H, W) images.

    Returns:
        (N, num_classes) logits.
    """

    # torchvision's ResNet keeps the stem at the top level, calls the shortcut "downsample" and the classifier "fc".
    torchvision_names = (
        (r"conv1\.(.+)", r"features.stem.conv.\1"),
        (r"bn1\.(.+)", r"features.stem.bn.\1"),
        (r"(layer\d+\.\d+)\.downsample\.(.+)", r"features.\1.shortcut.\2"),
        (r"(layer\d+\..+)", r"features.\1"),
        (r"fc\.(.+)", r"classifier.\1"),
    )

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int], *,
                 widths: Sequence[int] = (64, 128, 256, 512), stem: str = "imagenet", shortcut: str = "projection",
                 groups: int = 1, width_per_group: int = 64, num_classes: int = 1000, in_channels: int = 3):
        super().__init__(num_classes=num_classes, in_channels=in_channels)
        if stem not in _STEMS or shortcut not in _SHORTCUTS or len(layers) != len(widths):
            raise ValueError(f"ResNet: expected stem in {_STEMS}, shortcut in {_SHORTCUTS} and one width per stage. "
                             f"Received: stem={stem!r}, shortcut={shortcut!r}, layers={tuple(layers)}, "
                             f"widths={tuple(widths)}")
        stem_width = widths[0]
        if stem == "imagenet":
            stem_module = nn.Sequential(OrderedDict(
                conv=nn.Conv2d(in_channels, stem_width, 7, stride=2, padding=3, bias=False),  # (N, 64, H/2, W/2)
                bn=nn.BatchNorm2d(stem_width),
                relu=nn.ReLU(inplace=True),
                pool=nn.MaxPool2d(3, stride=2, padding=1),  # (N, 64, H/4, W/4)
            ))
            stem_stride = 4
        else:
            stem_module = nn.Sequential(OrderedDict(
                conv=nn.Conv2d(in_channels, stem_width, 3, padding=1, bias=False),  # (N, 16, H, W)
                bn=nn.BatchNorm2d(stem_width),
                relu=nn.ReLU(inplace=True),
            ))
            stem_stride = 1
        stages: OrderedDict[str, nn.Module] = OrderedDict(stem=stem_module)
        channels = stem_width
        for index, (width, blocks) in enumerate(zip(widths, layers)):
            stage = []
            for block_index in range(blocks):
                stride = 2 if index > 0 and block_index == 0 else 1
                out_channels = width * block.expansion
                stage.append(block(channels, width, stride, make_shortcut(shortcut, channels, out_channels, stride),
                                   groups, width_per_group))
                channels = out_channels
            stages[f"layer{index + 1}"] = nn.Sequential(*stage)
        self.features = nn.Sequential(stages)  # (N, channels, H / total stride, W / total stride)
        self.min_input_size = stem_stride * 2 ** (len(layers) - 1)
        self.pre_logits = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (N, channels)
        self.num_features = channels
        self.classifier = self.make_classifier(self.num_features, num_classes)
        self.init_weights()


@register_model
def resnet18(**kwargs) -> ResNet:
    """ResNet-18, 11.7M parameters."""
    return ResNet(BasicBlock, (2, 2, 2, 2), **kwargs)


@register_model
def resnet34(**kwargs) -> ResNet:
    """ResNet-34, 21.8M parameters."""
    return ResNet(BasicBlock, (3, 4, 6, 3), **kwargs)


@register_model
def resnet50(**kwargs) -> ResNet:
    """ResNet-50, 25.6M parameters."""
    return ResNet(Bottleneck, (3, 4, 6, 3), **kwargs)


@register_model
def resnet101(**kwargs) -> ResNet:
    """ResNet-101, 44.5M parameters."""
    return ResNet(Bottleneck, (3, 4, 23, 3), **kwargs)


@register_model
def resnet152(**kwargs) -> ResNet:
    """ResNet-152, 60.2M parameters."""
    return ResNet(Bottleneck, (3, 8, 36, 3), **kwargs)


@register_model
def resnext50_32x4d(**kwargs) -> ResNet:
    """ResNeXt-50 (32x4d), 25.0M parameters."""
    return ResNet(Bottleneck, (3, 4, 6, 3), groups=32, width_per_group=4, **kwargs)


def cifar_resnet(blocks_per_stage: int, *, num_classes: int = 10, **kwargs) -> ResNet:
    """The CIFAR-10 ResNet of depth ``6 * blocks_per_stage + 2`` (He et al. 2016, §4.2)."""
    return ResNet(BasicBlock, (blocks_per_stage,) * 3, widths=(16, 32, 64), stem="cifar", shortcut="zero_pad",
                  num_classes=num_classes, **kwargs)


@register_model
def resnet20(**kwargs) -> ResNet:
    """CIFAR ResNet-20, 0.27M parameters."""
    return cifar_resnet(3, **kwargs)


@register_model
def resnet32(**kwargs) -> ResNet:
    """CIFAR ResNet-32, 0.46M parameters."""
    return cifar_resnet(5, **kwargs)


@register_model
def resnet44(**kwargs) -> ResNet:
    """CIFAR ResNet-44, 0.66M parameters."""
    return cifar_resnet(7, **kwargs)


@register_model
def resnet56(**kwargs) -> ResNet:
    """CIFAR ResNet-56, 0.85M parameters."""
    return cifar_resnet(9, **kwargs)


@register_model
def resnet110(**kwargs) -> ResNet:
    """CIFAR ResNet-110, 1.7M parameters."""
    return cifar_resnet(18, **kwargs)
