"""Boxes: the corner <-> centre conversions, areas, IoU, and SSD's offset encoding.

Every box in deepzen's detection code is ``(x1, y1, x2, y2)`` in pixels of the image it belongs to
(``x2 > x1``, ``y2 > y1``; a box covers ``[x1, x2) x [y1, y2)``, so its area is ``(x2-x1)*(y2-y1)``,
as in COCO and torchvision, with no VOC "+1").

A detector does not regress corners directly: it predicts offsets of a box from an anchor
(Liu et al. 2016, SSD; Ren et al. 2015, Faster R-CNN)::

    t_x = (cx - cx_a) / (w_a * v_xy)   t_y = (cy - cy_a) / (h_a * v_xy)
    t_w = log(w / w_a) / v_wh          t_h = log(h / h_a) / v_wh

with the "variances" ``v = (0.1, 0.2)`` of SSD's release, which scale the targets to about unit size.
:func:`encode` and :func:`decode` are inverse functions of each other.
"""

from __future__ import annotations

import math

import torch

VARIANCES = (0.1, 0.2)
# exp() of a width/height offset is clamped here so that an untrained network cannot overflow a box
_MAX_LOG_SCALE = math.log(1000.0 / 16)


def to_center(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) corners ``x1, y1, x2, y2`` -> (..., 4) ``cx, cy, w, h``."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def to_corners(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) ``cx, cy, w, h`` -> (..., 4) corners ``x1, y1, x2, y2``."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) corner boxes -> (...) areas (0 for degenerate boxes)."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every box of ``a`` with every box of ``b``.

    Args:
        a: (..., N, 4) corner boxes.
        b: (..., M, 4) corner boxes (leading axes broadcast with ``a``'s: one IoU matrix per image).

    Returns:
        (..., N, M) IoU in [0, 1]; 0 where both boxes are empty.
    """
    top_left = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])  # (..., N, M, 2)
    bottom_right = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    overlap = (bottom_right - top_left).clamp(min=0).prod(-1)  # (..., N, M)
    union = box_area(a)[..., :, None] + box_area(b)[..., None, :] - overlap
    return torch.where(union > 0, overlap / union.clamp(min=1e-12), torch.zeros_like(union))


def encode(boxes: torch.Tensor, anchors: torch.Tensor, variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """Corner boxes -> offsets from their anchors (the regression targets).

    Args:
        boxes: (..., A, 4) corner boxes with positive width and height.
        anchors: (A, 4) corner anchors (broadcast over the leading axes of ``boxes``).
        variances: ``(v_xy, v_wh)``, see the module docstring.

    Returns:
        (..., A, 4) offsets ``t_x, t_y, t_w, t_h``.
    """
    box, anchor = to_center(boxes), to_center(anchors)
    centre = (box[..., :2] - anchor[..., :2]) / (anchor[..., 2:] * variances[0])
    size = torch.log(box[..., 2:].clamp(min=1e-6) / anchor[..., 2:]) / variances[1]
    return torch.cat([centre, size], dim=-1)


def decode(offsets: torch.Tensor, anchors: torch.Tensor, variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """Offsets from anchors -> corner boxes; the inverse of :func:`encode`.

    Args:
        offsets: (..., A, 4) ``t_x, t_y, t_w, t_h``.
        anchors: (A, 4) corner anchors.

    Returns:
        (..., A, 4) corner boxes.
    """
    anchor = to_center(anchors)
    centre = anchor[..., :2] + offsets[..., :2] * variances[0] * anchor[..., 2:]
    size = anchor[..., 2:] * torch.exp((offsets[..., 2:] * variances[1]).clamp(max=_MAX_LOG_SCALE))
    return to_corners(torch.cat([centre, size], dim=-1))


def clip_boxes(boxes: torch.Tensor, height: float, width: float) -> torch.Tensor:
    """(..., 4) corner boxes clipped to the image ``[0, width] x [0, height]``."""
    x = boxes[..., 0::2].clamp(0, width)
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)
