"""Detection recipes: ``mnist-detection`` (generated digit scenes) and ``raccoon-detection`` (real photos,
or any VOC or COCO folder given as ``data=``), with the predictor behind ``deepzen predict RUN photo.jpg``.

Training runs on ``Model.fit`` (:func:`~deepzen.vision.detection.train.fit_detector`), so the run folder
also holds what every fit writes: ``checkpoint.ckpt`` (after every epoch: ``deepzen train --resume RUN``
continues exactly), ``history.json``/``history.csv`` (the epoch logs) and ``last.dz``. Besides, it holds
``detector.safetensors`` (the trained network's weights), ``detector.json`` (the architecture, the class
names, the input size), ``metrics.json`` and ``test_detections.png`` (test images with their predicted
boxes). ``deepzen evaluate RUN`` loads the weights and evaluates again without training.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

import deepzen
from deepzen.data.paths import dataset_folder
from deepzen.data.images import open_pictures
from deepzen.recipes import cached_load, register_recipe, run_file, write_text
from deepzen.training.serialization import atomic_write
from deepzen.vision.detection.augment import DetectionAugment
from deepzen.vision.detection.model import SSD
from deepzen.vision.detection.readers import load_detection_folder, to_arrays
from deepzen.vision.detection.scenes import load_mnist_scenes
from deepzen.vision.detection.train import detect_images, evaluate_detector, fit_detector

WEIGHTS_FILE = "detector.safetensors"
MODEL_FILE = "detector.json"
PREDICTIONS_FOLDER = "predictions"
COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#fabed4",
           "#469990")


# -- saving and loading a trained detector ----------------------------------------------------------------
def save_detector(model: SSD, class_names: tuple[str, ...], run_dir: Path) -> None:
    """Writes the weights and ``detector.json`` (architecture and class names) into ``run_dir`` atomically."""
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    atomic_write(run_dir / WEIGHTS_FILE, lambda file: file.write(safetensors_bytes(state)))
    write_text(run_dir / MODEL_FILE, json.dumps({"model": model.get_config(), "class_names": list(class_names)},
                                                indent=2) + "\n")


def load_detector(run_dir: Path) -> tuple[SSD, tuple[str, ...]]:
    """The trained detector of a run folder (eval mode) and its class names, loaded once while the files
    are unchanged."""
    return cached_load(_read_detector, run_file(run_dir, MODEL_FILE, "the detector's architecture"),
                       run_file(run_dir, WEIGHTS_FILE, "the detector's weights"))


def _read_detector(model_file: Path, weights_file: Path) -> tuple[SSD, tuple[str, ...]]:
    config = json.loads(model_file.read_text(encoding="utf-8"))
    model = SSD.from_config(config["model"])
    model.load_state_dict(load_file(weights_file))
    return model.eval(), tuple(config["class_names"])


def _replaying() -> Path | None:
    """The run folder when ``deepzen evaluate`` replays a run (load the weights, train nothing), else None."""
    from deepzen.runs import current_run

    run = current_run()
    return run.path if run is not None and run.mode == "replay" else None


# -- drawing ------------------------------------------------------------------------------------------------
def draw_detections(image: Image.Image, detections: dict[str, np.ndarray], class_names: tuple[str, ...],
                    scale: tuple[float, float] = (1.0, 1.0)) -> Image.Image:
    """A copy of ``image`` (RGB) with each box, its class and its score drawn.

    Args:
        image: the picture.
        detections: ``boxes`` (D, 4) in the detector's input pixels, ``scores`` (D,), ``labels`` (D,).
        class_names: names of the labels.
        scale: ``(x, y)`` factors from the detector's input pixels to ``image``'s.
    """
    picture = image.convert("RGB")
    draw = ImageDraw.Draw(picture)
    line = max(1, round(min(picture.size) / 200))
    font = ImageFont.load_default(size=max(10, min(picture.size) // 30))  # labels readable on large photos
    for box, score, label in zip(detections["boxes"], detections["scores"], detections["labels"]):
        x1, y1, x2, y2 = (float(v) * scale[i % 2] for i, v in enumerate(box))
        colour = COLOURS[int(label) % len(COLOURS)]
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=line)
        text = f"{class_names[int(label)]} {float(score):.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        height = bottom - top + 4
        label_top = y1 - height if y1 >= height else y1  # above the box, or inside it at the image's top edge
        draw.rectangle([x1, label_top, x1 + right - left + 4, label_top + height], fill=colour)
        draw.text((x1 + 2, label_top + 1 - top), text, fill="white", font=font)
    return picture


def _test_sheet(model: SSD, images: np.ndarray, class_names: tuple[str, ...], path: Path, count: int = 8) -> None:
    """A row of test images with their detections (score >= 0.5), for a look at what the model does."""
    found = detect_images(model, images[:count], score_threshold=0.5)
    size = images.shape[-1]
    sheet = Image.new("RGB", (size * min(count, len(images)), size))
    for i, (pixels, detections) in enumerate(zip(images[:count], found)):
        mode = "L" if pixels.shape[0] == 1 else "RGB"
        picture = Image.fromarray(pixels[0] if mode == "L" else pixels.transpose(1, 2, 0), mode)
        sheet.paste(draw_detections(picture, detections, class_names), (i * size, 0))
    sheet = sheet.resize((sheet.width * 2, sheet.height * 2), Image.NEAREST) if size < 200 else sheet
    sheet.save(path)


def detect_pictures(run_dir: Path, pictures: list[Image.Image], top: int | None) -> list[dict[str, Any]]:
    """The image predictor of the detection recipes (what ``deepzen serve`` answers uploads with).

    Returns:
        ``[{"objects": [{"class", "score", "box": [x1, y1, x2, y2] in the picture's pixels}], "output":
        one line}]``, one per picture: the detections scoring at least 0.5 (``top``: the ``top`` best,
        whatever their score).
    """
    model, class_names = load_detector(run_dir)
    return [_described(found, class_names, scale) for found, scale in _detect(model, pictures, top)]


def predict_images(run_dir: Path, inputs: list[str], top: int | None) -> list[dict[str, Any]]:
    """The predictor of the detection recipes: detects objects in image files and draws them.

    Writes ``RUN/predictions/<name>.png``: the image at its own size with the boxes, classes and
    scores of the detections scoring at least 0.5 (``--top N``: the N best, whatever their score).
    Returns :func:`detect_pictures`'s results with the ``"input"`` and the drawing's path (``"image"``).
    """
    model, class_names = load_detector(run_dir)
    pictures = open_pictures(inputs, reader="a detection run")
    out_folder = Path(run_dir) / PREDICTIONS_FOLDER
    out_folder.mkdir(exist_ok=True)
    results = []
    for name, picture, (found, scale) in zip(inputs, pictures, _detect(model, pictures, top)):
        output = out_folder / f"{Path(name).stem}.png"
        draw_detections(picture, found, class_names, scale).save(output)
        described = _described(found, class_names, scale)
        results.append({"input": name, **described, "output": f"{described['output']} (drawn in {output})",
                        "image": str(output)})
    return results


def _detect(model: SSD, pictures: list[Image.Image], top: int | None) -> list[tuple[dict, tuple[float, float]]]:
    """Each picture's detections in the detector's input pixels, and the (x, y) scale back to the picture's."""
    if not pictures:
        return []
    channels, (height, width) = model.config["in_channels"], model.image_size
    arrays = [np.asarray(picture.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR),
                         dtype=np.uint8) for picture in pictures]
    pixels = np.stack(arrays)[:, None] if channels == 1 else np.stack(arrays).transpose(0, 3, 1, 2)
    found = detect_images(model, pixels, score_threshold=0.01 if top else 0.5)
    if top:
        found = [{key: value[:top] for key, value in each.items()} for each in found]
    return [(each, (picture.width / width, picture.height / height)) for each, picture in zip(found, pictures)]


def _described(found: dict[str, np.ndarray], class_names: tuple[str, ...], scale: tuple[float, float]) -> dict:
    objects = [{"class": class_names[int(label)], "score": round(float(score), 4),
                "box": [round(float(v) * scale[i % 2], 1) for i, v in enumerate(box)]}
               for box, score, label in zip(found["boxes"], found["scores"], found["labels"])]
    return {"objects": objects, "output": ", ".join(f"{o['class']} {o['score']:.2f}" for o in objects)
            or "nothing found"}


# -- the recipes -----------------------------------------------------------------------------------------
def _train_and_report(config: Any, run_dir: Path, model: SSD, augment: DetectionAugment, data: tuple,
                      class_names: tuple[str, ...], extra: dict[str, Any]) -> dict[str, Any]:
    """Trains (or, on a replay, loads) ``model``, evaluates it on the test split and writes the run's files."""
    x_train, y_train, x_test, y_test = data
    replay = _replaying()
    metrics: dict[str, Any] = dict(extra)
    if replay is not None:
        model, class_names = load_detector(replay)
    else:
        start = time.perf_counter()
        history = fit_detector(model, x_train, y_train, epochs=config.epochs, batch_size=config.batch_size,
                               learning_rate=config.learning_rate, weight_decay=config.weight_decay,
                               augment=augment, seed=config.seed, verbose=config.verbose)
        metrics["train_seconds"] = round(time.perf_counter() - start, 1)
        trained = sum("seconds" in epoch for epoch in history)  # a resumed run trains only the epochs left
        metrics["train_images_per_second"] = round(len(x_train) * trained / max(metrics["train_seconds"], 0.1), 2)
        save_detector(model, class_names, run_dir)
    model.eval()
    start = time.perf_counter()
    scores = evaluate_detector(model, x_test, y_test, class_names)
    metrics["eval_seconds"] = round(time.perf_counter() - start, 1)
    metrics.update(test_map=scores["map"], test_map_50=scores["map_50"], test_map_75=scores["map_75"],
                   test_ap_50_per_class=scores["ap_50_per_class"], train_images=len(x_train), test_images=len(x_test))
    _test_sheet(model, x_test, class_names, run_dir / "test_detections.png")
    return metrics


def _threads(count: int) -> None:
    # On a shared, busy machine one thread can beat two (threads spin waiting for each other): measure.
    if count:
        torch.set_num_threads(count)


@dataclass
class MnistDetectionConfig:
    """SSD-style detector on 128x128 scenes of 2-5 MNIST digits, 20-64 pixels each (see scenes.py)."""

    data: str | None = None  # the MNIST folder (default $DEEPZEN_DATA/mnist)
    train_scenes: int = 6000  # generated training scenes
    test_scenes: int = 1000  # generated test scenes
    canvas: int = 128  # scene side in pixels
    digits: tuple = (2, 5)  # fewest, most digits per scene
    sizes: tuple = (20, 64)  # smallest, largest side a 28x28 digit is resized to
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 5e-4
    width: int = 8  # the backbone's first-stage channels (doubling per stage)
    pyramid_channels: int = 32  # channels of the feature pyramid's levels
    aspect_ratios: tuple = (1.0, 0.6, 0.35)  # anchor width / height: digits are upright, "1"s narrow
    scale_jitter: float = 0.2  # augmentation: zoom in [1 - j, 1 + j] with crop / pad; no flips for digits
    photometric: float = 0.2  # augmentation: strength in [0, 1) of the brightness, contrast, saturation changes
    seed: int = 0
    threads: int = 0  # torch threads (0: torch's default)
    verbose: int = 1


@register_recipe("mnist-detection", MnistDetectionConfig,
                 "SSD-style detector on seeded 128x128 scenes of MNIST digits, 10 classes; target mAP@0.5 >= 0.90",
                 predictor=predict_images, image_predictor=detect_pictures, replay_file=WEIGHTS_FILE,
                 dataset="seeded 128x128 scenes of 2-5 MNIST digits", target="test mAP@0.5 >= 0.90")
def mnist_detection(config: MnistDetectionConfig, run_dir: Path) -> dict:
    _threads(config.threads)
    deepzen.seed(config.seed)
    data = load_mnist_scenes(config.data, train_scenes=config.train_scenes, test_scenes=config.test_scenes,
                             seed=config.seed, canvas=config.canvas, digits=tuple(config.digits),
                             sizes=tuple(config.sizes))
    model = SSD(num_classes=10, in_channels=1, image_size=(config.canvas, config.canvas), width=config.width,
                pyramid_channels=config.pyramid_channels, aspect_ratios=tuple(config.aspect_ratios))
    augment = DetectionAugment(scale=(1 - config.scale_jitter, 1 + config.scale_jitter),
                               photometric=config.photometric, seed=config.seed)
    return _train_and_report(config, run_dir, model, augment, data, tuple(str(d) for d in range(10)), {})


@dataclass
class RaccoonDetectionConfig:
    """SSD-style detector trained from scratch on the raccoon photos (or any VOC or COCO folder)."""

    data: str | None = None  # a VOC or COCO dataset folder (default $DEEPZEN_DATA/raccoon)
    class_names: tuple = ()  # the classes in id order (empty: the sorted names of the training split)
    image_size: int = 192  # photos are stretched to image_size x image_size
    epochs: int = 30
    batch_size: int = 16
    learning_rate: float = 3e-3
    weight_decay: float = 5e-4
    width: int = 8  # the backbone's first-stage channels (doubling per stage)
    pyramid_channels: int = 32  # channels of the feature pyramid's levels
    aspect_ratios: tuple = (1.0, 0.5, 2.0)  # anchor width / height
    flip: bool = True  # augmentation: random horizontal flips
    scale: tuple = (0.6, 1.4)  # augmentation zoom range (crop above 1, pad below)
    photometric: float = 0.3  # augmentation: strength in [0, 1) of the brightness, contrast, saturation changes
    on_invalid: str = "raise"  # degenerate boxes in the annotations: "raise" or "drop"
    seed: int = 0
    threads: int = 0
    verbose: int = 1


@register_recipe("raccoon-detection", RaccoonDetectionConfig,
                 "SSD-style detector from scratch on the raccoon photos (author's 160/40 split) or any VOC/COCO "
                 "folder (data=PATH); reports mAP@0.5 and mAP@[.5:.95]",
                 predictor=predict_images, image_predictor=detect_pictures, replay_file=WEIGHTS_FILE,
                 dataset="Raccoon photos (200 images, the author's 160/40 split)",
                 target="test mAP@0.5 and mAP@[.5:.95]")
def raccoon_detection(config: RaccoonDetectionConfig, run_dir: Path) -> dict:
    _threads(config.threads)
    deepzen.seed(config.seed)
    folder = dataset_folder("raccoon", config.data)
    train, test = load_detection_folder(folder, tuple(config.class_names) or None, seed=config.seed,
                                        on_invalid=config.on_invalid)
    data = (*to_arrays(train, config.image_size), *to_arrays(test, config.image_size))
    model = SSD(num_classes=len(train.class_names), in_channels=3, image_size=(config.image_size,) * 2,
                width=config.width, pyramid_channels=config.pyramid_channels,
                aspect_ratios=tuple(config.aspect_ratios), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    augment = DetectionAugment(flip=config.flip, scale=tuple(config.scale), photometric=config.photometric,
                               seed=config.seed)
    return _train_and_report(config, run_dir, model, augment, data, train.class_names, {"dataset": str(folder)})
