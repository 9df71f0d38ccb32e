"""Training and evaluating a detector on in-memory images with padded box targets.

The data stays in tensors (uint8 images, (N, M, 5) targets) and is batched by index slicing, like
the rest of deepzen; augmentation moves boxes with pixels (:class:`DetectionAugment`). The
learning rate warms up linearly over the first epoch and then follows a cosine to zero.

Example:
    >>> model = SSD(num_classes=2, in_channels=1, image_size=(64, 64), width=4, pyramid_channels=8)
    >>> images = torch.zeros(4, 1, 64, 64, dtype=torch.uint8)
    >>> targets = torch.tensor([[[8., 8, 40, 40, 1]]]).repeat(4, 1, 1)
    >>> history = fit_detector(model, images, targets, epochs=1, batch_size=2, verbose=0)
    >>> sorted(history[0])
    ['box_loss', 'class_loss', 'epoch', 'images_per_second', 'learning_rate', 'loss', 'seconds']
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np
import torch

from deepzen.vision.detection.augment import DetectionAugment
from deepzen.vision.detection.loss import MultiboxLoss
from deepzen.vision.detection.metrics import evaluate_detections
from deepzen.vision.detection.model import SSD


def as_images(images: Any) -> torch.Tensor:
    """uint8 (N, C, H, W) pixels 0..255 (array or tensor) -> the same tensor, checked."""
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()  # torch refuses to share read-only memory (e.g. an array of a PIL image)
    images = torch.as_tensor(images)
    if images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError(f"Expected uint8 images (N, C, H, W). Received: {images.dtype} of shape {tuple(images.shape)}")
    return images


def as_targets(targets: Any, count: int, num_classes: int | None = None) -> torch.Tensor:
    """(N, M, 5) padded ``x1, y1, x2, y2, class`` rows, checked: one row set per image, class -1 = padding,
    other classes in ``[0, num_classes)``, and every real box with ``x2 > x1`` and ``y2 > y1``."""
    targets = torch.as_tensor(targets, dtype=torch.float32)
    if targets.dim() != 3 or targets.shape[-1] != 5 or len(targets) != count:
        raise ValueError(f"Expected targets (N={count}, M, 5): x1, y1, x2, y2, class per row, class -1 for padding. "
                         f"Received: shape {tuple(targets.shape)}")
    classes = targets[..., 4]
    real = classes >= 0
    bad_class = (classes != classes.round()) | (classes < -1)
    if num_classes is not None:
        bad_class |= classes >= num_classes
    degenerate = real & ((targets[..., 2] <= targets[..., 0]) | (targets[..., 3] <= targets[..., 1])
                         | ~torch.isfinite(targets[..., :4]).all(-1))
    for problem, expected in ((bad_class, f"a class id in [0, {num_classes}) or -1 for padding"),
                              (degenerate, "x2 > x1 and y2 > y1 (finite)")):
        if problem.any():
            image, row = (int(v) for v in problem.nonzero()[0])
            raise ValueError(f"targets[{image}, {row}] = {targets[image, row].tolist()}: expected {expected}")
    return targets


def fit_detector(model: SSD, images: Any, targets: Any, *, epochs: int, batch_size: int = 32,
                 learning_rate: float = 2e-3, weight_decay: float = 5e-4, augment: DetectionAugment | None = None,
                 loss: MultiboxLoss | None = None, seed: int = 0, verbose: int = 1) -> list[dict[str, float]]:
    """Trains ``model`` with AdamW, a one-epoch warm-up and a cosine decay.

    Args:
        model: the detector (trained in place).
        images: uint8 (N, C, H, W) training images.
        targets: (N, M, 5) padded boxes and classes.
        epochs: passes over the data.
        batch_size: images per step.
        learning_rate: the peak learning rate.
        weight_decay: AdamW's decoupled weight decay.
        augment: applied to every batch (None: no augmentation).
        loss: the loss (default :class:`MultiboxLoss` on the model's anchors).
        seed: seeds the order of the batches.
        verbose: 0 silent, 1 one line per epoch.

    Returns:
        One dict of logs per epoch (``loss``, ``class_loss``, ``box_loss``, ``learning_rate``,
        ``seconds``, ``images_per_second``).
    """
    images = as_images(images)
    targets = as_targets(targets, len(images), model.num_classes)
    loss = loss if loss is not None else MultiboxLoss(model.anchors)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(images) / batch_size)
    total, warmup = epochs * steps_per_epoch, steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    order = torch.Generator().manual_seed(seed)
    model.train()
    if augment is not None:
        augment.train()
    history = []
    for epoch in range(epochs):
        start = time.perf_counter()
        sums = torch.zeros(2)
        permutation = torch.randperm(len(images), generator=order)
        for first in range(0, len(images), batch_size):
            index = permutation[first:first + batch_size]
            batch, batch_targets = images[index].float() / 255, targets[index]
            if augment is not None:
                batch, batch_targets = augment(batch, batch_targets)
            class_loss, box_loss = loss.terms(batch_targets, model(batch))
            optimizer.zero_grad(set_to_none=True)
            (class_loss + box_loss).backward()
            optimizer.step()
            schedule.step()
            sums += torch.stack([class_loss.detach(), box_loss.detach()]) * len(index)
        seconds = time.perf_counter() - start
        class_mean, box_mean = (sums / len(images)).tolist()  # host sync: once per epoch
        logs = {"epoch": epoch + 1, "loss": class_mean + box_mean, "class_loss": class_mean, "box_loss": box_mean,
                "learning_rate": optimizer.param_groups[0]["lr"], "seconds": seconds,
                "images_per_second": len(images) / seconds}
        history.append(logs)
        if verbose:
            print(f"epoch {epoch + 1}/{epochs}: loss {logs['loss']:.4f} (class {class_mean:.4f}, box {box_mean:.4f}) "
                  f"{seconds:.1f}s, {logs['images_per_second']:.1f} images/s", flush=True)
    return history


def detect_images(model: SSD, images: Any, *, batch_size: int = 64, **options) -> list[dict[str, np.ndarray]]:
    """:meth:`SSD.detect` over uint8 (N, C, H, W) images in batches; NumPy boxes, scores and labels."""
    images = as_images(images)
    found = []
    for first in range(0, len(images), batch_size):
        for result in model.detect(images[first:first + batch_size].float() / 255, **options):
            found.append({key: value.cpu().numpy() for key, value in result.items()})
    return found


def ground_truth(targets: Any) -> list[dict[str, np.ndarray]]:
    """(N, M, 5) padded targets -> one ``{"boxes", "labels"}`` dict per image (padding rows dropped)."""
    targets = np.asarray(targets, dtype=np.float64)
    return [{"boxes": rows[rows[:, 4] >= 0, :4], "labels": rows[rows[:, 4] >= 0, 4].astype(np.int64)}
            for rows in targets]


def evaluate_detector(model: SSD, images: Any, targets: Any, class_names: Sequence[str] | None = None,
                      **options) -> dict[str, Any]:
    """COCO mAP@[.5:.95], mAP@0.5 and mAP@0.75 of ``model`` on ``images`` (see :mod:`.metrics`)."""
    found = detect_images(model, images, score_threshold=options.pop("score_threshold", 0.01), **options)
    return evaluate_detections(ground_truth(targets), found, model.num_classes, class_names)
