"""Boxes: IoU against a brute-force loop, encode/decode as inverse functions, anchors' layout."""

import math

import pytest
import torch

from deepzen.vision.detection.anchors import AnchorSpec, make_anchors
from deepzen.vision.detection.boxes import box_iou, clip_boxes, decode, encode, to_center, to_corners


def random_boxes(n, generator, size=100.0):
    corners = torch.rand(n, 2, 2, generator=generator) * size
    low, high = corners.min(dim=1).values, corners.max(dim=1).values + 0.5
    return torch.cat([low, high], dim=1)  # (n, 4) x1, y1, x2, y2 with positive sides


def brute_iou(a, b):
    ax1, ay1, ax2, ay2 = a
    bx1, by1, bx2, by2 = b
    w = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    h = max(0.0, min(ay2, by2) - max(ay1, by1))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - w * h
    return w * h / union


def test_iou_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    a, b = random_boxes(17, g).double(), random_boxes(23, g).double()
    iou = box_iou(a, b)
    expected = torch.tensor([[brute_iou(x.tolist(), y.tolist()) for y in b] for x in a], dtype=torch.float64)
    assert iou.shape == (17, 23)
    torch.testing.assert_close(iou, expected)
    assert (iou > 0).any() and (iou == 0).any()  # the random set has overlapping and disjoint pairs


def test_iou_batched_equals_per_image():
    g = torch.Generator().manual_seed(1)
    a, b = random_boxes(6, g), torch.stack([random_boxes(4, g) for _ in range(3)])  # (6, 4), (3, 4, 4)
    batched = box_iou(a, b)
    assert batched.shape == (3, 6, 4)
    for image in range(3):
        torch.testing.assert_close(batched[image], box_iou(a, b[image]))


def test_iou_hand_values():
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10], [10, 10, 20, 20], [0, 0, 10, 5]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1.0, 50 / 150, 0.0, 0.5]]))


def test_encode_decode_round_trip_and_hand_value():
    g = torch.Generator().manual_seed(2)
    anchors, boxes = random_boxes(50, g).double(), random_boxes(50, g).double()
    offsets = encode(boxes, anchors)
    torch.testing.assert_close(decode(offsets, anchors), boxes)
    torch.testing.assert_close(encode(decode(offsets, anchors), anchors), offsets)
    # A box twice the anchor's width, shifted right by half the anchor's width:
    anchor, box = torch.tensor([[0.0, 0, 10, 20]]), torch.tensor([[-5.0, 0, 15, 20]])
    expected = torch.tensor([[0.0, 0.0, math.log(2) / 0.2, 0.0]])
    torch.testing.assert_close(encode(box, anchor), expected)
    box = torch.tensor([[5.0, 0, 15, 20]])
    torch.testing.assert_close(encode(box, anchor), torch.tensor([[5 / (10 * 0.1), 0.0, 0.0, 0.0]]))


def test_centre_form_and_clipping():
    boxes = torch.tensor([[2.0, 4, 10, 8], [-5, -5, 50, 60]])
    torch.testing.assert_close(to_center(boxes)[0], torch.tensor([6.0, 6, 8, 4]))
    torch.testing.assert_close(to_corners(to_center(boxes)), boxes)
    torch.testing.assert_close(clip_boxes(boxes, 40, 30)[1], torch.tensor([0.0, 0, 30, 40]))


def test_anchor_layout():
    spec = AnchorSpec(strides=(8, 16), sizes=((16,), (32, 64)), aspect_ratios=(1.0, 4.0))
    anchors = make_anchors(spec, (32, 48))  # level 1: 4x6 cells x 2; level 2: 2x3 cells x 4
    assert anchors.shape == (4 * 6 * 2 + 2 * 3 * 4, 4)
    centre = to_center(anchors)
    torch.testing.assert_close(centre[0], torch.tensor([4.0, 4.0, 16.0, 16.0]))  # cell (0, 0), ratio 1
    torch.testing.assert_close(centre[1], torch.tensor([4.0, 4.0, 32.0, 8.0]))  # ratio 4: w = 16*2, h = 16/2
    torch.testing.assert_close(centre[2, :2], torch.tensor([12.0, 4.0]))  # the next cell to the right
    first_level2 = 4 * 6 * 2
    torch.testing.assert_close(centre[first_level2], torch.tensor([8.0, 8.0, 32.0, 32.0]))
    torch.testing.assert_close(centre[-1, :2], torch.tensor([40.0, 24.0]))  # the last cell's centre


def test_anchor_spec_refuses_mismatched_levels():
    with pytest.raises(ValueError, match="one tuple of sizes per stride"):
        AnchorSpec(strides=(8, 16), sizes=((16,),))
    with pytest.raises(ValueError, match="positive"):
        AnchorSpec(strides=(8,), sizes=((0,),))
