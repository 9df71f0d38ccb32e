"""Segmentation recipe: a U-Net on MNIST scenes with per-pixel digit masks, and its `deepzen predict`.

``deepzen train mnist-segmentation`` trains :func:`deepzen.vision.segmentation.unet` on the scenes of
:mod:`deepzen.data.mask_scenes` (11 classes: background and the ten digits) and reports the test
scenes' mean IoU (target: at least 0.85) and per-class IoU. ``deepzen predict RUN image.png`` writes
the image with its predicted mask blended in colours to ``RUN/predictions/image_mask.png``;
``deepzen serve RUN`` answers uploaded images with their masks (:func:`segment_pictures`).
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import deepzen
from deepzen.data.images import open_pictures
from deepzen.data.mask_scenes import CLASS_NAMES, NUM_CLASSES, load_mask_scenes
from deepzen.metrics import MeanIoU
from deepzen.recipes import load_run_model, register_recipe, run_file, write_text
from deepzen.vision.segmentation import encoder_classifier, overlay, unet


@dataclass
class SegmentationConfig:
    data: str | None = None  # the MNIST folder the scenes are drawn from (default $DEEPZEN_DATA/mnist)
    train_scenes: int = 3000  # training scenes, from MNIST's training digits
    test_scenes: int = 1000  # test scenes, from MNIST's test digits
    filters: int = 16  # the U-Net's first level's filters (doubled at each of the `depth` levels)
    depth: int = 3  # poolings and transposed-convolution up-samplings
    skips: bool = True  # U-Net skip connections; false: a plain FCN decoder
    loss: str = "crossentropy"  # "crossentropy", "dice", "jaccard", or a sum such as "crossentropy+dice"
    background_weight: float = 0.2  # cross-entropy weight of a background pixel (a digit pixel's is 1)
    pretrain_epochs: int = 0  # first train the encoder as a digit classifier on MNIST's 28x28 training images (0: no)
    pretrain_samples: int = 0  # training images for that (0: all 60,000; the scenes' digits come from the same set)
    epochs: int = 15
    batch_size: int = 32
    learning_rate: float = 3e-3  # Adam's peak rate, decayed to 0 along a cosine over the epochs
    seed: int = 0
    verbose: int = 2


def segmentation_loss(name: str, background_weight: float = 1.0, num_classes: int = NUM_CLASSES):
    """The pixel loss named in the config: cross-entropy (background pixels weighted by
    ``background_weight``), an overlap loss, or their sum."""
    class_weight = None if background_weight == 1.0 else [background_weight] + [1.0] * (num_classes - 1)
    terms = {"crossentropy": deepzen.losses.SparseCategoricalCrossentropy(from_logits=True, class_weight=class_weight),
             "dice": deepzen.losses.Dice(from_logits=True), "jaccard": deepzen.losses.Jaccard(from_logits=True)}
    parts = name.split("+")
    if not parts or any(part not in terms for part in parts):
        raise ValueError(f"mnist-segmentation expects loss to be one of {', '.join(terms)} or a sum of them joined "
                         f"by '+'. Received: loss={name!r}")
    if len(parts) == 1:
        return terms[parts[0]]
    chosen = [terms[part] for part in parts]

    def summed_loss(y_true, y_pred):
        return sum(loss(y_true, y_pred) for loss in chosen)

    summed_loss.__name__ = name.replace("+", "_plus_")
    return summed_loss


def pretrain_encoder(model, config: SegmentationConfig) -> None:
    """Trains the U-Net's encoder as a digit classifier on MNIST's training images (see
    :func:`deepzen.vision.segmentation.encoder_classifier`): per-pixel labels teach a network what each
    digit looks like slowly, image labels fast."""
    from deepzen.data.images import load_mnist

    images, labels, _, _ = load_mnist(config.data)
    count = config.pretrain_samples or len(images)
    order = np.random.default_rng(config.seed).permutation(len(images))[:count]
    classifier = encoder_classifier(model, 10, (model.input_spec.shape[0], *images.shape[1:]))
    classifier.compile(optimizer=deepzen.optimizers.Adam(learning_rate=config.learning_rate),
                       loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True),
                       metrics=["accuracy"])
    x = np.repeat(images[order, None].astype(np.float32), model.input_spec.shape[0], axis=1)  # (N, C, 28, 28)
    classifier.fit(x, labels[order], batch_size=128, epochs=config.pretrain_epochs, verbose=config.verbose)


def mean_iou(model, x: np.ndarray, masks: np.ndarray, num_classes: int = NUM_CLASSES,
             batch_size: int = 100) -> MeanIoU:
    """The model's :class:`~deepzen.metrics.MeanIoU` over the scenes ``x`` against ``masks``, batch by batch."""
    metric = MeanIoU(num_classes=num_classes)
    for start in range(0, len(x), batch_size):
        logits = torch.as_tensor(model.predict(x[start:start + batch_size], verbose=0))  # (B, H, W, C)
        metric.update_state(torch.as_tensor(masks[start:start + batch_size]), logits)
    return metric


def write_examples(images: np.ndarray, masks: np.ndarray, predicted: np.ndarray, path: Path) -> None:
    """A PNG: each row an input, its true mask and its predicted mask, overlaid in colour."""
    rows = [np.concatenate([overlay(image[0], mask) for mask in (truth, guess)] + [np.repeat(image[0][..., None], 3, -1)],
                           axis=1) for image, truth, guess in zip(images, masks, predicted)]
    grid = np.concatenate(rows, axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)


def mnist_segmentation(config: SegmentationConfig, run_dir: Path) -> dict:
    from deepzen.training.plots import plot_history

    deepzen.seed(config.seed)
    x_train, y_train, x_test, y_test = load_mask_scenes(config.data, train_scenes=config.train_scenes,
                                                        test_scenes=config.test_scenes, seed=config.seed)
    x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)  # pixels 0..255; the model rescales
    model = unet(NUM_CLASSES, x_train.shape[1:], filters=config.filters, depth=config.depth, skips=config.skips)
    if config.pretrain_epochs:
        pretrain_encoder(model, config)
    # The cosine decay settles the per-pixel classes: at a constant 3e-3 the validation mIoU swung by 0.2
    # from one epoch to the next.
    steps = config.epochs * -(-len(x_train) // config.batch_size)
    schedule = deepzen.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps)
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=schedule),
                  loss=segmentation_loss(config.loss, config.background_weight), metrics=[MeanIoU(num_classes=NUM_CLASSES)])
    history = model.fit(x_train, y_train, batch_size=config.batch_size, epochs=config.epochs,
                        validation_data=(x_test[:200], y_test[:200]), verbose=config.verbose)
    model.save(run_dir / "model.dz")
    write_text(run_dir / "classes.json", json.dumps({"class_names": list(CLASS_NAMES)}, indent=2) + "\n")
    plot_history(history, run_dir / "training_curves.png", title="mnist-segmentation")
    metric = mean_iou(model, x_test, y_test)
    predicted = model.predict(x_test[:8], verbose=0).argmax(-1)
    write_examples(x_test[:8].astype(np.uint8), y_test[:8], predicted, run_dir / "segmentation_examples.png")
    per_class = metric.result_per_class().tolist()
    matrix = metric.matrix()
    return {"test_mean_iou": float(metric.result()),
            "test_pixel_accuracy": float(matrix.diagonal().sum() / matrix.sum()),
            **{f"test_iou_{name}": value for name, value in zip(CLASS_NAMES, per_class)},
            "train_scenes": len(x_train), "test_scenes": len(x_test),
            "parameters": sum(p.numel() for p in model.parameters())}


def load_segmenter(run_dir: Path) -> tuple:
    """The run's trained U-Net and its class names, loaded once while the files are unchanged."""
    class_names = json.loads(run_file(run_dir, "classes.json", "the class names").read_text())["class_names"]
    return load_run_model(run_dir, "model.dz", "the trained U-Net"), class_names


def segment_pictures(run_dir: Path, pictures: list[Image.Image], top: int | None = None) -> list[dict]:
    """The recipe's image predictor (what ``deepzen serve`` answers uploads with).

    Returns:
        ``[{"classes": {class name: share of the pixels}, "mask": the mask as a base64 PNG (one grey
        byte per pixel: the class id, at the picture's size), "output": a one-line summary}]``;
        ``classes`` lists the ``top`` largest non-background classes (default 3).
    """
    model, class_names = load_segmenter(run_dir)
    return [{**_summary(mask, class_names, top), "mask": _png_base64(mask)} for mask in _masks(model, pictures)]


def predict_masks(run_dir: Path, inputs: list[str], top: int | None = None) -> list[dict]:
    """Segments each image file with the run's U-Net and writes its coloured mask overlay.

    Each image is read as grey, resized to the model's input size (the network was trained on light
    digits on a dark background, as in MNIST), segmented, and the mask resized back to the image's
    size (nearest neighbour) and blended over it.

    Returns:
        ``[{"input": path, "overlay": written PNG, "classes": {class name: share of the pixels}, "output":
        a one-line summary}]``; ``classes`` lists the ``top`` largest non-background classes (default 3).
    """
    model, class_names = load_segmenter(run_dir)
    pictures = open_pictures(inputs, "L", reader="mnist-segmentation")
    out_dir = Path(run_dir) / "predictions"
    out_dir.mkdir(exist_ok=True)
    results = []
    for name, picture, mask in zip(inputs, pictures, _masks(model, pictures)):
        target = out_dir / f"{Path(name).stem}_mask.png"
        Image.fromarray(overlay(np.asarray(picture), mask)).save(target)
        summary = _summary(mask, class_names, top)
        results.append({"input": name, "overlay": str(target), "classes": summary["classes"],
                        "output": f"{summary['output']}; mask overlay written to {target}"})
    return results


def _masks(model, pictures: list[Image.Image]) -> list[np.ndarray]:
    """Each picture's (H, W) uint8 class ids at its own size: segmented in grey at the model's input size."""
    if not pictures:
        return []
    channels, height, width = model.input_spec.shape
    grey = [picture.convert("L") for picture in pictures]
    x = np.stack([np.asarray(g.resize((width, height), Image.BILINEAR), np.float32) for g in grey])[:, None]  # 0..255
    masks = model.predict(np.repeat(x, channels, axis=1), verbose=0).argmax(-1).astype(np.uint8)  # (N, H, W)
    return [np.asarray(Image.fromarray(mask).resize(g.size, Image.NEAREST)) for mask, g in zip(masks, grey)]


def _summary(mask: np.ndarray, class_names: list[str], top: int | None) -> dict:
    shares = np.bincount(mask.ravel(), minlength=len(class_names)) / mask.size
    ranked = [c for c in np.argsort(-shares) if c != 0 and shares[c] > 0][:top or 3]
    classes = {class_names[c]: float(shares[c]) for c in ranked}
    found = ", ".join(f"{label} ({share:.1%} of the pixels)" for label, share in classes.items()) or "no digits"
    return {"classes": classes, "output": found}


def _png_base64(mask: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, "PNG")  # uint8 (H, W): one grey byte per pixel
    return base64.b64encode(buffer.getvalue()).decode("ascii")


register_recipe("mnist-segmentation", SegmentationConfig,
                "U-Net (Conv2DTranspose up-sampling) on MNIST scenes with per-pixel digit masks, 11 classes; "
                "target test mIoU >= 0.85", predict_masks, image_predictor=segment_pictures,
                dataset="scenes of MNIST digits with per-pixel masks (10 digits + background)",
                target="test mIoU >= 0.85")(mnist_segmentation)
