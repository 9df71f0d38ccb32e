"""Training targets and the multibox loss: IoU matching of anchors to objects, hard-negative mining.

Targets are given per image as a padded array ``(N, M, 5)`` of ``x1, y1, x2, y2, class`` rows, with
``class = -1`` on padding rows (an image with no objects is all padding). Matching (SSD, Liu et al.
2016, §2.2):

1. every anchor is matched to the object it overlaps most; it is a positive when that IoU is at
   least ``iou_threshold`` (0.5), else a negative (background);
2. every object is also given its best anchor, whatever the IoU, so no object goes unmatched.

The loss is the softmax cross-entropy of the class logits over the positives and the hardest
negatives (the ``negative_ratio`` x as many negatives with the highest background loss; at least
``min_negatives`` per image, so images with no objects still teach the background), plus the
smooth-L1 loss of the box offsets of the positives, both divided by the number of positives.

Example:
    >>> anchors = torch.tensor([[0., 0, 10, 10], [10, 10, 20, 20]])
    >>> targets = torch.tensor([[[1., 1, 10, 10, 3], [0, 0, 0, 0, -1]]])  # one object of class 3
    >>> matched, positive = match_anchors(anchors, targets)
    >>> positive.tolist(), matched.tolist()
    ([[True, False]], [[0, 0]])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepzen.vision.detection.boxes import box_iou, encode


def match_anchors(anchors: torch.Tensor, targets: torch.Tensor,
                  iou_threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Matches every anchor of every image to an object (see the module docstring).

    Args:
        anchors: (A, 4) corner anchors.
        targets: (N, M, 5) padded ``x1, y1, x2, y2, class`` rows (class -1: padding).
        iou_threshold: IoU at or above which an anchor is a positive.

    Returns:
        ``(matched, positive)``: (N, A) int64 index of each anchor's object in ``targets``, and
        (N, A) bool, True for the positives.
    """
    valid = targets[..., 4] >= 0  # (N, M)
    iou = box_iou(anchors, targets[..., :4])  # (N, A, M)
    iou = torch.where(valid[:, None, :], iou, torch.full_like(iou, -1.0))
    best_iou, matched = iou.max(dim=2)  # (N, A): each anchor's best object
    positive = best_iou >= iou_threshold
    if targets.shape[1]:
        # Every real object also takes its own best anchor (ties: the first), even below the threshold.
        best_anchor = iou.argmax(dim=1)  # (N, M)
        objects = torch.arange(targets.shape[1], device=targets.device).expand_as(best_anchor)
        images = torch.arange(targets.shape[0], device=targets.device)[:, None].expand_as(best_anchor)
        matched[images[valid], best_anchor[valid]] = objects[valid]
        positive[images[valid], best_anchor[valid]] = True
    return matched, positive


class MultiboxLoss(nn.Module):
    """SSD's loss: ``(cross-entropy(positives + hard negatives) + smooth_l1(positive offsets)) / positives``.

    Args:
        anchors: (A, 4) corner anchors of the detector.
        iou_threshold: matching threshold.
        negative_ratio: hard negatives kept per positive (SSD: 3).
        min_negatives: hard negatives kept per image at least (for images with few or no objects).
        box_weight: weight of the box term.

    Call arguments:
        y_true: (N, M, 5) padded targets ``x1, y1, x2, y2, class`` (class -1: padding).
        y_pred: (N, A, 4 + 1 + K) the detector's output.

    Returns:
        A scalar tensor.
    """

    def __init__(self, anchors: torch.Tensor, *, iou_threshold: float = 0.5, negative_ratio: float = 3.0,
                 min_negatives: int = 8, box_weight: float = 1.0):
        super().__init__()
        self.register_buffer("anchors", anchors.detach().clone(), persistent=False)
        self.iou_threshold = iou_threshold
        self.negative_ratio = negative_ratio
        self.min_negatives = min_negatives
        self.box_weight = box_weight

    def get_config(self) -> dict:
        """The settings (the anchors come from the detector)."""
        return {"iou_threshold": self.iou_threshold, "negative_ratio": self.negative_ratio,
                "min_negatives": self.min_negatives, "box_weight": self.box_weight}

    def forward(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        return sum(self.terms(y_true, y_pred))

    def terms(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(classification loss, box loss)``, each already divided by the number of positives."""
        if y_true.dim() != 3 or y_true.shape[-1] != 5 or y_pred.dim() != 3 or y_pred.shape[1] != len(self.anchors):
            raise ValueError(f"MultiboxLoss expects y_true (N, M, 5) and y_pred (N, {len(self.anchors)}, 4 + 1 + K). "
                             f"Received: y_true {tuple(y_true.shape)}, y_pred {tuple(y_pred.shape)}")
        matched, positive = match_anchors(self.anchors, y_true, self.iou_threshold)
        objects = torch.gather(y_true, 1, matched[..., None].expand(-1, -1, 5))  # (N, A, 5)
        classes = torch.where(positive, objects[..., 4].long() + 1, torch.zeros_like(matched))  # 0: background
        logits = y_pred[..., 4:]
        class_loss = F.cross_entropy(logits.transpose(1, 2), classes, reduction="none")  # (N, A)

        # Hard negatives: the negatives with the largest loss, negative_ratio per positive.
        positives = positive.sum(dim=1, keepdim=True)  # (N, 1)
        negative_loss = torch.where(positive, torch.zeros_like(class_loss), class_loss.detach())
        rank = negative_loss.argsort(dim=1, descending=True).argsort(dim=1)  # (N, A) rank of each anchor
        wanted = (positives * self.negative_ratio).clamp(min=self.min_negatives)
        hard_negative = (rank < wanted) & ~positive

        count = positives.sum().clamp(min=1).to(y_pred.dtype)
        classification = (class_loss * (positive | hard_negative)).sum() / count
        targets = encode(objects[..., :4], self.anchors)  # (N, A, 4)
        box = F.smooth_l1_loss(y_pred[..., :4][positive], targets[positive], reduction="sum") / count
        return classification, self.box_weight * box
