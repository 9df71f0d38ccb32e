"""pycocotools' AP against average precision computed by hand on a small made-up case."""

import math

import pytest

from deepzen.vision.detection.metrics import evaluate_detections


def coco_ap(points):
    """101-point interpolated AP from (recall, precision) points: COCO's definition, by hand."""
    total = 0.0
    for level in range(101):
        recall = level / 100
        total += max([p for r, p in points if r >= recall - 1e-12], default=0.0)
    return total / 101


def test_ap_against_hand_computation():
    # Class 0: two true boxes; detections by score: a hit (IoU 1), a miss, a hit of IoU 0.72 on the second box.
    # Class 1: one true box, found with IoU 0.9 (1 - 1/10 of its height), plus a lower-scored duplicate.
    truth = [{"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "labels": [0, 0]},
             {"boxes": [[0, 0, 20, 20]], "labels": [1]}]
    found = [{"boxes": [[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 27.2]], "scores": [0.9, 0.8, 0.7],
              "labels": [0, 0, 0]},
             {"boxes": [[0, 0, 20, 18], [0, 0, 20, 18]], "scores": [0.6, 0.5], "labels": [1, 1]}]
    result = evaluate_detections(truth, found, num_classes=2, class_names=("a", "b"))

    # class 0 at IoU <= 0.70: precision/recall after each detection (1, 0.5), (0.5, 0.5), (2/3, 1)
    class0_loose = coco_ap([(0.5, 1.0), (0.5, 0.5), (1.0, 2 / 3)])
    class0_strict = coco_ap([(0.5, 1.0), (0.5, 0.5), (0.5, 1 / 3)])  # IoU >= 0.75: the third is a miss
    assert class0_loose == pytest.approx((51 + 50 * 2 / 3) / 101)
    class1 = coco_ap([(1.0, 1.0), (1.0, 0.5)])  # IoU 0.9 hits at every threshold up to 0.90, not at 0.95
    class1_miss = 0.0
    thresholds = [0.5 + 0.05 * i for i in range(10)]
    ap0 = [class0_loose if t <= 0.72 else class0_strict for t in thresholds]
    ap1 = [class1 if t <= 0.9 + 1e-9 else class1_miss for t in thresholds]
    assert result["ap_50_per_class"] == pytest.approx({"a": class0_loose, "b": class1})
    assert result["map_50"] == pytest.approx((class0_loose + class1) / 2)
    assert result["map_75"] == pytest.approx((class0_strict + class1) / 2)
    assert result["map"] == pytest.approx(sum(ap0 + ap1) / 20)


def test_no_detections_and_no_truth():
    truth = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    empty = [{"boxes": [], "scores": [], "labels": []}]
    assert evaluate_detections(truth, empty, num_classes=1)["map_50"] == 0.0
    none = evaluate_detections([{"boxes": [], "labels": []}], empty, num_classes=1)
    assert math.isnan(none["map"])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="one detection dict per image"):
        evaluate_detections([{"boxes": [], "labels": []}], [], num_classes=1)
    with pytest.raises(ValueError, match=r"class 3; expected classes in \[0, 2\)"):
        evaluate_detections([{"boxes": [[0, 0, 1, 1]], "labels": [3]}], [{"boxes": [], "scores": [], "labels": []}],
                            num_classes=2)
