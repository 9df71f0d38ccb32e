"""fit_detector: refuses bad targets with the row named; a tiny detector learns squares and bars."""

import numpy as np
import pytest
import torch

from deepzen.vision.detection.model import SSD
from deepzen.vision.detection.train import evaluate_detector, fit_detector


def tiny():
    torch.manual_seed(0)
    return SSD(num_classes=2, in_channels=1, image_size=(64, 64), width=4, pyramid_channels=16,
               aspect_ratios=(1.0,))


@pytest.mark.parametrize("row, message", [
    ([8.0, 8, 40, 40, 2], r"targets\[1, 0\] = .*expected a class id in \[0, 2\) or -1"),
    ([8.0, 8, 40, 40, 0.5], r"targets\[1, 0\].*class id"),
    ([40.0, 8, 8, 40, 1], r"targets\[1, 0\] = \[40.0, 8.0, 8.0, 40.0, 1.0\]: expected x2 > x1 and y2 > y1"),
    ([8.0, float("nan"), 40, 40, 1], r"targets\[1, 0\].*finite"),
])
def test_bad_targets_are_refused_with_the_row(row, message):
    images = torch.zeros(2, 1, 64, 64, dtype=torch.uint8)
    targets = torch.tensor([[[8.0, 8, 40, 40, 1]], [row]])
    with pytest.raises(ValueError, match=message):
        fit_detector(tiny(), images, targets, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="uint8 images"):
        fit_detector(tiny(), images.float(), targets, epochs=1, verbose=0)


def test_a_tiny_detector_learns_squares_and_bars():
    """Squares (class 0) and bars (class 1) at random places; padding rows and an empty image included."""
    rng = np.random.default_rng(0)
    images = np.zeros((64, 1, 64, 64), np.uint8)
    targets = np.full((64, 2, 5), -1.0, np.float32)
    for i in range(1, 64):
        x, y = rng.integers(0, 40, size=2)
        kind = i % 2
        w, h = (20, 20) if kind == 0 else (8, 24)
        images[i, 0, y:y + h, x:x + w] = 255
        targets[i, 0] = (x, y, x + w, y + h, kind)
    model = tiny()
    history = fit_detector(model, images[:48], targets[:48], epochs=15, batch_size=16, learning_rate=1e-2, verbose=0)
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    scores = evaluate_detector(model, images[48:], targets[48:])
    assert scores["map_50"] > 0.5, scores  # held-out images: it learned the shapes, not the examples
