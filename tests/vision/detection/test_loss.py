"""Matching against a brute-force loop; the multibox loss against hand computations and finite differences."""

import torch
import torch.nn.functional as F

from deepzen.vision.detection.anchors import AnchorSpec, make_anchors
from deepzen.vision.detection.boxes import encode
from deepzen.vision.detection.loss import MultiboxLoss, match_anchors


def brute_iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


def brute_match(anchors, objects, threshold):
    """SSD's two rules, from the definition, for one image's list of (box, class) objects."""
    matched, positive = [], []
    for anchor in anchors:
        ious = [brute_iou(anchor, box) for box, _ in objects]
        best = max(range(len(ious)), key=lambda j: (ious[j], -j)) if ious else 0
        matched.append(best)
        positive.append(bool(ious) and ious[best] >= threshold)
    for j, (box, _) in enumerate(objects):
        ious = [brute_iou(anchor, box) for anchor in anchors]
        best_anchor = max(range(len(ious)), key=lambda a: (ious[a], -a))
        matched[best_anchor], positive[best_anchor] = j, True
    return matched, positive


def anchors_64():
    return make_anchors(AnchorSpec(strides=(8, 16), sizes=((12,), (24, 40)), aspect_ratios=(1.0, 0.5)), (64, 64))


def test_matching_matches_brute_force():
    anchors = anchors_64()
    targets = torch.full((3, 4, 5), -1.0)
    targets[0, :3] = torch.tensor([[4.0, 4, 18, 20, 2], [30, 30, 60, 62, 0], [40, 2, 50, 30, 1]])
    targets[1, :1] = torch.tensor([[10.0, 12, 14, 40, 3]])  # thin: no anchor reaches IoU 0.5, the best one is forced
    # image 2 has no objects
    matched, positive = match_anchors(anchors, targets, 0.5)
    for image in range(3):
        objects = [(row[:4].tolist(), int(row[4])) for row in targets[image] if row[4] >= 0]
        expected_matched, expected_positive = brute_match(anchors.tolist(), objects, 0.5)
        assert positive[image].tolist() == expected_positive
        if objects:
            assert matched[image][positive[image]].tolist() == [m for m, p in zip(expected_matched, expected_positive) if p]
    assert positive[0].sum() > 3 and positive[1].sum() == 1 and positive[2].sum() == 0


def test_perfect_prediction_has_near_zero_loss():
    anchors = anchors_64()
    targets = torch.tensor([[[4.0, 4, 18, 20, 2], [30, 30, 60, 62, 0]]])
    matched, positive = match_anchors(anchors, targets)
    objects = targets[0, matched[0]]  # (A, 5)
    logits = torch.full((len(anchors), 4), -20.0)
    logits[~positive[0], 0] = 20.0
    logits[positive[0], (objects[positive[0], 4].long() + 1)] = 20.0
    prediction = torch.cat([encode(objects[:, :4], anchors), logits], dim=1)[None]
    classification, box = MultiboxLoss(anchors).terms(targets, prediction)
    assert classification < 1e-6 and box < 1e-6
    worse = prediction.clone()
    worse[0, positive[0], 0] += 0.5  # shift every positive's x offset
    assert MultiboxLoss(anchors).terms(targets, worse)[1] > 0.1


def test_hard_negatives_by_hand():
    """Two positives, negative_ratio 1: the two negatives with the largest background loss count, no others."""
    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10], [80, 0, 90, 10]])
    targets = torch.tensor([[[0.0, 0, 10, 10, 0], [20, 0, 30, 10, 1]]])
    logits = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [3.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    prediction = torch.cat([torch.zeros(5, 4), logits], dim=1)[None]
    loss = MultiboxLoss(anchors, negative_ratio=1.0, min_negatives=0)
    classification, box = loss.terms(targets, prediction)
    ce = F.cross_entropy(logits, torch.tensor([1, 2, 0, 0, 0]), reduction="none")
    # negatives 2, 3, 4 have background losses ce[2] < ce[3] < ce[4]: the hardest two are 3 and 4
    expected = (ce[0] + ce[1] + ce[3] + ce[4]) / 2
    torch.testing.assert_close(classification, expected)
    torch.testing.assert_close(box, torch.tensor(0.0))  # the boxes equal their anchors: zero offsets


def test_gradient_matches_finite_differences():
    torch.manual_seed(0)
    anchors = make_anchors(AnchorSpec(strides=(16, 32), sizes=((16,), (32,)), aspect_ratios=(1.0,)), (32, 32)).double()
    targets = torch.tensor([[[4.0, 4, 18, 20, 2], [14, 10, 30, 30, 0]], [[2.0, 2, 30, 30, 1], [0, 0, 0, 0, -1]]],
                           dtype=torch.float64)
    prediction = torch.randn(2, len(anchors), 4 + 1 + 4, dtype=torch.float64, requires_grad=True)
    loss = MultiboxLoss(anchors, min_negatives=1)  # 5 anchors: some are negatives that do not count
    assert torch.autograd.gradcheck(lambda p: loss(targets, p), (prediction,), eps=1e-6, atol=1e-5)


def test_image_without_objects_trains_the_background_only():
    anchors = anchors_64()
    targets = torch.full((1, 2, 5), -1.0)
    prediction = torch.randn(1, len(anchors), 4 + 1 + 3, requires_grad=True)
    classification, box = MultiboxLoss(anchors, min_negatives=8).terms(targets, prediction)
    (classification + box).backward()
    assert torch.isfinite(classification) and box == 0
    assert (prediction.grad[0, :, 4:].abs().sum(-1) > 0).sum() == 8  # exactly the 8 hardest negatives
    assert prediction.grad[..., :4].abs().sum() == 0
