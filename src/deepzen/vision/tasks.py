"""Image classification end to end: load and normalize a dataset, build a zoo model (optionally with
batched augmentation), schedule the learning rate, and write the report a user expects.

The recipes in :mod:`deepzen.vision.recipes` are short because the steps live here::

    data = load_image_data("mnist")                          # float32 (N, 1, 28, 28), normalized
    model = image_classifier("resnet20", data, augment="digits", seed=0)  # Model(Augmented(augment, net))
    history = fit_classifier(model, data, SGD(0.1, momentum=0.9), epochs=15, batch_size=128,
                             schedule=cosine_schedule(0.1, epochs=15))
    metrics = write_report(model, data, history, "runs/resnet", title="resnet20")  # model file and plots

Images are normalized in the data (per channel, with the training set's mean and std), so the zoo
network takes normalized images in every mode and transfer learning can use it as it is.
Augmentation runs inside the model, on the batch already on the device: :class:`Augmented`
wraps the network, and its random transforms act in training mode only (they are the identity in
eval mode), so ``fit``, ``evaluate`` and ``predict`` need no augmentation hook.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from deepzen.data.images import CIFAR10_CLASSES, load_cifar10, load_mnist
from deepzen.data.paths import PathLike
from deepzen.optimizers import schedules
from deepzen.runs import read_json
from deepzen.training import distributed
from deepzen.training.callbacks import Callback
from deepzen.vision.augment import Augment, RandomCrop, RandomFlip, RandomRotation, RandomTranslation, RandomZoom

MNIST_FORMAT_DATASETS = ("mnist", "fashion-mnist", "kmnist")
DATASETS = (*MNIST_FORMAT_DATASETS, "cifar10")
AUGMENTATIONS = ("none", "digits", "cifar")


# -- data ----------------------------------------------------------------------------------------------
@dataclass
class ImageData:
    """A train/test split of normalized images.

    Attributes:
        x_train, x_test: float32 ``(N, C, H, W)``, ``(x / 255 - mean[c]) / std[c]``.
        y_train, y_test: int64 ``(N,)`` class ids in ``[0, len(class_names))``.
        class_names: one name per class id.
        mean, std: per-channel statistics of the training images in [0, 1] (used for normalizing).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.x_train.shape[1:])

    def unnormalize(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """Normalized ``(N, C, H, W)`` images back to pixel values in [0, 1] (for showing them)."""
        images = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(1, -1, 1, 1)
        return np.clip(images * std + mean, 0.0, 1.0)


def _pick(y: np.ndarray, rng: np.random.Generator, *, limit: int | None = None,
          per_class: int | None = None) -> np.ndarray:
    """Sorted indices of a random subset: ``per_class`` of each label and/or ``limit`` in all."""
    index = rng.permutation(len(y))
    if per_class is not None:
        kept = np.concatenate([index[y[index] == label][:per_class] for label in np.unique(y)])
        index = rng.permutation(kept)
    if limit is not None:
        index = index[:limit]
    return np.sort(index)


def _channel_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each channel of uint8 ``(N, C, H, W)`` images, scaled to [0, 1].

    Exact, from a histogram of the 256 pixel values per channel (no float copy of the images).
    """
    values = np.arange(256) / 255.0
    pixels = torch.from_numpy(np.ascontiguousarray(images))
    # torch's bincount reads uint8 as it is (NumPy's would first copy the images to int64).
    counts = np.stack([torch.bincount(pixels[:, c].flatten(), minlength=256).numpy()
                       for c in range(images.shape[1])])  # (C, 256)
    total = counts.sum(axis=1)
    mean = counts @ values / total
    variance = counts @ values**2 / total - mean**2
    return mean, np.sqrt(np.maximum(variance, 0.0))


def load_image_data(dataset: str = "mnist", data: PathLike | None = None, *, classes: Sequence[int] | None = None,
                    train_samples: int | None = None, train_per_class: int | None = None,
                    test_samples: int | None = None, statistics: tuple[Sequence[float], Sequence[float]] | None = None,
                    seed: int = 0) -> ImageData:
    """Reads an image dataset, optionally takes a subset, and normalizes it per channel.

    Args:
        dataset: "mnist", "fashion-mnist", "kmnist" (any MNIST-format folder) or "cifar10".
        data: the folder holding the dataset's files (default ``$DEEPZEN_DATA/<dataset>``).
        classes: keep only these class ids, relabelled ``0..len(classes) - 1`` in the order given
            (e.g. ``(5, 6, 7, 8, 9)`` -> 0..4).
        train_samples: keep this many training images, drawn at random (``seed``).
        train_per_class: keep this many training images of each class, drawn at random.
        test_samples: keep this many test images, drawn at random.
        statistics: ``(mean, std)`` per channel to normalize with, e.g. those of the data a network
            was trained on before transfer learning; default: those of the kept training images.
        seed: seeds the subset draws.

    Returns:
        An :class:`ImageData`.

    Raises:
        ValueError: for an unknown dataset or class id; ``DatasetNotFoundError`` (from the readers)
            when the files are missing.
    """
    if dataset in MNIST_FORMAT_DATASETS:
        x_train, y_train, x_test, y_test = load_mnist(data, kind=dataset)
        x_train, x_test = x_train[:, None], x_test[:, None]  # (N, 1, 28, 28)
        class_names = tuple(str(label) for label in range(10))
    elif dataset == "cifar10":
        x_train, y_train, x_test, y_test = load_cifar10(data)  # (N, 3, 32, 32)
        class_names = CIFAR10_CLASSES
    else:
        raise ValueError(f"Expected dataset to be one of {', '.join(DATASETS)}. Received: dataset={dataset!r}")
    rng = np.random.default_rng(seed)
    if classes is not None:
        classes = [int(c) for c in classes]
        unknown = [c for c in classes if not 0 <= c < len(class_names)]
        if unknown or len(set(classes)) != len(classes):
            raise ValueError(f"Expected distinct class ids in 0..{len(class_names) - 1}. Received: classes={classes}")
        relabel = np.full(len(class_names), -1, dtype=np.int64)
        relabel[classes] = np.arange(len(classes))
        keep_train, keep_test = relabel[y_train] >= 0, relabel[y_test] >= 0
        x_train, y_train = x_train[keep_train], relabel[y_train[keep_train]]
        x_test, y_test = x_test[keep_test], relabel[y_test[keep_test]]
        class_names = tuple(class_names[c] for c in classes)
    if train_samples is not None or train_per_class is not None:
        index = _pick(y_train, rng, limit=train_samples, per_class=train_per_class)
        x_train, y_train = x_train[index], y_train[index]
    if test_samples is not None:
        index = _pick(y_test, rng, limit=test_samples)
        x_test, y_test = x_test[index], y_test[index]
    if statistics is None:
        mean, std = _channel_statistics(x_train)
    else:
        mean, std = (np.broadcast_to(np.asarray(s, dtype=np.float64), (x_train.shape[1],)) for s in statistics)
    scale = np.float32(1 / 255)
    shift, divisor = mean.astype(np.float32)[:, None, None], std.astype(np.float32)[:, None, None]

    def normalize(images: np.ndarray) -> np.ndarray:
        out = images.astype(np.float32)
        out *= scale  # in place: one float copy of the images, no temporaries
        out -= shift
        out /= divisor
        return out

    return ImageData(normalize(x_train), y_train.astype(np.int64), normalize(x_test), y_test.astype(np.int64),
                     class_names, tuple(mean.tolist()), tuple(std.tolist()))


# -- augmentation and the model ------------------------------------------------------------------------
def augmentation(name: str, image_size: int, *, seed: int | None = None) -> Augment | None:
    """A named augmentation pipeline for normalized images (``None`` for "none").

    - "digits": per image, one affine resampling with a rotation of up to ±9°, a zoom of up to
      ±10% and a shift of up to ±10% of the size; borders repeat the edge pixels (the background
      of a digit). No flips: a mirrored digit is another symbol.
    - "cifar": the ResNet paper's CIFAR-10 augmentation: pad 4 pixels (zeros, i.e. the mean colour
      after normalization), crop ``image_size`` at random, flip left-right with probability 1/2.

    Args:
        name: one of :data:`AUGMENTATIONS`.
        image_size: height (= width) of the images.
        seed: seeds the pipeline's own generator (``None``: torch's global generator).
    """
    if name == "none":
        return None
    if name == "digits":
        transforms = (RandomRotation(0.025, fill_mode="nearest"), RandomZoom(0.1, fill_mode="nearest"),
                      RandomTranslation(0.1, 0.1, fill_mode="nearest"))
    elif name == "cifar":
        transforms = (RandomCrop(image_size, padding=image_size // 8), RandomFlip("horizontal"))
    else:
        raise ValueError(f"Expected augment to be one of {', '.join(AUGMENTATIONS)}. Received: augment={name!r}")
    return Augment(*transforms, seed=seed)


class Augmented(nn.Module):
    """A network that sees augmented batches while it trains: ``net(augment(x))``.

    The augmentation transforms are random in training mode and the identity in eval mode, so
    wrapping the network is all ``fit`` needs: ``evaluate`` and ``predict`` (eval mode) see the
    images as they are. The network stays reachable as ``.net`` (to save it, or for transfer learning).

    Args:
        augment: an :class:`~deepzen.vision.augment.Augment` pipeline (or any module on ``(N, C, H, W)``).
        net: the classifier.

    Call arguments:
        x: ``(N, C, H, W)`` float images.

    Returns:
        ``net``'s output, e.g. ``(N, num_classes)`` logits.
    """

    def __init__(self, augment: nn.Module, net: nn.Module):
        super().__init__()
        self.augment = augment
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.augment(x))


class AugmentationState(Callback):
    """Keeps a seeded augmentation pipeline's generator state in the fit's checkpoint, so that a resumed fit
    augments its next epochs as the uninterrupted fit would have (the generator is not a weight of the model).

    Args:
        pipeline: the :class:`~deepzen.vision.augment.Augment` the model's forward draws from.
    """

    def __init__(self, pipeline: Augment):
        self.pipeline = pipeline

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.pipeline.generator(self.model.device).get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.pipeline.generator(self.model.device).set_state(state["generator"])


def image_classifier(name: str, data: ImageData, *, augment: str = "none", seed: int | None = None,
                     **model_kwargs: Any):
    """A zoo model sized for ``data`` (classes, channels), wrapped in a :class:`deepzen.models.Model`.

    Args:
        name: a model of :func:`deepzen.vision.models.list`, e.g. "lenet5" or "resnet20".
        data: the dataset the model is for.
        augment: a name of :func:`augmentation`; anything but "none" wraps the network in
            :class:`Augmented`.
        seed: seeds the augmentation pipeline.
        **model_kwargs: architecture options passed to ``models.create``.

    Returns:
        ``Model(net)`` or ``Model(Augmented(augment, net))``; :func:`network` returns ``net``.
    """
    from deepzen.models import Model
    from deepzen.vision import models

    channels, height, width = data.input_shape
    net = models.create(name, num_classes=data.num_classes, in_channels=channels, **model_kwargs)
    pipeline = augmentation(augment, height, seed=seed)
    return Model(net if pipeline is None else Augmented(pipeline, net), name=name)


def network(model: nn.Module) -> nn.Module:
    """The classifier inside a model built by :func:`image_classifier` (unwrapping Model and Augmented)."""
    module = model.module if getattr(model, "module", None) is not None else model
    return module.net if isinstance(module, Augmented) else module


def classification_loss(label_smoothing: float = 0.0):
    """Cross-entropy on logits with integer class ids (the loss every recipe here compiles with)."""
    from deepzen import losses

    return losses.get("sparse_categorical_crossentropy", from_logits=True, label_smoothing=label_smoothing)


# -- learning-rate schedules (for deepzen.callbacks.LearningRateScheduler) ---------------------------
def cosine_schedule(learning_rate: float, epochs: int, warmup_epochs: int = 0,
                    final_fraction: float = 0.0) -> Callable[[int, float], float]:
    """``schedule(epoch, lr)``: linear warm-up, then a cosine decay to ``final_fraction * learning_rate``.

    Epoch ``e < warmup_epochs`` gets ``learning_rate * (e + 1) / (warmup_epochs + 1)``; the others
    ``final + (learning_rate - final) * (1 + cos(pi * t)) / 2`` with ``t`` going from 0 at the first
    epoch after warm-up to 1 at the epoch after the last (so the last epoch still learns).
    """
    if epochs < 1 or not 0 <= warmup_epochs < epochs:
        raise ValueError(f"Expected epochs >= 1 and 0 <= warmup_epochs < epochs. Received: epochs={epochs}, "
                         f"warmup_epochs={warmup_epochs}")
    # Keras's CosineDecay with warmup, by epoch: a warmup from learning_rate / (warmup_epochs + 1) reaches
    # learning_rate * (e + 1) / (warmup_epochs + 1) at epoch e; then the cosine over the remaining epochs.
    decay = schedules.CosineDecay(learning_rate / (warmup_epochs + 1), decay_steps=epochs - warmup_epochs,
                                  alpha=final_fraction, warmup_target=learning_rate, warmup_steps=warmup_epochs)
    return lambda epoch, lr: decay(epoch)


def step_schedule(learning_rate: float, milestones: Sequence[int], gamma: float = 0.1) -> Callable[[int, float], float]:
    """``schedule(epoch, lr)``: ``learning_rate * gamma ** (number of milestones <= epoch)``.

    He et al. (2016) train the CIFAR ResNets at 0.1, divided by 10 at 32k and 48k iterations
    (epochs 82 and 123 at batch 128 on 50,000 images).
    """
    milestones = sorted(int(m) for m in milestones)
    return lambda epoch, lr: learning_rate * gamma ** sum(epoch >= m for m in milestones)


def fit_classifier(model, data: ImageData, optimizer: Any, *, epochs: int, batch_size: int,
                   schedule: Callable[[int, float], float] | None = None, label_smoothing: float = 0.0,
                   verbose: int = 2, callbacks: Sequence[Any] = ()):
    """Compiles ``model`` for classification (cross-entropy on logits, accuracy) and trains it on
    ``data.x_train``; ``schedule(epoch, lr)`` sets the learning rate at each epoch start.

    Returns:
        The :class:`~deepzen.callbacks.History`.
    """
    from deepzen.callbacks import LearningRateScheduler

    model.compile(optimizer=optimizer, loss=classification_loss(label_smoothing), metrics=["accuracy"])
    callbacks = [*callbacks, *([LearningRateScheduler(schedule)] if schedule is not None else [])]
    module = getattr(model, "module", None)
    # Under torchrun each process augments from seed + rank; one saved state would make them all draw alike.
    if isinstance(module, Augmented) and module.augment.seed is not None and not distributed.active():
        callbacks.append(AugmentationState(module.augment))
    return model.fit(data.x_train, data.y_train, batch_size=batch_size, epochs=epochs, verbose=verbose,
                     callbacks=callbacks)


# -- evaluation and report ------------------------------------------------------------------------------
def predict_classes(model: nn.Module, x: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(predicted class ids (N,), probabilities (N, C))`` of a classifier on logits, in eval mode."""
    from deepzen.models import Model

    model = model if isinstance(model, Model) else Model(model)
    logits = torch.as_tensor(model.predict(x, batch_size=batch_size))
    probabilities = torch.softmax(logits.float(), dim=-1)  # (N, C)
    return probabilities.argmax(-1).numpy(), probabilities.numpy()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """The fraction of ``x`` whose predicted (argmax) class is ``y``."""
    return float((predict_classes(model, x, batch_size)[0] == np.asarray(y)).mean())


def confusion_matrix(y_true: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """``(C, C)`` int64 counts, rows = true class, columns = predicted (argmax) class; sklearn's layout.

    Args:
        y_true: ``(N,)`` class ids.
        probabilities: ``(N, C)`` scores (probabilities or logits).
    """
    from deepzen.metrics import ConfusionMatrix

    metric = ConfusionMatrix(num_classes=np.shape(probabilities)[-1])
    metric.update_state(torch.as_tensor(y_true), torch.as_tensor(probabilities))
    return metric.result().numpy()


def write_report(model: nn.Module, data: ImageData, history: Any, run_dir: PathLike, *, title: str,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluates on the test set and writes what a user looks at after training, into ``run_dir``.

    Files: ``model.dz`` (the network, without the augmentation wrapper; inputs normalized with
    ``preprocessing.json``), ``training_curves.png``, ``confusion_matrix.png``,
    ``misclassified.png`` and ``feature_maps.png`` (the first convolution, for the first test image).

    Returns:
        Metrics: ``test_accuracy``, ``test_error``, ``train_samples``, ``test_samples``,
        ``parameters`` and the last epoch's training loss/accuracy, plus ``extra``.
    """
    from deepzen.models import Model
    from deepzen.training.plots import plot_history
    from deepzen.vision import plots

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    net = network(model)
    predicted, probabilities = predict_classes(net, data.x_test)
    accuracy = float((predicted == data.y_test).mean())
    matrix = confusion_matrix(data.y_test, probabilities)
    saved = Model(net, name=title)
    saved.build_for(torch.as_tensor(data.x_test[:2], device=next(net.parameters()).device))  # the file records the input
    saved.save(run_dir / "model.dz")
    (run_dir / "preprocessing.json").write_text(json.dumps(
        {"input_shape": list(data.input_shape), "scale": 1 / 255, "mean": data.mean, "std": data.std,
         "class_names": list(data.class_names)}, indent=2) + "\n")
    if history is not None and getattr(history, "history", None):
        plot_history(history, run_dir / "training_curves.png", title=title)
    plots.plot_confusion_matrix(matrix, run_dir / "confusion_matrix.png", class_names=data.class_names,
                                title=f"{title}: test accuracy {accuracy:.2%}")
    wrong = np.flatnonzero(predicted != data.y_test)[:36]  # the first 36 mistakes
    if len(wrong):
        plots.plot_misclassified(data.unnormalize(data.x_test[wrong]), data.y_test[wrong], predicted[wrong],
                                 run_dir / "misclassified.png", class_names=data.class_names,
                                 confidences=probabilities[wrong, predicted[wrong]], value_range=(0.0, 1.0))
    plots.plot_feature_maps(net, data.x_test[:1], run_dir / "feature_maps.png")
    last = {key: values[-1] for key, values in getattr(history, "history", {}).items() if values}
    return {"test_accuracy": accuracy, "test_error": 1.0 - accuracy, "train_samples": len(data.x_train),
            "test_samples": len(data.x_test), "parameters": sum(p.numel() for p in net.parameters()),
            **{f"final_{key}": value for key, value in last.items()}, **(extra or {})}


# -- a run's image preprocessing (what predict, serve and interpret apply to pixels in [0, 1]) -----------------
@dataclass
class RunImages:
    """How a run's image classifier sees images: input shape, normalization and class names.

    Attributes:
        input_shape: ``(C, H, W)`` of one image, or ``None`` when the run does not say.
        mean, std: per-channel normalization (from ``preprocessing.json``; 0 and 1 when the run has none).
        class_names: names of the class ids, or ``None``.
    """

    input_shape: tuple[int, ...] | None
    mean: np.ndarray
    std: np.ndarray
    class_names: tuple[str, ...] | None

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        """``(N, C, H, W)`` pixel values in [0, 1] -> what the model takes."""
        return ((np.asarray(pixels, dtype=np.float32) - self.mean) / self.std).astype(np.float32)

    def show(self, prepared: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`prepare`, for drawing."""
        return np.asarray(prepared) * self.std + self.mean


def run_images(run_dir: str | Path, model: nn.Module | None = None) -> RunImages:
    """The image preprocessing of a run: its ``preprocessing.json`` (written by the image-classification
    recipes' report), else identity normalization and the model's input shape."""
    path = Path(run_dir) / "preprocessing.json"
    if path.is_file():
        saved = read_json(path, "the image preprocessing")
        try:
            shape = tuple(int(s) for s in saved["input_shape"])
            mean = np.asarray(saved["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
            std = np.asarray(saved["std"], dtype=np.float32).reshape(1, -1, 1, 1)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: expected input_shape, mean and std. Received: {saved!r}") from error
        names = saved.get("class_names")
        return RunImages(shape, mean, std, tuple(str(n) for n in names) if names else None)
    spec = getattr(model, "input_spec", None)
    shape = tuple(spec.shape) if spec is not None and hasattr(spec, "shape") else None
    return RunImages(shape, np.zeros((1, 1, 1, 1), np.float32), np.ones((1, 1, 1, 1), np.float32), None)
