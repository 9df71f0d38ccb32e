"""An SSD-style single-stage detector: a zoo backbone, a small feature pyramid, shared multibox heads.

::

    images (N, C, H, W)
      -> backbone: the zoo's ResNet (basic blocks, thin widths, ``blocks`` per stage), stages at strides 8, 16, 32
      -> pyramid: 1x1 lateral convolutions + top-down upsampling (Lin et al. 2017, FPN), 3x3 smoothing
      -> at every level, one shared head: 3x3 conv -> box offsets (k*4) and class logits (k*(1+K))
      -> (N, A, 4 + 1 + K): per anchor, offsets from the anchor, then background + K class logits

Multibox heads over several scales are SSD's (Liu et al. 2016); sharing one head over the levels
of an FPN is RetinaNet's (Lin et al. 2017). Class 0 of the logits is the background; dataset class
``c`` is logit ``c + 1``. :meth:`SSD.detect` turns the raw predictions into boxes.

Example:
    >>> model = SSD(num_classes=10, in_channels=1, image_size=(128, 128), width=8)
    >>> model(torch.zeros(2, 1, 128, 128)).shape  # 16*16*6 + 8*8*6 + 4*4*6 anchors
    torch.Size([2, 2016, 15])
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deepzen.serializable import register_serializable
from deepzen.vision import models
from deepzen.vision.detection.anchors import AnchorSpec, make_anchors
from deepzen.vision.detection.boxes import clip_boxes, decode
from deepzen.vision.detection.nms import batched_nms

BACKBONE_STAGES = ("layer2", "layer3", "layer4")  # strides 8, 16, 32 of the zoo's ResNet layout
STRIDES = (8, 16, 32)


def default_anchor_spec(image_size: Sequence[int], aspect_ratios: Sequence[float] = (1.0, 0.5, 2.0)) -> AnchorSpec:
    """Two anchor sizes per level, ``4 * stride`` and ``4 * stride * sqrt(2)`` (RetinaNet's octave scales).

    At strides 8/16/32 that is 32/45, 64/90 and 128/181 pixels, scaled down for images smaller than
    256 pixels (their objects are smaller): a 128x128 image gets 16/23, 32/45 and 64/90.
    """
    scale = min(1.0, min(image_size) / 256)
    return AnchorSpec(strides=STRIDES,
                      sizes=tuple((4 * s * scale, 4 * s * scale * 2 ** 0.5) for s in STRIDES),
                      aspect_ratios=tuple(aspect_ratios))


class SSD(nn.Module):
    """Single-stage anchor-based detector.

    Args:
        num_classes: object classes K (the background is added).
        in_channels: image channels.
        image_size: ``(height, width)`` of the input images; the anchors are laid out for it.
        width: channels of the backbone's first stage (it doubles at each stage: 16 -> 16/32/64/128).
        blocks: residual blocks per backbone stage (ResNet-18: 2).
        pyramid_channels: channels of every pyramid level and of the heads.
        aspect_ratios: anchor width / height ratios.
        mean, std: the network normalizes its input images to ``(x - mean) / std`` (one value, or one
            per channel).

    Call arguments:
        x: (N, in_channels, height, width) images with pixels in [0, 1].

    Returns:
        (N, A, 4 + 1 + K): offsets from each anchor, then the background and K class logits.
    """

    def __init__(self, *, num_classes: int, in_channels: int = 3, image_size: Sequence[int] = (256, 256),
                 width: int = 16, blocks: int = 1, pyramid_channels: int = 64,
                 aspect_ratios: Sequence[float] = (1.0, 0.5, 2.0), mean: Sequence[float] = (0.5,),
                 std: Sequence[float] = (0.25,)):
        super().__init__()
        image_size = tuple(int(v) for v in image_size)
        if len(image_size) != 2 or min(image_size) < STRIDES[-1]:
            raise ValueError(f"SSD expects image_size=(height, width), each at least {STRIDES[-1]}. "
                             f"Received: image_size={image_size}")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"SSD expects num_classes to be a positive integer. Received: {num_classes!r}")
        self.config = {"num_classes": num_classes, "in_channels": in_channels, "image_size": list(image_size),
                       "width": width, "blocks": blocks, "pyramid_channels": pyramid_channels,
                       "aspect_ratios": list(aspect_ratios), "mean": list(mean), "std": list(std)}
        self.num_classes = num_classes
        self.image_size = image_size
        self.backbone = _resnet_backbone(in_channels, width, blocks)
        stage_channels = (2 * width, 4 * width, 8 * width)
        self.lateral = nn.ModuleList(nn.Conv2d(c, pyramid_channels, 1) for c in stage_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(pyramid_channels, pyramid_channels, 3, padding=1) for _ in STRIDES)
        self.anchor_spec = default_anchor_spec(image_size, aspect_ratios)
        per_cell = set(self.anchor_spec.anchors_per_cell)
        if len(per_cell) != 1:
            raise ValueError("SSD's shared head expects as many anchors per cell at every level")
        self.anchors_per_cell = per_cell.pop()
        self.head = nn.Sequential(nn.Conv2d(pyramid_channels, pyramid_channels, 3, padding=1), nn.ReLU(inplace=True))
        self.box_head = nn.Conv2d(pyramid_channels, self.anchors_per_cell * 4, 3, padding=1)
        self.class_head = nn.Conv2d(pyramid_channels, self.anchors_per_cell * (1 + num_classes), 3, padding=1)
        # Start by predicting the background everywhere (RetinaNet's prior): the first steps are stable.
        nn.init.zeros_(self.class_head.weight)
        with torch.no_grad():
            bias = self.class_head.bias.view(self.anchors_per_cell, 1 + num_classes)
            bias.zero_()
            bias[:, 0] = 4.0
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("anchors", make_anchors(self.anchor_spec, image_size), persistent=False)  # (A, 4)

    def get_config(self) -> dict[str, Any]:
        return dict(self.config)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "SSD":
        return cls(**config)

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N, C, H, W) images -> feature maps (N, P, H/s, W/s) at the strides 8, 16, 32."""
        stages = []
        for name, stage in self.backbone.features.named_children():
            x = stage(x)
            if name in BACKBONE_STAGES:
                stages.append(x)
        levels = [lateral(stage) for lateral, stage in zip(self.lateral, stages)]
        for i in range(len(levels) - 2, -1, -1):  # top-down: coarse semantics into the finer maps
            levels[i] = levels[i] + F.interpolate(levels[i + 1], size=levels[i].shape[-2:], mode="nearest")
        return [smooth(level) for smooth, level in zip(self.smooth, levels)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"SSD was built for {self.image_size[0]}x{self.image_size[1]} images. "
                             f"Received: images of shape {tuple(x.shape)}")
        n = x.shape[0]
        outputs = []
        for level in self.pyramid((x - self.mean) / self.std):
            features = self.head(level)
            boxes = self.box_head(features).permute(0, 2, 3, 1).reshape(n, -1, 4)  # (N, h*w*k, 4)
            logits = self.class_head(features).permute(0, 2, 3, 1).reshape(n, -1, 1 + self.num_classes)
            outputs.append(torch.cat([boxes, logits], dim=-1))
        return torch.cat(outputs, dim=1)  # (N, A, 4 + 1 + K)

    @torch.no_grad()
    def detect(self, x: torch.Tensor, *, score_threshold: float = 0.05, iou_threshold: float = 0.45,
               candidates: int = 400, max_detections: int = 100) -> list[dict[str, torch.Tensor]]:
        """Detections for a batch of images (eval mode).

        Args:
            x: (N, C, H, W) images with pixels in [0, 1].
            score_threshold: class probabilities below it are dropped.
            iou_threshold: per-class NMS threshold.
            candidates: at most this many (anchor, class) pairs per image enter NMS, the best-scoring.
            max_detections: at most this many boxes per image are returned.

        Returns:
            One dict per image: ``boxes`` (D, 4) corner boxes in input pixels, ``scores`` (D,),
            ``labels`` (D,) int64 dataset classes in ``[0, K)``, by decreasing score.
        """
        was_training = self.training
        self.eval()
        predictions = self(x)
        self.train(was_training)
        return postprocess(predictions, self.anchors, self.image_size, score_threshold=score_threshold,
                           iou_threshold=iou_threshold, candidates=candidates, max_detections=max_detections)


register_serializable(SSD)


def _resnet_backbone(in_channels: int, width: int, blocks: int) -> nn.Module:
    """The zoo's ResNet (basic blocks, ImageNet stem) at ``width`` channels, without its classifier."""
    return models.ResNet(models.BasicBlock, (blocks,) * 4, widths=(width, 2 * width, 4 * width, 8 * width),
                         num_classes=0, in_channels=in_channels)


def postprocess(predictions: torch.Tensor, anchors: torch.Tensor, image_size: Sequence[int], *,
                score_threshold: float = 0.05, iou_threshold: float = 0.45, candidates: int = 400,
                max_detections: int = 100) -> list[dict[str, torch.Tensor]]:
    """Raw (N, A, 4 + 1 + K) predictions -> per-image boxes, scores and labels (see :meth:`SSD.detect`)."""
    offsets, logits = predictions[..., :4], predictions[..., 4:]
    boxes = clip_boxes(decode(offsets, anchors), *image_size)  # (N, A, 4)
    probabilities = logits.softmax(-1)[..., 1:]  # (N, A, K): the background column dropped
    num_classes = probabilities.shape[-1]
    results = []
    for image_boxes, image_probabilities in zip(boxes, probabilities):
        scores = image_probabilities.flatten()  # (A*K,), anchor-major
        top = scores.topk(min(candidates, scores.numel())).indices
        top = top[scores[top] > score_threshold]
        anchor_index, labels = top // num_classes, top % num_classes
        candidate_boxes, candidate_scores = image_boxes[anchor_index], scores[top]
        keep = batched_nms(candidate_boxes, candidate_scores, labels, iou_threshold)[:max_detections]
        results.append({"boxes": candidate_boxes[keep], "scores": candidate_scores[keep], "labels": labels[keep]})
    return results
