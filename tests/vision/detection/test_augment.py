"""Box-aware augmentation: after every transform, the boxes still frame the pixels they framed before."""

import pytest
import torch

from deepzen.vision.detection.augment import DetectionAugment


def painted(boxes, size=64, channels=3):
    """Images whose only bright pixels are the boxes' areas; targets (N, M, 5) with class 1."""
    n = len(boxes)
    images = torch.zeros(n, channels, size, size)
    targets = torch.full((n, max(len(b) for b in boxes), 5), -1.0)
    for i, image_boxes in enumerate(boxes):
        for j, (x1, y1, x2, y2) in enumerate(image_boxes):
            images[i, :, y1:y2, x1:x2] = 1.0
            targets[i, j] = torch.tensor([x1, y1, x2, y2, j])
    return images, targets


def ink_box(image, threshold=0.5):
    rows, cols = torch.nonzero(image[0] > threshold, as_tuple=True)
    return torch.tensor([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=torch.float32)


def test_flip_moves_boxes_with_pixels():
    images, targets = painted([[(4, 10, 20, 30)]] * 16)
    augment = DetectionAugment(flip=True, seed=0)
    out, moved = augment(images, targets)
    flipped = 0
    for i in range(16):
        torch.testing.assert_close(moved[i, 0, :4], ink_box(out[i]))
        flipped += int(moved[i, 0, 0] == 44)  # 64 - 20
    assert 0 < flipped < 16  # about half the images were mirrored


@pytest.mark.parametrize("scale", [(0.5, 0.9), (1.1, 1.6), (0.6, 1.5)])
def test_scale_crop_moves_boxes_with_pixels(scale):
    images, targets = painted([[(20, 18, 44, 40)]] * 24)
    out, moved = DetectionAugment(scale=scale, min_visible=0.0, seed=1)(images, targets)
    kept = 0
    for i in range(24):
        if moved[i, 0, 4] < 0:  # cropped away: then no bright pixel may remain either
            assert (out[i] > 0.5).sum() < 4
            continue
        kept += 1
        torch.testing.assert_close(moved[i, 0, :4], ink_box(out[i]), atol=1.0, rtol=0)  # bilinear edges: 1 pixel
    assert kept >= 20


def test_boxes_cropped_out_become_padding_and_classes_stay():
    images, targets = painted([[(0, 0, 30, 30), (30, 30, 34, 34)]] * 40)
    out, moved = DetectionAugment(scale=(1.8, 2.0), seed=3)(images, targets)
    lost = moved[:, 0, 4] < 0
    assert lost.any() and (~lost).any()  # the corner box leaves the frame in some images
    assert (moved[lost, 0] == -1).all()
    assert set(moved[:, 1, 4].tolist()) <= {-1.0, 1.0} and set(moved[:, 0, 4].tolist()) <= {-1.0, 0.0}
    inside = moved[..., 4] >= 0
    assert (moved[inside][:, :4] >= 0).all() and (moved[inside][:, :4] <= 64).all()


def test_photometric_keeps_boxes_and_range_and_eval_is_identity():
    images, targets = painted([[(4, 4, 30, 30)]] * 8)
    images = images * 0.6 + 0.2
    augment = DetectionAugment(photometric=0.5, seed=0)
    out, moved = augment(images, targets)
    assert torch.equal(moved, targets) and out.min() >= 0 and out.max() <= 1 and not torch.equal(out, images)
    augment.eval()
    same, same_targets = augment(images, targets)
    assert same is images and same_targets is targets


def test_seeded_augmentation_repeats():
    images, targets = painted([[(4, 10, 20, 30)]] * 8)
    a = DetectionAugment(flip=True, scale=(0.7, 1.3), photometric=0.2, seed=7)(images, targets)
    b = DetectionAugment(flip=True, scale=(0.7, 1.3), photometric=0.2, seed=7)(images, targets)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="scale=\\(smallest, largest\\)"):
        DetectionAugment(scale=(1.5, 1.0))
    with pytest.raises(ValueError, match="photometric in \\[0, 1\\)"):
        DetectionAugment(photometric=1.5)
    with pytest.raises(ValueError, match="targets \\(N, M, 5\\)"):
        DetectionAugment(flip=True)(torch.zeros(2, 3, 8, 8), torch.zeros(2, 4))
