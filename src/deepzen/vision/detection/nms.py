"""Non-maximum suppression: keep the best-scoring box of each cluster of overlapping boxes.

Greedy NMS (as in torchvision's ``nms``): sort by score, keep the best box, drop every remaining box
whose IoU with it is above the threshold, repeat. :func:`batched_nms` runs it per class at once by
moving each class's boxes to a region of the plane of their own, so boxes of different classes
never overlap (the offset trick of torchvision's ``batched_nms``).

Example:
    >>> boxes = torch.tensor([[0., 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10]])
    >>> scores = torch.tensor([0.9, 0.8, 0.7])
    >>> batched_nms(boxes, scores, torch.tensor([0, 0, 1]), iou_threshold=0.5).tolist()
    [0, 2]
"""

from __future__ import annotations

import numpy as np
import torch

from deepzen.vision.detection.boxes import box_iou


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression.

    Args:
        boxes: (N, 4) corner boxes.
        scores: (N,) scores.
        iou_threshold: a box is dropped when its IoU with a kept, higher-scoring box is above this.

    Returns:
        (K,) int64 indices of the kept boxes, by decreasing score (ties: the lower index first).
    """
    if boxes.dim() != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(f"nms expects boxes (N, 4) and scores (N,). Received: boxes {tuple(boxes.shape)}, "
                         f"scores {tuple(scores.shape)}")
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    overlaps = (box_iou(boxes[order], boxes[order]) > iou_threshold).cpu().numpy()  # host sync: the greedy pass
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= overlaps[i]
    return order[torch.as_tensor(keep, dtype=torch.int64, device=boxes.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """NMS within each class: boxes of different classes never suppress each other.

    Args:
        boxes: (N, 4) corner boxes.
        scores: (N,) scores.
        classes: (N,) integer class (or image-and-class) ids.
        iou_threshold: see :func:`nms`.

    Returns:
        (K,) int64 indices of the kept boxes, by decreasing score.
    """
    if classes.shape != scores.shape:
        raise ValueError(f"batched_nms expects one class id per box. Received: classes {tuple(classes.shape)}, "
                         f"scores {tuple(scores.shape)}")
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    # Shift each class by more than the whole extent of the boxes: different classes cannot overlap.
    extent = boxes.max() - boxes.min() + 1
    shifted = boxes - boxes.min() + (classes.to(boxes.dtype) * extent)[:, None]
    return nms(shifted, scores, iou_threshold)
