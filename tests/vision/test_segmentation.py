"""The U-Net / FCN, mask overlays, and the mnist-segmentation recipe end to end (tiny, on real MNIST scenes).

The accuracy run (test mIoU >= 0.85) is ``benchmarks/segmentation.py``; here the recipe runs on a few
scenes for one epoch, and ``deepzen train`` / ``deepzen predict`` write the overlay through the CLI.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import deepzen
from deepzen import cli
from deepzen.data.mask_scenes import make_mask_scenes
from deepzen.layers import Conv2DTranspose
from deepzen.models import load_model
from deepzen.recipes import RECIPES
from deepzen.vision import segmentation
from deepzen.vision.segmentation import colour_mask, overlay, unet
from deepzen.vision.segmentation_recipes import mean_iou, segmentation_loss

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("skips", [True, False])
def test_unet_shapes_transposed_up_sampling_and_gradients(skips):
    torch.manual_seed(0)
    model = unet(5, (2, 32, 48), filters=4, depth=2, skips=skips)
    x = torch.rand(3, 2, 32, 48) * 255
    logits = model(x)
    assert logits.shape == (3, 32, 48, 5)  # every pixel, class axis last
    assert sum(isinstance(layer, Conv2DTranspose) for layer in model.modules()) == 2  # one per up-sampling
    assert model.name == ("unet" if skips else "fcn")
    torch.nn.functional.cross_entropy(logits.reshape(-1, 5), torch.randint(0, 5, (3 * 32 * 48,))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_skip_connections_carry_the_encoders_maps():
    # The U-Net's decoder convolutions read the up-sampled maps and the encoder's (twice the channels).
    with_skips, without = unet(3, (1, 16, 16), filters=4, depth=1), unet(3, (1, 16, 16), filters=4, depth=1,
                                                                         skips=False)
    shapes = {name: p.shape for name, p in with_skips.named_parameters() if "up1_conv1" in name}
    plain = {name: p.shape for name, p in without.named_parameters() if "up1_conv1" in name}
    assert [s[1] for s in shapes.values()] == [8] and [s[1] for s in plain.values()] == [4]


def test_unet_refuses_bad_shapes():
    with pytest.raises(ValueError, match=r"depth=3 expects a height and width divisible by 8\. "
                                         r"Received: input_shape=\(1, 60, 64\)"):
        unet(11, (1, 60, 64), depth=3)
    with pytest.raises(ValueError, match="num_classes >= 2"):
        unet(1)


def test_unet_learns_where_the_digits_are():
    """Ink against background on 48 scenes of digit-like strokes: two-class mean IoU above 0.8 in 80 steps."""
    digits = np.zeros((10, 28, 28), np.uint8)
    rng = np.random.default_rng(0)
    for image in digits:  # random strokes: blocks of ink of varied brightness, like a digit's
        for _ in range(4):
            top, left = rng.integers(2, 20, size=2)
            image[top:top + 6, left:left + 3] = rng.integers(160, 256)
    images, masks = make_mask_scenes(digits, np.arange(10), 48, canvas=32, sizes=(12, 16), seed=0)
    binary = (masks > 0).astype(np.int64)
    torch.manual_seed(0)
    model = unet(2, (1, 32, 32), filters=4, depth=2)
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=1e-2), loss=segmentation_loss("crossentropy+dice"))
    model.fit(images.astype(np.float32), binary, batch_size=12, epochs=20, verbose=0)  # 80 steps: 0.96 measured
    assert float(mean_iou(model, images.astype(np.float32), binary, num_classes=2).result()) > 0.8


def test_colour_mask_and_overlay():
    mask = np.array([[0, 1], [2, 30]])
    colours = colour_mask(mask)
    assert colours.shape == (2, 2, 3) and (colours[0, 0] == 0).all()
    np.testing.assert_array_equal(colours[1, 1], segmentation.PALETTE[1 + 29 % (len(segmentation.PALETTE) - 1)])
    image = np.full((2, 2), 100, np.uint8)
    blended = overlay(image, mask, alpha=0.5)
    np.testing.assert_array_equal(blended[0, 0], [100, 100, 100])  # background keeps the image
    np.testing.assert_array_equal(blended[0, 1], np.round((100 + segmentation.PALETTE[1].astype(float)) / 2))
    with pytest.raises(ValueError, match=r"mask \(H, W\) of the same size\. Received: image \(2, 2\), mask \(3,\)"):
        overlay(image, np.zeros(3, int))


def test_segmentation_loss_names():
    assert segmentation_loss("dice").name == "dice"
    with pytest.raises(ValueError, match=r"loss to be one of crossentropy, dice, jaccard .*Received: loss='focal'"):
        segmentation_loss("focal")


def test_recipe_trains_saves_and_predicts_an_overlay_through_the_cli(real_dataset, tmp_path, capsys):
    real_dataset("mnist")
    assert "mnist-segmentation" in RECIPES and RECIPES.get("mnist-segmentation").predictor is not None
    run = tmp_path / "run"
    settings = ["train_scenes=64", "test_scenes=16", "epochs=1", "filters=4", "depth=2", "batch_size=16",
                "pretrain_epochs=1", "pretrain_samples=256", "verbose=0"]
    assert cli.main(["train", "mnist-segmentation", "--run-dir", str(run),
                     *[item for pair in settings for item in ("--set", pair)]]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    metrics = metrics.get("metrics", metrics)
    assert 0.0 <= metrics["test_mean_iou"] <= 1.0 and metrics["test_scenes"] == 16
    for name in ("model.dz", "classes.json", "training_curves.png", "segmentation_examples.png"):
        assert (run / name).is_file(), name

    scene, _ = make_mask_scenes(np.full((1, 28, 28), 255, np.uint8), np.array([3]), 1, seed=1)
    picture = tmp_path / "scene.png"
    Image.fromarray(np.asarray(Image.fromarray(scene[0, 0]).resize((96, 80)))).save(picture)  # not 64x64
    capsys.readouterr()
    assert cli.main(["predict", str(run), str(picture), "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    written = np.asarray(Image.open(result["overlay"]))
    assert result["input"] == str(picture) and written.shape == (80, 96, 3)  # the input's own size
    # The overlay is the picture blended with the saved model's mask, resized back to the picture.
    model = load_model(run / "model.dz", compile=False)
    grey = Image.open(picture).convert("L")
    x = np.asarray(grey.resize((64, 64), Image.BILINEAR), np.float32)[None, None]
    mask = np.asarray(Image.fromarray(model.predict(x).argmax(-1)[0].astype(np.uint8)).resize((96, 80), Image.NEAREST))
    np.testing.assert_array_equal(written, overlay(np.asarray(grey), mask))
    assert cli.main(["predict", str(run), str(tmp_path / "missing.png")]) == 2
    assert "No image at" in capsys.readouterr().err


def test_encoder_classifier_shares_the_unets_encoder():
    model = unet(11, (1, 64, 64), filters=4, depth=3)
    classifier = segmentation.encoder_classifier(model, 10, (1, 28, 28))
    assert classifier(torch.rand(2, 1, 28, 28) * 255).shape == (2, 10)
    shared = {id(p) for p in model.parameters()} & {id(p) for p in classifier.parameters()}
    encoder = [p for name, p in model.named_parameters() if "down" in name or "bottleneck" in name]
    assert shared == {id(p) for p in encoder} and encoder  # every encoder weight, nothing of the decoder
    with torch.no_grad():
        model.get_layer("down1_conv1").weight.add_(1.0)  # a change through the U-Net is the classifier's too
    assert any(p is model.get_layer("down1_conv1").weight for p in classifier.parameters())
