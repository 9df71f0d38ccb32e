"""The detection recipes on real data at tiny sizes (CI runs them): run folders, replay, the predictor."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from deepzen.recipes import RECIPES
from deepzen.runs import Run
from deepzen.vision.detection.recipes import MODEL_FILE, WEIGHTS_FILE, draw_detections

TINY = {"width": 4, "pyramid_channels": 8, "threads": 1, "verbose": 0}


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnist-detection")
    run = Run.create("mnist-detection", {"train_scenes": 48, "test_scenes": 12, "epochs": 3, **TINY}, folder)
    return run, run.execute()


def test_mnist_detection_writes_a_complete_run(mnist_run):
    run, metrics = mnist_run
    for name in (WEIGHTS_FILE, MODEL_FILE, "history.json", "metrics.json", "test_detections.png"):
        assert (run.path / name).is_file(), name
    assert metrics["train_images"] == 48 and metrics["test_images"] == 12
    assert 0 <= metrics["test_map"] <= metrics["test_map_50"] <= 1
    history = json.loads((run.path / "history.json").read_text())  # the run's record of the fit
    assert history["epoch"] == [1, 2, 3] and history["loss"][-1] < history["loss"][0]  # it learns
    assert history["learning_rate"][-1] < history["learning_rate"][0]  # the cosine decays
    assert (run.path / "checkpoint.ckpt").is_file()  # trained through Model.fit: --resume continues
    assert json.loads((run.path / MODEL_FILE).read_text())["class_names"] == [str(d) for d in range(10)]


def test_evaluate_replays_the_trained_weights(mnist_run):
    run, metrics = mnist_run
    replayed = Run.open(run.path, mode="replay").execute()
    assert replayed["test_map_50"] == pytest.approx(metrics["test_map_50"])
    assert "train_seconds" not in replayed  # nothing was trained


def test_predictor_draws_boxes_on_the_photo(mnist_run, tmp_path):
    run, _ = mnist_run
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (300, 200), (30, 30, 30)).save(photo)
    predict = RECIPES.get("mnist-detection").predictor
    (result,) = predict(run.path, [str(photo)], 3)  # --top 3: the three best, whatever their score
    drawn = Image.open(result["image"])
    assert drawn.size == (300, 200) and len(result["objects"]) == 3
    assert not np.array_equal(np.asarray(drawn), np.asarray(Image.open(photo).convert("RGB")))  # boxes drawn
    for found in result["objects"]:
        x1, y1, x2, y2 = found["box"]
        assert 0 <= x1 < x2 <= 300 and 0 <= y1 < y2 <= 200 and found["class"] in [str(d) for d in range(10)]
    with pytest.raises(FileNotFoundError, match="No image at"):
        predict(run.path, [str(tmp_path / "missing.jpg")], None)
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="is not an image Pillow can read"):
        predict(run.path, [str(tmp_path / "notes.jpg")], None)


def test_draw_detections_scales_boxes_to_the_image():
    picture = Image.new("RGB", (200, 100))
    found = {"boxes": np.array([[10.0, 10, 30, 40]]), "scores": np.array([0.9]), "labels": np.array([1])}
    drawn = np.asarray(draw_detections(picture, found, ("a", "b"), scale=(2.0, 1.0)))
    assert drawn[25, 20].any() and drawn[25, 60].any()  # the left and right edges at x = 20 and 60
    assert not drawn[25, 40].any()  # inside the box stays untouched


def test_raccoon_detection_tiny_run(tmp_path):
    run = Run.create("raccoon-detection", {"image_size": 64, "epochs": 1, "batch_size": 32, **TINY}, tmp_path)
    metrics = run.execute()
    assert (metrics["train_images"], metrics["test_images"]) == (160, 40)
    assert all(math.isfinite(metrics[k]) for k in ("test_map", "test_map_50", "test_map_75"))
    assert set(metrics["test_ap_50_per_class"]) <= {"raccoon"}


def test_any_coco_folder_trains_with_data(tmp_path):
    """data= takes another dataset folder: here a COCO one with two classes and an image without objects."""
    folder = tmp_path / "shapes"
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for split, count in (("train", 6), ("val", 3)):
        (folder / split).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 60, (48, 64, 3), dtype=np.uint8)
            objects = [] if i == 0 else [(1, (8, 8, 30, 40)), (2, (36, 10, 60, 30))]
            for category, (x1, y1, x2, y2) in objects:
                pixels[y1:y2, x1:x2] = 200 if category == 1 else 120
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": category,
                                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": 1, "iscrowd": 0})
            Image.fromarray(pixels).save(folder / split / f"{i}.png")
            images.append({"id": i + 1, "file_name": f"{i}.png", "height": 48, "width": 64})
        (folder / "annotations").mkdir(exist_ok=True)
        (folder / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"images": images, "annotations": annotations,
             "categories": [{"id": 1, "name": "bright"}, {"id": 2, "name": "dim"}]}))
        images, annotations = [], []
    run = Run.create("raccoon-detection", {"data": str(folder), "image_size": 64, "epochs": 1, **TINY}, tmp_path / "run")
    metrics = run.execute()
    assert (metrics["train_images"], metrics["test_images"]) == (6, 3)
    assert json.loads((run.path / MODEL_FILE).read_text())["class_names"] == ["bright", "dim"]
