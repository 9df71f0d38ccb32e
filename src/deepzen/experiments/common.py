"""What the experiments share: their data, the small networks they compare, and how they train
and measure them.

Data is MNIST from ``$DEEPZEN_DATA/mnist`` (the embedded 8x8 digits of scikit-learn when those
files are missing), as normalized float images ``(N, 1, H, W)``, so one loader serves the MLPs
(which flatten) and the CNNs. Every variant of an experiment is trained by :func:`train`, which
seeds first: two variants start from the same random state, and a rerun with the same seed
measures the same numbers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from deepzen.optimizers import schedules
from deepzen.training.callbacks import Callback

DATASETS = ("auto", "mnist", "digits")


# -- data ----------------------------------------------------------------------------------------------
@dataclass
class ExperimentData:
    """A normalized train / (validation) / test split of digit images.

    Attributes:
        x_train, x_valid, x_test: float32 ``(N, 1, H, W)``, pixels ``(x - mean) / std`` with the
            training images' statistics; ``x_valid`` is empty unless validation images were asked for.
        y_train, y_valid, y_test: int64 ``(N,)`` digit labels.
        name: "MNIST" or "digits".
        note: why this dataset was used when it was not the one asked for ("" otherwise).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    note: str = ""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def majority_accuracy(self) -> float:
        """Test accuracy of always answering the training set's most frequent class (the chance level)."""
        return float((self.y_test == np.bincount(self.y_train).argmax()).mean())

    def describe(self) -> str:
        height, width = self.input_shape[1:]
        valid = f" / {len(self.y_valid):,} validation" if len(self.y_valid) else ""
        return (f"{self.name} ({height}x{width}): {len(self.y_train):,} training{valid} / {len(self.y_test):,} "
                f"test images")


def load_data(dataset: str = "auto", *, train_samples: int | None = None, validation_samples: int = 0,
              test_samples: int | None = None, seed: int = 0) -> ExperimentData:
    """Reads the digits an experiment trains on, optionally a random subset, normalized.

    Args:
        dataset: "mnist", "digits" (scikit-learn's embedded 8x8 set) or "auto" (MNIST when its
            files are in ``$DEEPZEN_DATA/mnist``, else digits, with the subset sizes reduced to
            what its 1,438 training images allow).
        train_samples: training images to keep (drawn at random; default all).
        validation_samples: images drawn from the remaining training images as a validation set.
        test_samples: test images to keep (default all).
        seed: seeds the draws.

    Returns:
        An :class:`ExperimentData`.
    """
    from deepzen.data.paths import DatasetNotFoundError

    if dataset not in DATASETS:
        raise ValueError(f"Expected dataset to be one of {', '.join(DATASETS)}. Received: dataset={dataset!r}")
    if dataset in ("auto", "mnist"):
        try:
            return _mnist(train_samples, validation_samples, test_samples, seed)
        except DatasetNotFoundError as error:
            if dataset == "mnist":
                raise
            note = f"MNIST was not found ({str(error).splitlines()[0]}); the embedded 8x8 digits were used instead."
            return _digits(train_samples, validation_samples, test_samples, seed, note, fit=True)
    return _digits(train_samples, validation_samples, test_samples, seed, "", fit=False)


def _mnist(train_samples, validation_samples, test_samples, seed) -> ExperimentData:
    from deepzen.data.images import load_mnist

    x_train, y_train, x_test, y_test = load_mnist()
    return _split(x_train[:, None] / np.float32(255), y_train, x_test[:, None] / np.float32(255), y_test,
                  train_samples, validation_samples, test_samples, seed, "MNIST", "")


def _digits(train_samples, validation_samples, test_samples, seed, note, fit: bool) -> ExperimentData:
    """The embedded digits; with ``fit``, subset sizes meant for MNIST shrink to what the set holds
    (a quarter of the training images at most for validation)."""
    from deepzen.data.images import load_digits_split

    x_train, y_train, x_test, y_test = load_digits_split(seed=seed)  # pixels in [0, 1]
    available = len(y_train)
    if fit and (train_samples or 0) + validation_samples > available:
        validation_samples = min(validation_samples, available // 4)
        train_samples = min(train_samples or available, available - validation_samples)
        note += f" The subsets were reduced to fit its {available:,} training images."
    return _split(x_train, y_train, x_test, y_test, train_samples, validation_samples, test_samples, seed,
                  "digits", note)


def _split(x_train, y_train, x_test, y_test, train_samples, validation_samples, test_samples, seed, name,
           note) -> ExperimentData:
    """Random subsets (train, validation from the rest of train, test), normalized with the training
    images' mean and standard deviation. Pixels arrive as float in [0, 1]."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y_train))
    wanted = len(y_train) - validation_samples if train_samples is None else train_samples
    if wanted < 1 or wanted + validation_samples > len(y_train):
        raise ValueError(f"Expected train_samples + validation_samples <= {len(y_train)} ({name} training images) "
                         f"and train_samples >= 1. Received: train_samples={train_samples}, "
                         f"validation_samples={validation_samples}")
    train, valid = np.sort(order[:wanted]), np.sort(order[wanted:wanted + validation_samples])
    test = np.arange(len(y_test)) if test_samples is None else np.sort(rng.permutation(len(y_test))[:test_samples])
    mean, std = float(x_train[train].mean()), float(x_train[train].std())
    normalize = lambda x: ((x - np.float32(mean)) / np.float32(std)).astype(np.float32)  # noqa: E731
    return ExperimentData(normalize(x_train[train]), y_train[train].astype(np.int64),
                          normalize(x_train[valid]), y_train[valid].astype(np.int64),
                          normalize(x_test[test]), y_test[test].astype(np.int64), name, note)


def check_variants(variants: Sequence[str], valid: Sequence[str]) -> None:
    """Raises a ValueError naming the valid variants when ``variants`` has another."""
    unknown = [name for name in variants if name not in valid]
    if unknown:
        raise ValueError(f"Expected variants among {', '.join(valid)}. Received: {', '.join(unknown)}")


# -- networks ------------------------------------------------------------------------------------------
def mlp(data: ExperimentData, *, depth: int, width: int, activation: str = "relu",
        initializer: str = "glorot_uniform", dropout: float = 0.0, regularizer: Any = None):
    """A multilayer perceptron on flattened images: ``depth`` Dense layers (``depth - 1`` hidden ones
    of ``width`` units, then the output layer), logits out.

    Args:
        data: the data it is for (input shape, classes).
        depth: number of Dense layers, >= 2.
        width: units of each hidden layer.
        activation: hidden-layer activation name.
        initializer: kernel initializer name of every layer (biases start at zero).
        dropout: dropout rate after each hidden layer (0: none).
        regularizer: kernel regularizer of every layer (name or object).

    Returns:
        A :class:`deepzen.models.Sequential` mapping ``(N, C, H, W)`` to ``(N, classes)`` logits.
    """
    from deepzen.layers import Dense, Dropout, Flatten
    from deepzen.models import Sequential

    if depth < 2:
        raise ValueError(f"Expected depth >= 2 (a hidden layer and the output layer). Received: depth={depth}")
    layers = [Flatten(input_shape=data.input_shape)]
    for _ in range(depth - 1):
        layers.append(Dense(width, activation=activation, kernel_initializer=initializer,
                            kernel_regularizer=regularizer))
        if dropout:
            layers.append(Dropout(dropout))
    layers.append(Dense(data.num_classes, kernel_initializer=initializer, kernel_regularizer=regularizer))
    return Sequential(layers)


def cnn(data: ExperimentData, *, widths: Sequence[int], batchnorm: bool = False):
    """A small convolutional network: per width, a 3x3 convolution ("same", He-normal weights), batch normalization
    (optional; the convolution then has no bias), ReLU and 2x2 max pooling; then a Dense layer on
    the flattened maps. The normalization's moving statistics use momentum 0.9 (PyTorch's 0.1),
    which follows the batches closer than Keras's 0.99 in runs of a few hundred steps.

    Args:
        data: the data it is for.
        widths: filters of each convolution, e.g. ``(16, 32, 64)``.
        batchnorm: put ``BatchNormalization`` between each convolution and its ReLU.

    Returns:
        A :class:`deepzen.models.Sequential` mapping ``(N, C, H, W)`` to ``(N, classes)`` logits;
        H and W are halved per width (rounded down), so 28x28 images allow up to 4 widths.
    """
    from deepzen.layers import Activation, BatchNormalization, Conv2D, Dense, Flatten, MaxPooling2D
    from deepzen.models import Sequential

    size = min(data.input_shape[1:])
    if not widths or size >> len(widths) < 1:
        raise ValueError(f"Expected 1 to {size.bit_length() - 1} widths for {size}x{size} images (each pools by 2). "
                         f"Received: widths={tuple(widths)}")
    layers = []
    for index, width in enumerate(widths):
        shape = {"input_shape": data.input_shape} if index == 0 else {}
        layers.append(Conv2D(width, 3, padding="same", use_bias=not batchnorm, kernel_initializer="he_normal",
                             **shape))
        if batchnorm:
            layers.append(BatchNormalization(momentum=0.9))
        layers += [Activation("relu"), MaxPooling2D(2)]
    layers += [Flatten(), Dense(data.num_classes)]
    return Sequential(layers)


def with_augmentation(net, pipeline):
    """``net`` behind a batched augmentation that runs in training only (``Augmented``), with the ``fit`` verbs.

    Args:
        net: a model mapping ``(N, C, H, W)`` images to logits.
        pipeline: a :class:`~deepzen.vision.augment.Augment` (or any module mapping a batch to a batch).
    """
    from deepzen.models import Model
    from deepzen.vision.tasks import Augmented

    return Model(Augmented(pipeline, net))


def dense_layers(model: torch.nn.Module) -> list:
    """The Dense layers of a model, input to output."""
    from deepzen.layers import Dense

    return [module for module in model.modules() if isinstance(module, Dense)]


# -- training ------------------------------------------------------------------------------------------
class StepRecorder(Callback):
    """Records every training step's loss and the time spent training up to it.

    Times exclude what happens between epochs (validation). Wall time is what a user waits; the
    process's CPU time is what the steps cost, and stays comparable when other programs share the
    machine. The step losses stay on the device during the epoch and are read once at its end
    (``flush``).

    Attributes:
        losses: one mini-batch loss per step, over all epochs.
        seconds: cumulative wall-clock training seconds at the end of each step.
        cpu_seconds: cumulative CPU seconds of the process (all its threads) at the end of each step.
        epoch_ends: number of steps done at the end of each epoch.
    """

    def __init__(self):
        self.losses: list[float] = []
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self.epoch_ends: list[int] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.last, self.last_cpu = time.perf_counter(), time.process_time()
        self.epoch_steps = 0

    def on_train_batch_end(self, step, logs=None):
        now, now_cpu = time.perf_counter(), time.process_time()
        self.seconds.append((self.seconds[-1] if self.seconds else 0.0) + now - self.last)
        self.cpu_seconds.append((self.cpu_seconds[-1] if self.cpu_seconds else 0.0) + now_cpu - self.last_cpu)
        self.last, self.last_cpu = now, now_cpu
        self.epoch_steps += 1

    def on_epoch_end(self, epoch, logs=None):
        self.flush()
        self.epoch_ends.append(len(self.losses))

    def flush(self) -> None:
        """Reads the current epoch's step losses (host sync); also called after a diverged epoch."""
        if self.epoch_steps:
            losses = self.model.engine.epoch_progress(self.epoch_steps).losses
            self.losses.extend(losses.cpu().tolist())  # host sync: once per epoch
            self.epoch_steps = 0


class CosineDecay(Callback):
    """Lowers the learning rate at every step along a half cosine, from its compiled value to 0 at
    the end of training, so the final weights are not the noisy ones of a large step size.

    ``lr(t) = lr0 * (1 + cos(pi * t / T)) / 2`` at step t of T (all epochs together).
    """

    def on_train_begin(self, logs=None):
        from deepzen.training.callbacks import get_learning_rate

        total = max(1, self.model.fit_state.epochs * self.model.fit_state.steps)
        self.schedule = schedules.CosineDecay(get_learning_rate(self.model.optimizer), decay_steps=total)
        self.done = 0

    def on_train_batch_begin(self, step, logs=None):
        from deepzen.training.callbacks import set_learning_rate

        set_learning_rate(self.model.optimizer, self.schedule(self.done))
        self.done += 1


@dataclass
class Trained:
    """What :func:`train` measured.

    Attributes:
        model: the trained model.
        history: per-epoch logs (``loss``, ``accuracy``, ``val_*`` when validation data was given).
        steps: the per-step recorder.
        diverged_at: the first step (1-based) whose loss was not finite, or None.
        seconds: wall time spent in training steps (building, setup and validation excluded).
        cpu_share: CPU time the process used during ``fit`` / (wall time x torch threads); well
            below 1 means the machine was busy and wall times are inflated.
    """

    model: Any
    history: dict[str, list[float]]
    steps: StepRecorder
    diverged_at: int | None
    seconds: float
    cpu_share: float


def train(build, data: ExperimentData, *, optimizer: Any, epochs: int, batch_size: int, seed: int,
          validation: tuple[np.ndarray, np.ndarray] | None = None, callbacks: Sequence[Callback] = ()) -> Trained:
    """Seeds, builds a model with ``build()``, and trains it for classification (cross-entropy on
    logits) on ``data.x_train``. A run whose loss becomes NaN or infinite stops there and is
    reported as diverged instead of raising.

    Args:
        build: a function returning the model (a ``deepzen.models.Model``); called after seeding, so
            the initial weights depend on ``seed`` only.
        data: the data.
        optimizer: an optimizer name or spec.
        epochs, batch_size: as for ``fit``.
        seed: seeds weights, shuffling and dropout.
        validation: ``(x, y)`` evaluated after each epoch (``val_loss``, ``val_accuracy``).
        callbacks: more callbacks.
    """
    from deepzen import seed as seed_everything
    from deepzen.training.engine import NonFiniteLossError
    from deepzen.vision.tasks import classification_loss

    seed_everything(seed)
    model = build()
    recorder = StepRecorder()
    model.compile(optimizer=optimizer, loss=classification_loss(), metrics=["accuracy"])
    diverged_at = None
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        model.fit(data.x_train, data.y_train, batch_size=batch_size, epochs=epochs, verbose=0,
                  validation_data=validation, callbacks=[recorder, *callbacks])
    except NonFiniteLossError:
        recorder.flush()
        diverged_at = next(step for step, loss in enumerate(recorder.losses, 1) if not math.isfinite(loss))
    cpu_share = (time.process_time() - cpu) / max(time.perf_counter() - wall, 1e-9) / torch.get_num_threads()
    history = model.history.history if model.history is not None else {}
    return Trained(model, history, recorder, diverged_at, recorder.seconds[-1] if recorder.seconds else 0.0,
                   cpu_share)


@torch.no_grad()
def evaluate(model, x: np.ndarray, y: np.ndarray, batch_size: int = 512) -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` of a classifier on logits, in eval mode. A network with
    non-finite weights gets loss NaN and the accuracy of its (arbitrary) predictions."""
    logits = torch.as_tensor(model.predict(x, batch_size=batch_size)).float()  # (N, classes)
    labels = torch.as_tensor(y)
    loss = F.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(-1) == labels).float().mean().item()
    return (loss if math.isfinite(loss) else math.nan), accuracy


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average (the first values average over what exists so far)."""
    values = np.asarray(values, dtype=np.float64)
    if window <= 1 or len(values) == 0:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.maximum(np.arange(1, len(values) + 1) - window, 0)]) / counts


def smoothing_window(data: ExperimentData, batch_size: int) -> int:
    """The moving-average window of the step-loss curves: the steps of a tenth of an epoch (at least 1)."""
    return max(1, -(-len(data.y_train) // batch_size) // 10)


def first_below(values: Sequence[float], target: float) -> int | None:
    """The 1-based index of the first value <= target, or None."""
    hits = np.flatnonzero(np.asarray(values) <= target)
    return int(hits[0]) + 1 if len(hits) else None
