"""Video models (C3D, R(2+1)D, the frame average) and the moving-mnist-video recipe (tiny, on real MNIST clips).

The accuracy run (3D CNN against the frame average) is ``benchmarks/video.py``.
"""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

from deepzen.layers import Conv3D
from deepzen.recipes import RECIPES, run_recipe
from deepzen.vision import video
from deepzen.vision.video import create, r2plus1d
from deepzen.vision.video_recipes import clip_scores

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", ["c3d", "r2plus1d", "frame_average"])
def test_shapes_and_gradients(name):
    torch.manual_seed(0)
    model = create(name, (10, 5), (3, 12, 32, 40), filters=4)
    clips = torch.rand(2, 3, 12, 32, 40) * 255  # (N, C, T, H, W)
    logits = model(clips)
    assert logits.shape == (2, 10, 5)
    assert create(name, (7,), (1, 8, 32, 32), filters=2)(torch.rand(3, 1, 8, 32, 32)).shape == (3, 7)
    torch.nn.functional.cross_entropy(logits.reshape(-1, 5), torch.randint(0, 5, (20,))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_only_the_3d_networks_see_the_order_of_the_frames():
    """The frame average is blind to the order of the frames; C3D and R(2+1)D are not: a reversed clip
    (the same digits moving the other way) gives the frame average the same output, exactly."""
    torch.manual_seed(0)
    clips = torch.rand(2, 1, 10, 32, 32) * 255
    reversed_clips, shuffled = clips.flip(2), clips[:, :, torch.randperm(10)]
    for name in ("frame_average", "c3d", "r2plus1d"):
        model = create(name, (10, 5), (1, 10, 32, 32), filters=4)
        model.eval()
        with torch.no_grad():
            outputs = [model(x) for x in (clips, reversed_clips, shuffled)]
        if name == "frame_average":
            torch.testing.assert_close(outputs[1], outputs[0])
            torch.testing.assert_close(outputs[2], outputs[0])
        else:
            assert (outputs[1] - outputs[0]).abs().max() > 1e-4


def test_r2plus1d_factors_each_3d_convolution_with_its_parameter_count():
    model = r2plus1d((10,), (1, 8, 32, 32), filters=8)
    convolutions = {name: layer for name, layer in model.named_modules() if isinstance(layer, Conv3D)}
    spatial, temporal = convolutions["stage2_a_spatial_conv"], convolutions["stage2_a_temporal_conv"]
    assert tuple(spatial.kernel_size) == (1, 3, 3) and tuple(temporal.kernel_size) == (3, 1, 1)
    # Middle width M = floor(27 * 8 * 16 / (9 * 8 + 3 * 16)) = 28: as many weights as a 3x3x3 conv 8 -> 16.
    assert temporal.weight.shape[1] == 28
    factored = spatial.weight.numel() + temporal.weight.numel()
    assert abs(factored - 27 * 8 * 16) / (27 * 8 * 16) < 0.05


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match=r"Unknown video model 'i3d'\. Expected one of: c3d, r2plus1d, frame_average"):
        create("i3d", (10,))
    with pytest.raises(ValueError, match=r"input_shape \(C, T, H, W\)"):
        create("c3d", (10,), (1, 64, 64))


def test_clip_scores_by_hand():
    labels = np.array([[0, 2, 0, 0, 0, 0, 0, 3, 0, 0],    # 1 moves right, 7 moves up
                       [1, 0, 0, 0, 0, 0, 0, 0, 4, 0]])   # 0 moves left, 8 moves down
    predicted = np.array([[0, 2, 0, 0, 0, 0, 0, 4, 0, 0],  # digits right, 7's direction wrong
                          [1, 0, 0, 0, 0, 0, 0, 0, 0, 4]])  # 8 seen as 9: digits wrong
    scores = clip_scores(labels, predicted)
    assert scores == {"digits_accuracy": 0.5, "direction_accuracy": 0.5, "clip_accuracy": 0.0}


@pytest.mark.parametrize("redraw", [True, False])  # new clips every epoch, or one fixed set
def test_recipe_runs_both_models_on_real_clips(real_dataset, tmp_path, redraw):
    real_dataset("mnist")
    assert "moving-mnist-video" in RECIPES
    metrics = run_recipe("moving-mnist-video", {"train_clips": 32, "test_clips": 16, "epochs": 1, "filters": 2,
                                                "batch_size": 16, "redraw": redraw, "verbose": 0}, tmp_path)
    for prefix in ("test", "baseline"):
        for key in ("digits_accuracy", "direction_accuracy", "clip_accuracy"):
            assert 0.0 <= metrics[f"{prefix}_{key}"] <= 1.0
    assert metrics["train_clips"] == 32 and metrics["test_clips"] == 16
    for name in ("model.dz", "baseline.dz", "labels.json", "training_curves.png", "baseline_curves.png"):
        assert (tmp_path / name).is_file(), name
    with pytest.raises(ValueError, match=r"model 'c3d' or 'r2plus1d'\. Received: model='frame_average'"):
        run_recipe("moving-mnist-video", {"model": "frame_average"}, tmp_path / "bad")


def test_docstring_examples():
    result = doctest.testmod(video)
    assert result.failed == 0 and result.attempted > 0
