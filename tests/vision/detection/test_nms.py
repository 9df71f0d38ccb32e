"""NMS and batched NMS against a brute-force greedy reference written with plain Python loops."""

import pytest
import torch

from deepzen.vision.detection.nms import batched_nms, nms


def brute_iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def brute_nms(boxes, scores, classes, threshold):
    """Greedy NMS from the definition: visit by decreasing score (ties: lower index first), keep a box unless a
    kept box of its class overlaps it by more than the threshold."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept = []
    for i in order:
        if all(classes[k] != classes[i] or brute_iou(boxes[k], boxes[i]) <= threshold for k in kept):
            kept.append(i)
    return kept


def clustered_boxes(n, generator):
    """Boxes around a few centres, so that many pairs overlap."""
    centres = torch.rand(5, 2, generator=generator) * 80
    centre = centres[torch.randint(0, 5, (n,), generator=generator)] + torch.randn(n, 2, generator=generator) * 4
    size = 10 + torch.rand(n, 2, generator=generator) * 20
    return torch.cat([centre - size / 2, centre + size / 2], dim=1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_batched_nms_matches_brute_force(seed, threshold):
    g = torch.Generator().manual_seed(seed)
    n = 120
    boxes = clustered_boxes(n, g)
    scores = torch.rand(n, generator=g)
    classes = torch.randint(0, 4, (n,), generator=g)
    kept = batched_nms(boxes, scores, classes, threshold).tolist()
    expected = brute_nms(boxes.tolist(), scores.tolist(), classes.tolist(), threshold)
    assert kept == expected
    assert 0 < len(kept) < n  # the case exercises suppression


@pytest.mark.parametrize("seed", range(3))
def test_nms_matches_brute_force_with_ties(seed):
    g = torch.Generator().manual_seed(100 + seed)
    boxes = clustered_boxes(60, g)
    scores = torch.randint(0, 5, (60,), generator=g).float()  # many equal scores
    kept = nms(boxes, scores, 0.5).tolist()
    assert kept == brute_nms(boxes.tolist(), scores.tolist(), [0] * 60, 0.5)


def test_classes_do_not_suppress_each_other_and_empty_input():
    boxes = torch.tensor([[0.0, 0, 10, 10]] * 3)
    scores = torch.tensor([0.5, 0.9, 0.7])
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 2]), 0.5).tolist() == [1, 2, 0]
    assert batched_nms(boxes, scores, torch.tensor([0, 0, 0]), 0.5).tolist() == [1]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5).tolist() == []


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"boxes \(N, 4\) and scores \(N,\)"):
        nms(torch.zeros(3, 4), torch.zeros(2), 0.5)
    with pytest.raises(ValueError, match="one class id per box"):
        batched_nms(torch.zeros(3, 4), torch.zeros(3), torch.zeros(2), 0.5)

