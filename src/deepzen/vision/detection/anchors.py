"""Anchors (SSD's "default boxes"): a fixed set of boxes tiled over every feature-map cell.

At a pyramid level of stride ``s`` (one cell = ``s x s`` input pixels), every cell ``(i, j)``
holds one anchor per ``(size, aspect ratio)`` pair, centred on the cell's centre
``((j + 0.5) s, (i + 0.5) s)``, with width ``size * sqrt(ratio)`` and height ``size / sqrt(ratio)``
(``ratio`` = width / height). The order is level by level, then row, column, anchor shape — the
order in which :class:`~deepzen.vision.detection.model.SSD`'s heads lay out their predictions.

Example:
    >>> spec = AnchorSpec(strides=(8, 16), sizes=((16,), (32, 48)), aspect_ratios=(1.0, 0.5))
    >>> spec.anchors_per_cell
    (2, 4)
    >>> make_anchors(spec, image_size=(64, 64)).shape  # 8*8*2 + 4*4*4 anchors
    torch.Size([192, 4])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class AnchorSpec:
    """The anchors of a feature pyramid.

    Args:
        strides: input pixels per feature-map cell at each level, e.g. ``(8, 16, 32)``.
        sizes: per level, the anchor sizes in pixels (the side of the square anchor of ratio 1).
        aspect_ratios: width / height ratios used at every size.
    """

    strides: tuple[int, ...]
    sizes: tuple[tuple[float, ...], ...]
    aspect_ratios: tuple[float, ...] = (1.0, 0.5, 2.0)

    def __post_init__(self):
        if len(self.strides) != len(self.sizes) or not self.strides:
            raise ValueError(f"AnchorSpec expects one tuple of sizes per stride. Received: strides={self.strides}, "
                             f"sizes={self.sizes}")
        if any(s <= 0 for s in self.strides) or any(v <= 0 for level in self.sizes for v in level) \
                or any(r <= 0 for r in self.aspect_ratios) or not all(self.sizes) or not self.aspect_ratios:
            raise ValueError(f"AnchorSpec expects positive strides, sizes and aspect ratios. Received: {self}")

    @property
    def anchors_per_cell(self) -> tuple[int, ...]:
        """How many anchors each cell of each level holds."""
        return tuple(len(level) * len(self.aspect_ratios) for level in self.sizes)


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> torch.Tensor:
    """(k, 4) anchors ``(-w/2, -h/2, w/2, h/2)`` around the origin, sizes-major, k = sizes x ratios."""
    shapes = [(size * math.sqrt(ratio), size / math.sqrt(ratio)) for size in sizes for ratio in aspect_ratios]
    wh = torch.tensor(shapes, dtype=torch.float32)
    return torch.cat([-wh / 2, wh / 2], dim=1)


def make_anchors(spec: AnchorSpec, image_size: tuple[int, int]) -> torch.Tensor:
    """All anchors of an image of ``image_size = (height, width)``.

    Level ``l`` has ``ceil(height / stride) x ceil(width / stride)`` cells (the feature-map size of
    stride-2 convolutions with padding).

    Returns:
        (A, 4) corner anchors in pixels, A = sum over levels of cells x anchors per cell.
    """
    height, width = image_size
    levels = []
    for stride, sizes in zip(spec.strides, spec.sizes):
        rows, cols = math.ceil(height / stride), math.ceil(width / stride)
        cy = (torch.arange(rows, dtype=torch.float32) + 0.5) * stride
        cx = (torch.arange(cols, dtype=torch.float32) + 0.5) * stride
        yy, xx = torch.meshgrid(cy, cx, indexing="ij")
        centres = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)  # (rows*cols, 1, 4)
        levels.append((centres + cell_anchors(sizes, spec.aspect_ratios)[None]).reshape(-1, 4))
    return torch.cat(levels)
