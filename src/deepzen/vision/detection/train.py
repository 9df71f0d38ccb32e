"""Training and evaluating a detector on in-memory images with padded box targets, through ``Model.fit``.

:class:`Detector` is a :class:`~deepzen.models.Model` whose ``train_step`` scales a batch of uint8 images,
augments it with its boxes (:class:`DetectionAugment`), computes :class:`MultiboxLoss`'s class and box
terms and steps the optimizer, so a detector gets fit's progress, callbacks, ``TrainingCheckpoint``
(with the augmentation's generator: exact resume, also inside an epoch) and the run folders of
``deepzen train``. The data stays in tensors (uint8 images, (N, M, 5) targets) and is batched by index
slicing. :func:`fit_detector` trains with AdamW and :class:`WarmupCosine`: a linear warm-up over the
first epoch, then a cosine to zero.

Example:
    >>> model = SSD(num_classes=2, in_channels=1, image_size=(64, 64), width=4, pyramid_channels=8)
    >>> images = torch.zeros(4, 1, 64, 64, dtype=torch.uint8)
    >>> targets = torch.tensor([[[8., 8, 40, 40, 1]]]).repeat(4, 1, 1)
    >>> history = fit_detector(model, images, targets, epochs=1, batch_size=2, verbose=0)
    >>> sorted(history[0])
    ['box_loss', 'class_loss', 'epoch', 'images_per_second', 'learning_rate', 'loss', 'seconds']
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np
import torch

from deepzen.data.arrays import ArrayData
from deepzen.metrics import Mean
from deepzen.optimizers import AdamW
from deepzen.optimizers.schedules import CosineDecay, LearningRateSchedule
from deepzen.serializable import register_serializable
from deepzen.training.callbacks import Callback
from deepzen.training.model import Model
from deepzen.training.serialization import module_config, module_from_config
from deepzen.vision.detection.augment import DetectionAugment
from deepzen.vision.detection.loss import MultiboxLoss
from deepzen.vision.detection.metrics import evaluate_detections
from deepzen.vision.detection.model import SSD

LOG_NAMES = ("loss", "class_loss", "box_loss")
def as_images(images: Any) -> torch.Tensor:
    """uint8 (N, C, H, W) pixels 0..255 (array or tensor) -> the same tensor, checked."""
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()  # torch refuses to share read-only memory (e.g. an array of a PIL image)
    images = torch.as_tensor(images)
    if images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError(f"Expected uint8 images (N, C, H, W). Received: {images.dtype} of shape {tuple(images.shape)}")
    return images


def as_targets(targets: Any, count: int, num_classes: int | None = None) -> torch.Tensor:
    """(N, M, 5) padded ``x1, y1, x2, y2, class`` rows, checked: one row set per image, class -1 = padding,
    other classes in ``[0, num_classes)``, and every real box with ``x2 > x1`` and ``y2 > y1``."""
    targets = torch.as_tensor(targets, dtype=torch.float32)
    if targets.dim() != 3 or targets.shape[-1] != 5 or len(targets) != count:
        raise ValueError(f"Expected targets (N={count}, M, 5): x1, y1, x2, y2, class per row, class -1 for padding. "
                         f"Received: shape {tuple(targets.shape)}")
    classes = targets[..., 4]
    real = classes >= 0
    bad_class = (classes != classes.round()) | (classes < -1)
    if num_classes is not None:
        bad_class |= classes >= num_classes
    degenerate = real & ((targets[..., 2] <= targets[..., 0]) | (targets[..., 3] <= targets[..., 1])
                         | ~torch.isfinite(targets[..., :4]).all(-1))
    for problem, expected in ((bad_class, f"a class id in [0, {num_classes}) or -1 for padding"),
                              (degenerate, "x2 > x1 and y2 > y1 (finite)")):
        if problem.any():
            image, row = (int(v) for v in problem.nonzero()[0])
            raise ValueError(f"targets[{image}, {row}] = {targets[image, row].tolist()}: expected {expected}")
    return targets


class WarmupCosine(LearningRateSchedule):
    """:class:`~deepzen.optimizers.schedules.CosineDecay` with its warm-up counted from the first update.

    Update ``k`` (0-based) of ``total_steps`` takes ``learning_rate * (k + 1) / warmup_steps`` while
    ``k < warmup_steps`` (the last warm-up update takes the full rate), then
    ``learning_rate * (1 + cos(pi * (k - warmup_steps) / (total_steps - warmup_steps))) / 2``: CosineDecay
    from 0 with ``warmup_target=learning_rate``, read one step ahead during the warm-up. The detection
    benchmarks were measured with this schedule (the first update does not waste a zero rate).
    """

    def __init__(self, learning_rate: float, warmup_steps: int, total_steps: int):
        if not (isinstance(warmup_steps, int) and isinstance(total_steps, int) and 1 <= warmup_steps <= total_steps):
            raise ValueError(f"WarmupCosine expects integers 1 <= warmup_steps <= total_steps. "
                             f"Received: warmup_steps={warmup_steps!r}, total_steps={total_steps!r}")
        self.learning_rate, self.warmup_steps, self.total_steps = float(learning_rate), warmup_steps, total_steps
        self.cosine = CosineDecay(0.0, decay_steps=max(1, total_steps - warmup_steps), warmup_target=learning_rate,
                                  warmup_steps=warmup_steps)

    def __call__(self, step: int) -> float:
        return self.cosine(step + 1 if step < self.warmup_steps else step)

    def get_config(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps}


@register_serializable
class Detector(Model):
    """A detection network trained by ``fit(images, targets)``: augmentation, multibox loss, one optimizer.

    Args:
        network: the detector (an :class:`SSD`): (N, C, H, W) images in [0, 1] -> (N, A, 4 + 1 + K).
        augment: applied to every training batch (None: no augmentation).
        loss: the loss (default :class:`MultiboxLoss` on the network's anchors).
        order_seed: when set, epoch ``e`` visits the images in the order of the ``e + 1``-th
            ``torch.randperm`` of a generator seeded with it (the order the detection benchmarks were
            measured with); None: fit's own shuffle.
        name: a display name.

    ``fit(x, y)`` takes uint8 (N, C, H, W) images (kept uint8 on the device, scaled batch by batch) and
    (N, M, 5) padded targets ``x1, y1, x2, y2, class`` (class -1: padding). Its logs are the epoch means of
    ``loss``, ``class_loss`` and ``box_loss`` (weighted by batch size) and the ``learning_rate`` of the
    epoch's last update. Calling the model, ``detector(x)``, is ``network(x)`` (uint8 pixels are scaled).
    """

    def __init__(self, network: SSD, *, augment: DetectionAugment | None = None, loss: MultiboxLoss | None = None,
                 order_seed: int | None = None, name: str | None = None):
        super().__init__(name=name)
        if not isinstance(network, SSD):
            raise TypeError(f"Detector expects network to be an SSD. Received: {type(network).__name__}")
        self.network, self.augment = network, augment
        self.loss = loss if loss is not None else MultiboxLoss(network.anchors)
        self.order_seed = order_seed
        self.trackers = [Mean(name) for name in LOG_NAMES]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x.float() / 255 if x.dtype == torch.uint8 else x)  # (N, A, 4 + 1 + K)

    @property
    def num_classes(self) -> int:
        return self.network.num_classes

    @property
    def metrics(self) -> list[Mean]:
        """The epoch means of the step's losses (fit resets them at each epoch's start)."""
        return self.trackers

    def compile(self, optimizer: Any = "adamw", device: Any = None, **kwargs: Any) -> None:
        """``Model.compile`` without a loss (the step computes :class:`MultiboxLoss`'s terms), in float32 and
        channels-first (the layout the detection benchmarks were measured in)."""
        super().compile(optimizer=optimizer, loss=None, device=device, memory_format="channels_first", **kwargs)

    # -- the step ------------------------------------------------------------------------------------
    def _losses(self, data: Any, augment: bool) -> tuple[torch.Tensor, torch.Tensor, int]:
        images, targets = data[0], data[1]
        batch = images.float() / 255 if images.dtype == torch.uint8 else images  # (N, C, H, W) in [0, 1]
        if augment and self.augment is not None:
            batch, targets = self.augment(batch, targets)
        class_loss, box_loss = self.loss.terms(targets, self.network(batch))
        return class_loss, box_loss, len(batch)

    def _track(self, class_loss: torch.Tensor, box_loss: torch.Tensor, count: int) -> dict[str, Any]:
        values = (class_loss + box_loss, class_loss, box_loss)
        for tracker, value in zip(self.trackers, values):
            tracker.update_state(value.detach(), sample_weight=value.new_tensor(float(count)))
        return {tracker.name: tracker.result() for tracker in self.trackers}  # device tensors: no host sync

    def train_step(self, data: Any) -> dict[str, Any]:
        """One update on ``(images, targets)``: augment, class + box loss, optimizer step."""
        class_loss, box_loss, count = self._losses(data, augment=True)
        self.optimizer.zero_grad(set_to_none=True)
        (class_loss + box_loss).backward()
        self.optimizer.step()
        return {**self._track(class_loss, box_loss, count), "learning_rate": self.optimizer.param_groups[0]["lr"]}

    def test_step(self, data: Any) -> dict[str, Any]:
        """The losses on ``(images, targets)``, unaugmented."""
        with torch.no_grad():
            return self._track(*self._losses(data, augment=False))

    # -- data ----------------------------------------------------------------------------------------
    def _as_data(self, x: Any, y: Any = None, sample_weight: Any = None, call: str = "fit") -> Any:
        """Images and targets checked once (:func:`as_images`, :func:`as_targets`); the images stay uint8."""
        if call not in ("fit", "fit(validation_data=...)", "evaluate", "train_on_batch", "test_on_batch"):
            return super()._as_data(x, y, sample_weight, call)
        if sample_weight is not None:
            raise ValueError(f"Detector.{call} takes no sample_weight: every image counts once")
        images = as_images(x)
        targets = as_targets(y, len(images), self.num_classes)
        return ArrayData(images, targets, device=self.device, keep_input_dtypes=True)

    def _batches(self, data, batch_size: int, shuffle: bool = False, seed: int | None = None):
        if not (shuffle and self.order_seed is not None and isinstance(data, ArrayData)):
            return super()._batches(data, batch_size, shuffle, seed)
        return self._seeded_batches(data, batch_size, self.fit_state.epoch)

    def _seeded_batches(self, data: ArrayData, batch_size: int, epoch: int):
        """Epoch ``epoch``'s batches in :attr:`order_seed`'s order: a function of the epoch alone, so a
        resumed fit draws the same one."""
        generator = torch.Generator().manual_seed(self.order_seed)
        for _ in range(epoch + 1):  # as if one generator had drawn a permutation per epoch since the first
            order = torch.randperm(len(data), generator=generator)
        order = order.to(data.device) if data.device is not None else order
        for first in range(0, len(data), batch_size):
            yield data._take(order[first:first + batch_size])

    def build_for(self, sample: Any) -> None:
        """Nothing to build: the network is built at construction (fit's probe would get uint8 targets)."""
        return None

    # -- config --------------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {"network": module_config(self.network),
                "augment": self.augment.get_config() if self.augment is not None else None,
                "loss": self.loss.get_config(), "order_seed": self.order_seed, "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Detector":
        network = module_from_config(config["network"])
        augment = DetectionAugment(**config["augment"]) if config.get("augment") is not None else None
        return cls(network, augment=augment, loss=MultiboxLoss(network.anchors, **config.get("loss", {})),
                   order_seed=config.get("order_seed"), name=config.get("name"))


class _EpochTimer(Callback):
    """Seconds of each epoch this fit trains (kept out of the logs, which a resumed run must reproduce)."""

    def __init__(self):
        self.seconds: dict[int, float] = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds[epoch] = time.perf_counter() - self.start


def fit_detector(model: SSD, images: Any, targets: Any, *, epochs: int, batch_size: int = 32,
                 learning_rate: float = 2e-3, weight_decay: float = 5e-4, augment: DetectionAugment | None = None,
                 loss: MultiboxLoss | None = None, seed: int = 0, verbose: int = 1,
                 callbacks: list[Callback] | None = None) -> list[dict[str, float]]:
    """Trains ``model`` with ``Detector.fit``: AdamW, a one-epoch warm-up and a cosine decay (:class:`WarmupCosine`).

    Inside ``deepzen train`` the run folder checkpoints every epoch, and ``--resume`` continues exactly.

    Args:
        model: the detector (trained in place).
        images: uint8 (N, C, H, W) training images.
        targets: (N, M, 5) padded boxes and classes.
        epochs: passes over the data.
        batch_size: images per step.
        learning_rate: the peak learning rate.
        weight_decay: AdamW's decoupled weight decay.
        augment: applied to every batch (None: no augmentation).
        loss: the loss (default :class:`MultiboxLoss` on the model's anchors).
        seed: seeds the order of the batches (:attr:`Detector.order_seed`).
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.
        callbacks: more callbacks for ``fit``.

    Returns:
        One dict of logs per epoch (``epoch``, ``loss``, ``class_loss``, ``box_loss``, ``learning_rate``,
        and for the epochs this call trained ``seconds`` and ``images_per_second``).
    """
    detector = Detector(model, augment=augment, loss=loss, order_seed=seed)
    images = as_images(images)
    steps_per_epoch = math.ceil(len(images) / batch_size)
    schedule = WarmupCosine(learning_rate, steps_per_epoch, max(1, epochs) * steps_per_epoch)
    # torch's for-loop AdamW with its epsilon: the update the detection benchmarks were measured with
    optimizer = AdamW(learning_rate=schedule, weight_decay=weight_decay, epsilon=1e-8).build(
        [p for p in model.parameters() if p.requires_grad], implementation="for_loop")
    detector.compile(optimizer=optimizer, device=next(model.parameters()).device)
    timer = _EpochTimer()
    history = detector.fit(images, targets, batch_size=batch_size, epochs=epochs, verbose=verbose,
                           callbacks=[*(callbacks or []), timer])
    logs = []
    for index, epoch in enumerate(history.epoch):
        entry = {"epoch": epoch + 1, **{key: values[index] for key, values in history.history.items()}}
        if epoch in timer.seconds:
            entry.update(seconds=timer.seconds[epoch], images_per_second=len(images) / timer.seconds[epoch])
        logs.append(entry)
    return logs


def detect_images(model: SSD, images: Any, *, batch_size: int = 64, **options) -> list[dict[str, np.ndarray]]:
    """:meth:`SSD.detect` over uint8 (N, C, H, W) images in batches; NumPy boxes, scores and labels."""
    images = as_images(images)
    found = []
    for first in range(0, len(images), batch_size):
        for result in model.detect(images[first:first + batch_size].float() / 255, **options):
            found.append({key: value.cpu().numpy() for key, value in result.items()})
    return found


def ground_truth(targets: Any) -> list[dict[str, np.ndarray]]:
    """(N, M, 5) padded targets -> one ``{"boxes", "labels"}`` dict per image (padding rows dropped)."""
    targets = np.asarray(targets, dtype=np.float64)
    return [{"boxes": rows[rows[:, 4] >= 0, :4], "labels": rows[rows[:, 4] >= 0, 4].astype(np.int64)}
            for rows in targets]


def evaluate_detector(model: SSD, images: Any, targets: Any, class_names: Sequence[str] | None = None,
                      **options) -> dict[str, Any]:
    """COCO mAP@[.5:.95], mAP@0.5 and mAP@0.75 of ``model`` on ``images`` (see :mod:`.metrics`)."""
    found = detect_images(model, images, score_threshold=options.pop("score_threshold", 0.01), **options)
    return evaluate_detections(ground_truth(targets), found, model.num_classes, class_names)
