"""Detection metrics by pycocotools (the COCO team's evaluation code): COCO mAP@[.5:.95] and mAP@0.5.

deepzen does not compute average precision itself: :func:`evaluate_detections` turns boxes into
COCO's JSON records and runs ``pycocotools.cocoeval.COCOeval`` (install ``deepzen[detection]``).
``map`` is COCO's primary metric, the mean over classes and IoU thresholds 0.50, 0.55, ... 0.95
of the 101-point interpolated precision; ``map_50`` is the same at IoU 0.5 alone: the PASCAL VOC
metric, except that VOC 2010+ integrates the precision envelope over every recall point where
COCO samples it at 101 recall levels (the two differ by well under a point in practice).

Example:
    >>> truth = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    >>> found = [{"boxes": [[0, 0, 10, 10]], "scores": [0.9], "labels": [0]}]
    >>> round(evaluate_detections(truth, found, num_classes=1)["map_50"], 6)
    1.0
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Sequence

import numpy as np

try:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
except ImportError:  # an optional extra; the error is raised when a metric is asked for
    COCO = COCOeval = None


def _array(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    array = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value, dtype=np.float64)
    array = array.reshape(shape) if array.size == 0 else array
    if array.ndim != len(shape) or (len(shape) == 2 and array.shape[1] != 4):
        raise ValueError(f"evaluate_detections: expected {what} of shape {shape}. Received: {array.shape}")
    return array


def evaluate_detections(ground_truth: Sequence[dict], detections: Sequence[dict], num_classes: int,
                        class_names: Sequence[str] | None = None, max_detections: int = 100) -> dict[str, Any]:
    """COCO's evaluation of per-image detections against the true boxes.

    Args:
        ground_truth: one dict per image: ``boxes`` (M, 4) corner boxes in pixels, ``labels`` (M,)
            classes in ``[0, num_classes)``.
        detections: one dict per image, in the same order: ``boxes`` (D, 4), ``scores`` (D,),
            ``labels`` (D,).
        num_classes: the number of classes (a class with no true box in any image is left out of
            the mean, as COCO does).
        class_names: names for the per-class APs (default "0", "1", ...).
        max_detections: detections per image considered (COCO: 100).

    Returns:
        ``{"map": mAP@[.5:.95], "map_50": mAP@0.5, "map_75": mAP@0.75, "ap_50_per_class": {name: AP}}``;
        a mean is NaN when no image has a true box.
    """
    if COCOeval is None:
        raise ImportError("Detection metrics need pycocotools: pip install 'deepzen[detection]' (or pycocotools)")
    if len(ground_truth) != len(detections):
        raise ValueError(f"evaluate_detections expects one detection dict per image. Received: "
                         f"{len(ground_truth)} images, {len(detections)} detection dicts")
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    images, annotations, results = [], [], []
    for image_id, (truth, found) in enumerate(zip(ground_truth, detections), start=1):
        boxes, labels = _array(truth["boxes"], (0, 4), "boxes"), np.asarray(truth["labels"], np.int64).reshape(-1)
        images.append({"id": image_id})  # COCOeval's box evaluation needs no image size
        for box, label in zip(boxes, labels):
            if not 0 <= label < num_classes:
                raise ValueError(f"evaluate_detections: image {image_id - 1} has a true box of class {label}; "
                                 f"expected classes in [0, {num_classes})")
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label) + 1,
                                "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0})
        found_boxes = _array(found["boxes"], (0, 4), "detection boxes")
        for box, score, label in zip(found_boxes, np.asarray(found["scores"], np.float64).reshape(-1),
                                     np.asarray(found["labels"], np.int64).reshape(-1)):
            results.append({"image_id": image_id, "category_id": int(label) + 1, "score": float(score),
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    if not annotations:
        return {"map": float("nan"), "map_50": float("nan"), "map_75": float("nan"), "ap_50_per_class": {}}

    truth_api = COCO()
    truth_api.dataset = {"images": images, "annotations": annotations,
                         "categories": [{"id": c + 1, "name": names[c]} for c in range(num_classes)]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth_api.createIndex()
        found_api = truth_api.loadRes(results) if results else COCO()
        if not results:
            found_api.dataset = {"images": images, "annotations": [], "categories": truth_api.dataset["categories"]}
            found_api.createIndex()
        evaluator = COCOeval(truth_api, found_api, iouType="bbox")
        evaluator.params.maxDets = [1, 10, max_detections]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # precision: (IoU thresholds, recall levels, classes, area ranges, max detections); -1 = class absent
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for index, category in enumerate(evaluator.params.catIds):
        values = precision[0, :, index]
        if (values > -1).any():
            per_class[names[category - 1]] = float(values[values > -1].mean())
    return {"map": float(evaluator.stats[0]), "map_50": float(evaluator.stats[1]), "map_75": float(evaluator.stats[2]),
            "ap_50_per_class": per_class}
