"""Keras's ``TensorBoard`` callback, written with torch's ``SummaryWriter`` (needs only ``tensorboard``).

Like Keras, it writes the training logs under ``log_dir/train`` and the validation logs under
``log_dir/validation``, with the tags Keras uses (``epoch_loss``, ``epoch_accuracy``,
``epoch_learning_rate``; ``batch_loss`` ... with ``update_freq``), so ``tensorboard --logdir log_dir``
shows the two curves of each metric in one chart. Install the extra: ``pip install deepzen[tensorboard]``.

Images: with ``write_images=True`` it draws the 2-D weight matrices (Keras's meaning of the argument) and
whatever the model shows of itself through ``model.summary_images()`` (a dict of tag -> ``(N, C, H, W)``
images in [0, 1]; the GAN shows a grid of samples from fixed noise). ``confusion_matrix_data=(x, y)``
adds the confusion matrix of a classifier on those samples at each epoch end.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepzen.metrics import ConfusionMatrix
from deepzen.training import distributed
from deepzen.training.callbacks import Callback


def summary_writer_class() -> type:
    """torch's ``SummaryWriter``; an ImportError naming the extra to install when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:  # torch's module imports the tensorboard package
        raise ImportError("The TensorBoard callback needs the tensorboard package: pip install 'deepzen[tensorboard]' "
                          "(or pip install tensorboard)") from error
    return SummaryWriter


class TensorBoard(Callback):
    """Writes scalars, histograms and images for TensorBoard (Keras's callback and argument names).

    Args:
        log_dir: the folder of the event files (``train/`` and ``validation/`` inside).
        histogram_freq: every this many epochs, histograms of the weights (0: none).
        write_grads: with ``histogram_freq``, histograms of the gradients too (Keras 2's argument): those of
            the epoch's last batch, still in ``.grad`` at the epoch's end.
        write_images: draw the 2-D weight matrices and the model's ``summary_images()`` as images.
        update_freq: "epoch" (scalars once per epoch), "batch" or an int N (also the running training logs
            every N batches, as ``batch_<name>``; each write reads them from the device).
        confusion_matrix_data: ``(x, y)`` samples with class ids: the classifier's confusion matrix on them,
            rows normalized, as an image at each epoch end (tag ``confusion_matrix``).
        write_graph, write_steps_per_second, profile_batch, embeddings_freq, embeddings_metadata: Keras's
            other arguments; only their defaults are accepted (a value that would be ignored is refused).
    """

    def __init__(self, log_dir: str | os.PathLike = "logs", histogram_freq: int = 0, write_graph: bool = True,
                 write_images: bool = False, write_steps_per_second: bool = False, update_freq: str | int = "epoch",
                 profile_batch: int = 0, embeddings_freq: int = 0, embeddings_metadata: Any = None,
                 write_grads: bool = False, confusion_matrix_data: tuple | None = None):
        unsupported = {"write_steps_per_second": (write_steps_per_second, False), "profile_batch": (profile_batch, 0),
                       "embeddings_freq": (embeddings_freq, 0), "embeddings_metadata": (embeddings_metadata, None)}
        for name, (value, default) in unsupported.items():
            if value != default:
                raise ValueError(f"TensorBoard does not support {name} in deepzen. Received: {name}={value!r}")
        if not isinstance(histogram_freq, int) or histogram_freq < 0:
            raise ValueError(f"TensorBoard expects histogram_freq to be an int >= 0. Received: {histogram_freq!r}")
        if update_freq not in ("epoch", "batch") and not (isinstance(update_freq, int) and update_freq > 0):
            raise ValueError(f"TensorBoard expects update_freq 'epoch', 'batch' or an int > 0. "
                             f"Received: update_freq={update_freq!r}")
        self.writer_class = summary_writer_class()  # fails now, not at the first epoch, without the package
        self.log_dir = Path(log_dir)
        self.histogram_freq, self.write_images, self.write_grads = histogram_freq, write_images, write_grads
        self.update_freq = 1 if update_freq == "batch" else update_freq
        self.confusion_matrix_data = confusion_matrix_data
        self.writers: dict[str, Any] = {}
        self.batches = 0  # training batches seen in this callback's life: the batch scalars' step
        if self.update_freq != "epoch":  # only then does it listen to the step event
            self.on_train_batch_end = self._write_batch

    def _writer(self, name: str):
        if name not in self.writers:
            self.writers[name] = self.writer_class(str(self.log_dir / name))
        return self.writers[name]

    def _write_batch(self, step, logs=None):
        self.batches += 1
        if self.batches % self.update_freq or not distributed.is_rank_zero():
            return
        for key, value in (logs.read() if hasattr(logs, "read") else dict(logs or {})).items():
            if isinstance(value, (int, float)):
                self._writer("train").add_scalar(f"batch_{key}", value, self.batches)

    def on_epoch_end(self, epoch, logs=None):
        if not distributed.is_rank_zero():
            return
        logs = dict(logs or {})
        train, validation = self._writer("train"), None
        if "learning_rate" not in logs and getattr(self.model, "optimizer", None) is not None:
            logs["learning_rate"] = float(self.model.optimizer.param_groups[0]["lr"])
        for key, value in logs.items():
            if not isinstance(value, (int, float)):
                continue
            if key.startswith("val_"):
                validation = validation or self._writer("validation")
                validation.add_scalar(f"epoch_{key[4:]}", value, epoch)
            else:
                train.add_scalar(f"epoch_{key}", value, epoch)
        if self.histogram_freq and (epoch + 1) % self.histogram_freq == 0:
            self._write_histograms(train, epoch)
        if self.write_images:
            self._write_images(train, epoch)
        if self.confusion_matrix_data is not None:
            train.add_image("confusion_matrix", self._confusion_image(), epoch, dataformats="HW")
        for writer in self.writers.values():
            writer.flush()

    def _write_histograms(self, writer, epoch: int) -> None:
        for name, parameter in self.model.named_parameters():
            writer.add_histogram(name, parameter.detach().float().cpu(), epoch)
            if self.write_grads and parameter.grad is not None:
                writer.add_histogram(f"{name}/gradient", parameter.grad.detach().float().cpu(), epoch)

    def _write_images(self, writer, epoch: int) -> None:
        for name, parameter in self.model.named_parameters():
            if parameter.dim() == 2:  # a dense kernel, scaled to [0, 1] (Keras draws the kernels too)
                weights = parameter.detach().float().cpu()
                low, high = weights.min(), weights.max()
                writer.add_image(name, (weights - low) / (high - low).clamp_min(1e-12), epoch, dataformats="HW")
        show = getattr(self.model, "summary_images", None)
        if callable(show):
            for tag, images in show().items():
                writer.add_images(tag, images.detach().float().clamp(0, 1).cpu(), epoch, dataformats="NCHW")

    def _confusion_image(self) -> np.ndarray:
        """The row-normalized confusion matrix of the model on ``confusion_matrix_data``, 8 pixels per cell."""
        x, y = self.confusion_matrix_data
        counts = ConfusionMatrix()
        counts.update_state(torch.as_tensor(np.asarray(y)), torch.as_tensor(np.asarray(self.model.predict(x))))
        matrix = counts.result().cpu().numpy()
        self.last_confusion_matrix = matrix
        rows = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
        return np.kron(rows, np.ones((8, 8))).astype(np.float32)  # (8C, 8C) in [0, 1]

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.close()
        self.writers = {}
