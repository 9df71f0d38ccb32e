"""Convolution -> BatchNorm -> ReLU, the unit GoogLeNet, Inception v3 and the MobileNets are built from."""

from __future__ import annotations

from torch import nn


class ConvBNReLU(nn.Sequential):
    """A bias-free ``nn.Conv2d`` (the BatchNorm shift replaces the bias), ``nn.BatchNorm2d``, ReLU.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: int or (height, width).
        stride: convolution stride.
        padding: int or (height, width) zero padding.
        groups: ``in_channels`` for a depthwise convolution.
        eps: BatchNorm epsilon (1e-3 in the Inception models, as in their TensorFlow originals).
        activation: the activation module's class (``nn.ReLU6`` in MobileNet v2).

    Call arguments:
        x: (N, in_channels, H, W).

    Returns:
        (N, out_channels, H', W').
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int = 1, padding: int | tuple[int, int] = 0, groups: int = 1, eps: float = 1e-5,
                 activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=eps)
        self.relu = activation(inplace=True)
