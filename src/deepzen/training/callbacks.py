"""Callbacks: History, progress output, EarlyStopping, ModelCheckpoint, learning-rate schedules,
CSVLogger, GradientMonitor and WeightAverage.

A callback overrides the events it needs. ``fit`` resolves once which callbacks implement each
event, so an event nobody listens to costs nothing. ``on_train_batch_begin`` receives the step index and
an empty dict (as in Keras); ``on_train_batch_end`` receives the step index and a
:class:`RunningLogs`, a read-only mapping (``logs["loss"]``, ``logs.get("accuracy")``); reading it is a
host sync, so a callback reads it only when it has to. Keras's older names ``on_batch_begin`` and
``on_batch_end`` are aliases of ``on_train_batch_begin`` and ``on_train_batch_end``.

A callback that keeps state across epochs (EarlyStopping, ReduceLROnPlateau, ModelCheckpoint) has
``state_dict()`` / ``load_state_dict(state)``, which resumable training checkpoints save and restore.

Under ``torchrun`` every process runs the callbacks, and they keep the same state everywhere (the
epoch logs are reduced over the processes), but only rank 0 prints and writes files: ProgressBar,
ModelCheckpoint, CSVLogger and the messages of the others are silent on the other ranks. None of
these callbacks runs a collective operation, so skipping them on some ranks cannot hang a run.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from deepzen.optimizers import schedules
from deepzen.serializable import ModelFileError
from deepzen.training import distributed

EVENTS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
          "on_train_batch_end", "on_after_backward", "on_test_begin", "on_test_end", "on_test_batch_begin",
          "on_test_batch_end", "on_predict_begin", "on_predict_end", "on_predict_batch_begin",
          "on_predict_batch_end")
# Keras's older spellings: a callback that overrides only the alias listens to the event under its new name.
ALIASES = {"on_train_batch_begin": "on_batch_begin", "on_train_batch_end": "on_batch_end"}


@dataclass
class FitState:
    """What one ``fit`` call is doing, as ``model.fit_state`` (read by callbacks; written by ``fit`` and by the
    callback that resumes it).

    Attributes:
        epochs: the epoch to train up to (``fit(epochs=)``).
        steps: batches per epoch (None for an iterable of unknown length).
        batch_size: samples per batch.
        initial_epoch: the first epoch to train; a resumed fit starts at the checkpoint's epoch.
        shuffle_seed: the seed of this fit's epoch orders (epoch e shuffles with ``shuffle_seed + e``).
        callbacks: every callback of this fit, in order.
        epoch: the epoch in progress (None before the first).
        resume_progress: the first epoch's progress to continue from, when a checkpoint was saved inside it.
    """

    epochs: int
    steps: int | None
    batch_size: int
    initial_epoch: int
    shuffle_seed: int
    callbacks: list
    epoch: int | None = None
    resume_progress: Any = None


class Callback:
    """Base class. ``self.model`` is set by ``fit`` before ``on_train_begin``."""

    model: Any = None

    def set_model(self, model) -> None:
        self.model = model

    def resume_fit(self, state: FitState) -> None:
        """Restores an interrupted fit into ``state`` (and the model, its optimizers and the other callbacks).

        ``fit`` calls this once, after every callback's ``on_train_begin`` (so restored states are not reset)
        and before the first epoch, on the one callback of the fit that overrides it (a checkpoint). That
        callback runs after the others at every event, so what it saves includes what they did.
        """

    def on_train_begin(self, logs: dict | None = None): ...

    def on_train_end(self, logs: dict | None = None): ...

    def on_epoch_begin(self, epoch: int, logs: dict | None = None): ...

    def on_epoch_end(self, epoch: int, logs: dict | None = None): ...

    def on_train_batch_begin(self, step: int, logs: dict | None = None): ...

    def on_train_batch_end(self, step: int, logs: "RunningLogs" = None): ...

    def on_batch_begin(self, step: int, logs: dict | None = None):
        """Keras's older name of ``on_train_batch_begin`` (called in its place when only this is overridden)."""

    def on_batch_end(self, step: int, logs: "RunningLogs" = None):
        """Keras's older name of ``on_train_batch_end`` (called in its place when only this is overridden)."""

    def on_after_backward(self, step: int):
        """Called after ``loss.backward()`` and before the optimizer step (gradients are populated)."""

    def on_test_begin(self, logs: dict | None = None):
        """Called when ``evaluate`` starts, and before each validation of ``fit``."""

    def on_test_end(self, logs: dict | None = None):
        """Called with the evaluation's logs when ``evaluate`` (or a validation of ``fit``) ends."""

    def on_test_batch_begin(self, step: int, logs: dict | None = None): ...

    def on_test_batch_end(self, step: int, logs: "RunningLogs" = None):
        """``logs``: the running loss and metrics of this evaluation so far (a host sync when read)."""

    def on_predict_begin(self, logs: dict | None = None): ...

    def on_predict_end(self, logs: dict | None = None): ...

    def on_predict_batch_begin(self, step: int, logs: dict | None = None): ...

    def on_predict_batch_end(self, step: int, logs: dict | None = None):
        """``logs["outputs"]``: this batch's outputs (on the model's device)."""


# Providers of callbacks that every fit also runs, asked at the start of each fit: deepzen.runs registers one,
# so that a recipe's fits are recorded and checkpointed in its run folder without training knowing of runs.
_FIT_CALLBACK_PROVIDERS: list[Callable[[], list[Callback]]] = []


def add_fit_callback_provider(provider: Callable[[], list[Callback]]) -> None:
    """Every fit will also run the callbacks ``provider()`` returns when the fit starts (most often none)."""
    if provider not in _FIT_CALLBACK_PROVIDERS:
        _FIT_CALLBACK_PROVIDERS.append(provider)


def provided_fit_callbacks() -> list[Callback]:
    """The callbacks the registered providers add to a fit starting now."""
    return [callback for provider in _FIT_CALLBACK_PROVIDERS for callback in provider()]


class CallbackError(RuntimeError):
    """An exception raised inside a callback, re-raised with the callback and the event named."""


class CallbackList:
    """The callbacks of one ``fit``, ``evaluate`` or ``predict``, with per-event handler tables resolved once."""

    def __init__(self, callbacks: list[Callback], model):
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(f"callbacks must be deepzen Callback instances. Received: {callback!r}")
            callback.set_model(model)
        self.handlers = {event: [handler for handler in (_handler(cb, event) for cb in self.callbacks) if handler]
                         for event in EVENTS}

    def listens(self, event: str) -> bool:
        return bool(self.handlers[event])

    def fire(self, event: str, *args) -> None:
        for handler in self.handlers[event]:
            self.fire_handler(handler, event, *args)

    @staticmethod
    def fire_handler(handler: Callable, event: str, *args) -> None:
        try:
            handler(*args)
        except (CallbackError, KeyboardInterrupt, ModelFileError):  # a damaged file is the file's fault, named as such
            raise
        except Exception as error:
            raise CallbackError(f"{type(handler.__self__).__name__}.{event} failed: "
                                f"{type(error).__name__}: {error}") from error


def _handler(callback: Callback, event: str) -> Callable | None:
    """The method ``callback`` runs on ``event``: its override of the event, else its override of the event's
    Keras alias, else None (it does not listen)."""
    for name in (event, ALIASES.get(event)):
        if name is not None and getattr(getattr(callback, name), "__func__", None) is not getattr(Callback, name):
            return getattr(callback, name)
    return None


class RunningLogs(Mapping):
    """The running training logs of the current epoch (mean loss and metrics so far), read from the device
    on demand. A read-only mapping, as Keras's batch ``logs`` dict: ``logs["loss"]``, ``logs.get(...)``,
    ``list(logs.keys())``, ``dict(logs)``.

    Each access is a host sync (one read of all the values): the engine keeps losses and metric states on
    the device and only a read brings them to the host. A callback that needs several values reads once,
    ``values = logs.read()``.
    """

    def __init__(self, reader: Callable[[int], dict[str, float]]):
        self._reader = reader
        self.step = 0

    def read(self) -> dict[str, float]:
        return self._reader(self.step)  # host sync

    def __getitem__(self, key: str) -> float:
        return self.read()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.read().get(key, default)

    def keys(self):
        return self.read().keys()

    def items(self):
        return self.read().items()

    def values(self):
        return self.read().values()

    def __iter__(self):
        return iter(self.read())

    def __len__(self) -> int:
        return len(self.read())

    def __repr__(self) -> str:
        return f"RunningLogs(step={self.step}, {self.read()})"


class History(Callback):
    """Records the epoch logs: ``history.history["loss"]`` is a list with one value per epoch."""

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def last_logs(self) -> dict[str, float]:
        """The logs of the last recorded epoch ({} before the first)."""
        return {key: values[-1] for key, values in self.history.items() if values}


def format_logs(logs: dict[str, float]) -> str:
    return " - ".join(f"{key}: {value:.4g}" for key, value in logs.items())


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython's ZMQ shell, which Colab's shell extends). IPython is
    only looked at if something already imported it: a plain script never imports it here."""
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython is not None else None
    return shell is not None and any(klass.__name__ == "ZMQInteractiveShell" for klass in type(shell).__mro__)


class ProgressBar(Callback):
    """Keras-style progress: a per-step bar with rate and ETA on a terminal or in a notebook, one line per
    epoch otherwise.

    In a Jupyter notebook the bar is one line that each update rewrites after a carriage return (notebooks
    render it in place but not the terminal's erase-line code, so the line is padded with spaces instead).

    Args:
        verbose: 1 = step bar on a terminal or in a notebook (falls back to per-epoch lines when the output
            is neither), 2 = one line per epoch.
        interval: seconds between bar updates (each update is a host sync).
        stream: where to write (default ``sys.stdout``).

    Under torchrun it writes only on rank 0 (decided when it is created).
    """

    def __init__(self, verbose: int = 1, interval: float = 0.25, stream=None):
        self.stream = stream or sys.stdout
        self.interval = interval
        self.silent = not distributed.is_rank_zero()
        self.notebook = not self.silent and verbose == 1 and in_notebook()
        interactive = (not self.silent and verbose == 1 and (self.notebook or hasattr(self.stream, "isatty")
                                                             and self.stream.isatty()))
        if interactive:  # only a bar listens to the step event
            self.on_train_batch_end = self._update_bar
        self.interactive = interactive
        self.erase = "" if self.notebook else "\x1b[K"  # the terminal's erase-to-end-of-line
        self.last_width = 0

    def _rewrite(self, text: str, end: str = "") -> None:
        """Writes ``text`` over the current line (padded over a longer previous text in a notebook)."""
        padding = " " * max(self.last_width - len(text), 0) if self.notebook else ""
        self.last_width = 0 if end else len(text)
        self.stream.write(f"\r{text}{padding}{self.erase}{end}")

    def on_train_begin(self, logs=None):
        self.epochs = self.model.fit_state.epochs
        self.steps = self.model.fit_state.steps

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = self.last_update = time.monotonic()
        if self.interactive:
            self.stream.write(f"Epoch {epoch + 1}/{self.epochs}\n")

    def _update_bar(self, step, logs=None):
        now = time.monotonic()
        if now - self.last_update < self.interval and step + 1 < self.steps:
            return
        self.last_update = now
        done = step + 1
        rate = done / max(now - self.epoch_start, 1e-9)
        eta = (self.steps - done) / rate if self.steps else 0.0
        width = 24
        filled = int(width * done / max(self.steps, 1))
        bar = "=" * max(filled - 1, 0) + (">" if filled < width else "=") + "." * (width - filled)
        self._rewrite(f"{done}/{self.steps} [{bar}] {rate:.1f} steps/s - ETA {eta:.0f}s - {format_logs(logs.read())}")
        self.stream.flush()

    def on_epoch_end(self, epoch, logs=None):
        if self.silent:
            return
        seconds = time.monotonic() - self.epoch_start
        if self.interactive:
            self._rewrite(f"{self.steps}/{self.steps} - {seconds:.1f}s - {format_logs(logs or {})}", end="\n")
        else:
            self.stream.write(f"Epoch {epoch + 1}/{self.epochs} - {seconds:.1f}s - {format_logs(logs or {})}\n")
        self.stream.flush()


class EarlyStopping(Callback):
    """Stops training when ``monitor`` stops improving for ``patience`` epochs.

    Args:
        monitor: a key of the epoch logs ("val_loss", "val_accuracy", ...).
        min_delta: smallest change that counts as an improvement.
        patience: epochs without improvement before stopping.
        mode: "min", "max" or "auto" (max for accuracy-like names).
        restore_best_weights: load the weights of the best epoch when stopping.
        baseline: a value the monitored quantity must beat before any epoch counts as an improvement.
        verbose: 1 prints a line when training stops (and when the best weights are restored).
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, verbose: int = 0,
                 mode: str = "auto", restore_best_weights: bool = False, baseline: float | None = None):
        self.monitor, self.min_delta, self.patience, self.verbose = monitor, abs(min_delta), patience, verbose
        self.mode = _resolve_mode(mode, monitor)
        self.restore_best_weights, self.baseline = restore_best_weights, baseline
        self._reset()

    def on_train_begin(self, logs=None):
        self._reset()

    def _reset(self) -> None:
        self.wait, self.stopped_epoch, self.best_epoch = 0, None, None
        self.best = self.baseline if self.baseline is not None else (math.inf if self.mode == "min" else -math.inf)
        self.best_weights: dict[str, torch.Tensor] | None = None

    def state_dict(self) -> dict[str, Any]:
        """Epochs waited, the best value and its epoch, the stopping epoch and, with
        ``restore_best_weights``, the best epoch's weights (a model state dict of tensors, or None)."""
        return {"wait": self.wait, "best": self.best, "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.wait, self.best, self.best_epoch = state["wait"], state["best"], state["best_epoch"]
        self.stopped_epoch, self.best_weights = state["stopped_epoch"], state["best_weights"]

    def on_epoch_end(self, epoch, logs=None):
        value = _monitored(logs, self.monitor, type(self).__name__)
        if _improved(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            _say(self.verbose, f"Epoch {epoch + 1}: early stopping")
            if self.best_weights is not None:
                _say(self.verbose, f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
                self.model.load_state_dict(self.best_weights)


class ModelCheckpoint(Callback):
    """Saves the model (safetensors + JSON config) after each epoch or every ``save_freq`` batches, or only
    when ``monitor`` improves.

    Args:
        filepath: may contain ``{epoch}``, ``{batch}`` (with ``save_freq=N``) and log keys, e.g.
            ``"ckpt-{epoch:02d}-{val_loss:.3f}.dz"``.
        monitor: the log key ``save_best_only`` compares.
        verbose: 1 prints a line at each save (and, with ``save_best_only``, at each epoch that did not improve).
        save_best_only: keep only files from improving epochs ("best"); otherwise every epoch ("last").
        save_weights_only: write only the weights (``model.save_weights``) instead of the model file
            (``model.save``: weights and config).
        mode: "min", "max" or "auto" (max for accuracy-like names).
        save_freq: ``"epoch"`` saves at the end of each epoch; an integer N saves after every N training
            batches (counted across epochs), with the running logs of the epoch so far (so ``monitor`` and the
            keys in ``filepath`` must be training keys such as "loss"; validation runs at epoch ends only).

    Under torchrun every process tracks the best value, and rank 0 writes the files.
    """

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False, mode: str = "auto",
                 save_freq: int | str = "epoch"):
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError(f"ModelCheckpoint expects save_freq='epoch' or a positive number of batches. "
                             f"Received: save_freq={save_freq!r}")
        self.filepath, self.monitor, self.save_best_only = str(filepath), monitor, save_best_only
        self.verbose, self.save_weights_only, self.save_freq = verbose, save_weights_only, save_freq
        self.mode = _resolve_mode(mode, monitor)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.batches_since_save, self.epoch = 0, 0

    def state_dict(self) -> dict[str, Any]:
        """The best monitored value so far (what ``save_best_only`` compares with) and, with
        ``save_freq=N``, the batches counted since the last save."""
        return {"best": self.best, "batches_since_save": self.batches_since_save}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.batches_since_save = state["best"], state.get("batches_since_save", 0)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, step, logs=None):
        if self.save_freq == "epoch":
            return
        self.batches_since_save += 1
        if self.batches_since_save >= self.save_freq:
            self.batches_since_save = 0
            self._save(self.epoch, step, logs.read() if isinstance(logs, RunningLogs) else dict(logs or {}))

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs or {})

    def _save(self, epoch: int, batch: int | None, logs: dict) -> None:
        place = {} if batch is None else {"batch": batch + 1}
        path = self.filepath.format(epoch=epoch + 1, **place, **logs)
        if self.save_best_only:
            value = _monitored(logs, self.monitor, type(self).__name__)
            if not _improved(value, self.best, self.mode, 0.0):
                _say(self.verbose, f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            _say(self.verbose, f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {value:.5f}, "
                               f"saving model to {path}")
            self.best = value
        else:
            _say(self.verbose, f"Epoch {epoch + 1}: saving model to {path}")
        if not distributed.is_rank_zero():
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class LearningRateScheduler(Callback):
    """Sets the learning rate at the start of each epoch to ``schedule(epoch, lr)``."""

    def __init__(self, schedule: Callable[[int, float], float], verbose: int = 0):
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        lr = float(self.schedule(epoch, get_learning_rate(self.model.optimizer)))
        if not math.isfinite(lr) or lr < 0:
            raise ValueError(f"The schedule returned an invalid learning rate for epoch {epoch}: {lr}")
        set_learning_rate(self.model.optimizer, lr)
        if self.verbose and distributed.is_rank_zero():
            print(f"Epoch {epoch + 1}: learning rate set to {lr:.6g}")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = get_learning_rate(self.model.optimizer)


class OneCycleScheduler(Callback):
    """fastai's one-cycle policy over a whole ``fit``: each step's rate follows
    :class:`~deepzen.optimizers.schedules.OneCycle` over ``epochs * steps`` steps (what ``Model.fit_one_cycle``
    adds), and, as in fastai, the momentum cycles the other way (:meth:`OneCycle.momentum
    <deepzen.optimizers.schedules.OneCycle.momentum>`): SGD's and RMSprop's ``momentum``, the Adam family's
    ``beta_1``.

    Args:
        max_learning_rate: the peak rate (None: the optimizer's rate when training begins).
        pct_start, div_factor, final_div_factor: :class:`~deepzen.optimizers.schedules.OneCycle`'s.
        moms: ``(start, lowest, end)`` momentum, fastai's ``(0.95, 0.85, 0.95)`` by default; None leaves the
            optimizer's momentum as it is. An optimizer without a momentum (Adagrad, Adadelta) gets a warning.
    """

    def __init__(self, max_learning_rate: float | None = None, pct_start: float = 0.25, div_factor: float = 25.0,
                 final_div_factor: float = 1e5, moms: tuple[float, float, float] | None = (0.95, 0.85, 0.95)):
        if moms is not None and (len(moms) != 3 or not all(0 <= m < 1 for m in moms)):
            raise ValueError(f"OneCycleScheduler expects moms=(start, lowest, end), each in [0, 1), or None. "
                             f"Received: moms={moms!r}")
        self.max_learning_rate, self.pct_start = max_learning_rate, pct_start
        self.div_factor, self.final_div_factor = div_factor, final_div_factor
        self.moms = None if moms is None else tuple(float(m) for m in moms)
        self.done, self.peak = 0, None

    def on_train_begin(self, logs=None):
        state = self.model.fit_state
        if state.steps is None:
            raise ValueError("OneCycleScheduler needs to know the steps per epoch: pass arrays, or batches that "
                             "have a len()")
        self.peak = self.max_learning_rate if self.max_learning_rate is not None \
            else get_learning_rate(self.model.optimizer)
        self.done = state.initial_epoch * state.steps
        self._build(state.epochs * state.steps)
        self.cycle_momentum = self.moms is not None
        if self.cycle_momentum and not has_momentum(self.model.optimizer):
            warnings.warn(f"OneCycleScheduler: {type(self.model.optimizer).__name__} has no momentum to cycle; only "
                          f"the learning rate follows the one-cycle policy (pass moms=None to silence this)",
                          stacklevel=2)
            self.cycle_momentum = False

    def _build(self, total_steps: int) -> None:
        self.total_steps = total_steps
        self.schedule = schedules.OneCycle(self.peak, total_steps, pct_start=self.pct_start,
                                           div_factor=self.div_factor, final_div_factor=self.final_div_factor)

    def on_train_batch_begin(self, step, logs=None):
        set_learning_rate(self.model.optimizer, self.schedule(self.done))
        if self.cycle_momentum:
            set_momentum(self.model.optimizer, self.schedule.momentum(self.done, self.moms))
        self.done += 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = get_learning_rate(self.model.optimizer)

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done, "peak": self.peak}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.done, self.peak = int(state["done"]), float(state["peak"])
        if hasattr(self, "total_steps"):  # restored after on_train_begin (a resumed fit): rebuild with the peak
            self._build(self.total_steps)


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by ``factor`` when ``monitor`` has not improved for ``patience`` epochs."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, mode: str = "auto",
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0, verbose: int = 0):
        if not 0.0 < factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau expects 0 < factor < 1. Received: factor={factor}")
        self.monitor, self.factor, self.patience = monitor, factor, patience
        self.mode = _resolve_mode(mode, monitor)
        self.min_delta, self.cooldown, self.min_lr, self.verbose = min_delta, cooldown, min_lr, verbose
        self._reset()

    def on_train_begin(self, logs=None):
        self._reset()

    def _reset(self) -> None:
        self.wait, self.cooldown_left = 0, 0
        self.best = math.inf if self.mode == "min" else -math.inf

    def state_dict(self) -> dict[str, Any]:
        """Epochs waited, cooldown epochs left and the best monitored value."""
        return {"wait": self.wait, "cooldown_left": self.cooldown_left, "best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.wait, self.cooldown_left, self.best = state["wait"], state["cooldown_left"], state["best"]

    def on_epoch_end(self, epoch, logs=None):
        value = _monitored(logs, self.monitor, type(self).__name__)
        logs["learning_rate"] = get_learning_rate(self.model.optimizer)
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if _improved(value, self.best, self.mode, self.min_delta):
            self.best, self.wait = value, 0
        elif self.cooldown_left == 0:
            self.wait += 1
            if self.wait >= self.patience:
                lr = max(get_learning_rate(self.model.optimizer) * self.factor, self.min_lr)
                set_learning_rate(self.model.optimizer, lr)
                _say(self.verbose, f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {lr:.6g}.")
                self.cooldown_left, self.wait = self.cooldown, 0


class CSVLogger(Callback):
    """Writes the epoch logs to a CSV file (one row per epoch, flushed each epoch); under torchrun, rank 0 does."""

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False):
        self.filename, self.separator, self.append = Path(filename), separator, append
        self.file = None

    def on_train_begin(self, logs=None):
        if not distributed.is_rank_zero():
            return
        self.filename.parent.mkdir(parents=True, exist_ok=True)
        existing = self.append and self.filename.exists() and self.filename.stat().st_size > 0
        self.file = open(self.filename, "a" if self.append else "w", newline="")
        self.writer, self.keys = None, None
        if existing:
            with open(self.filename, newline="") as previous:
                self.keys = next(csv.reader(previous, delimiter=self.separator))[1:]
            self.writer = csv.writer(self.file, delimiter=self.separator)

    def on_epoch_end(self, epoch, logs=None):
        if self.file is None:  # not rank 0
            return
        logs = logs or {}
        if self.writer is None:
            self.keys = list(logs)
            self.writer = csv.writer(self.file, delimiter=self.separator)
            self.writer.writerow(["epoch", *self.keys])
        self.writer.writerow([epoch, *(logs.get(key, "") for key in self.keys)])
        self.file.flush()

    def on_train_end(self, logs=None):
        if self.file is not None:
            self.file.close()
            self.file = None


class GradientMonitor(Callback):
    """Records per-layer gradient norms during training and warns when they vanish or explode.

    Every ``every`` steps the L2 norm of each parameter's gradient is stacked into one device tensor
    (no host sync); the host reads them at the end of each epoch. ``history[name]`` is a list of
    per-epoch mean norms per parameter; ``steps`` keeps every recorded value for plotting. Under
    torchrun (where DDP has averaged the gradients) every process records, and rank 0 warns.

    Args:
        every: record every N steps.
        vanishing: warn when a layer's mean gradient norm falls below this.
        exploding: warn when it rises above this.
        weights_only: record only weight matrices/kernels (dim > 1), not biases and norms.
    """

    def __init__(self, every: int = 10, vanishing: float = 1e-7, exploding: float = 1e3, weights_only: bool = True,
                 warn: bool = True):
        self.every, self.vanishing, self.exploding = every, vanishing, exploding
        self.weights_only, self.warn = weights_only, warn
        self.history: dict[str, list[float]] = {}
        self.steps: dict[str, list[float]] = {}

    def on_train_begin(self, logs=None):
        self.named = [(name, p) for name, p in self.model.named_parameters()
                      if p.requires_grad and (p.dim() > 1 or not self.weights_only)]
        for name, _ in self.named:
            self.history.setdefault(name, [])
            self.steps.setdefault(name, [])
        self.pending: list[torch.Tensor] = []

    def on_after_backward(self, step):
        if step % self.every:
            return
        grads = [p.grad for _, p in self.named]
        if any(g is None for g in grads):
            grads = [torch.zeros((), device=p.device) if p.grad is None else p.grad for _, p in self.named]
        self.pending.append(torch.stack(torch._foreach_norm(grads)).float())

    def on_epoch_end(self, epoch, logs=None):
        if not self.pending:
            return
        norms = torch.stack(self.pending).cpu()  # host sync: once per epoch
        self.pending = []
        for column, (name, _) in enumerate(self.named):
            values = norms[:, column].tolist()
            self.steps[name].extend(values)
            self.history[name].append(sum(values) / len(values))
        if self.warn and distributed.is_rank_zero():
            self._warn(epoch)

    def _warn(self, epoch):
        means = {name: values[-1] for name, values in self.history.items() if values}
        vanished = [n for n, v in means.items() if v < self.vanishing]
        exploded = [n for n, v in means.items() if v > self.exploding or not math.isfinite(v)]
        if vanished:
            warnings.warn(f"Epoch {epoch + 1}: vanishing gradients (mean norm < {self.vanishing:g}) in: "
                          f"{', '.join(vanished)}", RuntimeWarning, stacklevel=2)
        if exploded:
            warnings.warn(f"Epoch {epoch + 1}: exploding gradients (mean norm > {self.exploding:g}) in: "
                          f"{', '.join(exploded)}", RuntimeWarning, stacklevel=2)


class WeightAverage(Callback):
    """Keeps an exponential moving average of the weights and evaluates and ends with it.

    After each step ``averaged <- decay * averaged + (1 - decay) * weights``. Validation
    (``validation_data`` and the callbacks after this one in the list, such as EarlyStopping)
    sees the averaged weights; the next epoch trains on the live weights again; training ends
    with the averaged weights in the model (Keras's optimizer ``use_ema``; Polyak averaging).
    Put it before the callbacks that should score or save the averaged weights.

    The average starts from the initial weights (as Keras's does), so a run needs well over
    ``1 / (1 - decay)`` steps before the average forgets them.

    Args:
        decay: in [0, 1); about ``1 / (1 - decay)`` recent steps make up the average.
    """

    def __init__(self, decay: float = 0.999):
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
            raise ValueError(f"WeightAverage expects decay in [0, 1). Received: decay={decay!r}")
        self.decay = float(decay)
        self.averaged: list[torch.Tensor] | None = None
        self.live: list[torch.Tensor] | None = None    # the training weights while the average is swapped in

    def _parameters(self) -> list[torch.Tensor]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and, while they are in the model, the live ones (lists of tensors)."""
        return {"averaged": self.averaged, "live": self.live}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged, self.live = state["averaged"], state["live"]

    def on_train_begin(self, logs=None):
        self.weights = [p.detach() for p in self._parameters()]   # resolved once, not at every step
        if self.averaged is None:
            self.averaged = [w.clone() for w in self.weights]
        self._swap_live_in()

    @torch.no_grad()
    def on_train_batch_end(self, step, logs=None):
        torch._foreach_lerp_(self.averaged, self.weights, 1.0 - self.decay)

    @torch.no_grad()
    def _swap_average_in(self) -> None:
        if self.live is None:
            self.live = [w.clone() for w in self.weights]
            torch._foreach_copy_(self.weights, self.averaged)

    @torch.no_grad()
    def _swap_live_in(self) -> None:
        if self.live is not None:
            torch._foreach_copy_(self.weights, self.live)
            self.live = None

    def on_test_begin(self, logs=None):
        self._swap_average_in()

    def on_epoch_end(self, epoch, logs=None):
        self._swap_average_in()

    def on_epoch_begin(self, epoch, logs=None):
        self._swap_live_in()

    def on_train_end(self, logs=None):
        self._swap_average_in()
        self.live = None


class TimeBudget(Callback):
    """Ends training once ``minutes`` of training time or ``max_steps`` steps are used up.

    Time spent in validation does not count. Training stops after the step that uses the budget up, or with
    ``at_epoch_end=True`` at the end of that epoch (so every epoch is whole). :meth:`progress` says how much
    of the budget is used (schedules over the budget read it), and the steps and time used are in the
    checkpoints, so a resumed fit continues the budget.

    Args:
        minutes: training-time budget (0: none).
        max_steps: step budget (0: none). At least one budget must be set.
        at_epoch_end: stop at the end of the epoch in which the budget runs out.
    """

    def __init__(self, minutes: float = 0.0, max_steps: int = 0, at_epoch_end: bool = False):
        if minutes <= 0 and max_steps <= 0:
            raise ValueError(f"{type(self).__name__} expects minutes > 0 or max_steps > 0. Received: "
                             f"minutes={minutes}, max_steps={max_steps}")
        self.seconds, self.max_steps, self.at_epoch_end = minutes * 60.0, max_steps, at_epoch_end
        self.start, self.paused, self.steps = time.perf_counter(), 0.0, 0

    @property
    def training_seconds(self) -> float:
        return time.perf_counter() - self.start - self.paused

    def progress(self) -> float:
        """The share of the budget used: the larger of elapsed/minutes and steps/max_steps (1 or more: spent)."""
        by_time = self.training_seconds / self.seconds if self.seconds > 0 else 0.0
        by_steps = self.steps / self.max_steps if self.max_steps > 0 else 0.0
        return max(by_time, by_steps)

    def on_train_begin(self, logs=None):
        self.start, self.paused, self.steps = time.perf_counter(), 0.0, 0

    def on_train_batch_end(self, step, logs=None):
        self.steps += 1
        if not self.at_epoch_end and self.progress() >= 1.0:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.progress() >= 1.0:
            self.model.stop_training = True

    def on_test_begin(self, logs=None):
        self.pause_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self.paused += time.perf_counter() - self.pause_start

    def state_dict(self) -> dict:
        return {"steps": self.steps, "seconds": self.training_seconds}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self.start, self.paused = time.perf_counter() - float(state["seconds"]), 0.0


class FollowEpochs(Callback):
    """Sets a batch source's ``epoch`` to the fit's at each epoch start.

    Batchers that shuffle by epoch (``BucketedBatches``, ``ParallelBatches``) count the epochs they serve,
    and a resumed process's batcher starts counting at 0: this keeps a fit resumed from a checkpoint on
    the batch order the uninterrupted fit drew.
    """

    def __init__(self, batches: Any):
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.epoch = epoch


class TerminateOnNaN(Callback):
    """Stops at the first non-finite loss, checked every step (one host sync per step: debugging only)."""

    def on_train_batch_end(self, step, logs=None):
        loss = logs.read()["loss"]
        if not math.isfinite(loss):
            self.model.stop_training = True
            raise FloatingPointError(f"Loss became {loss} at step {step + 1}")


def get_learning_rate(optimizer) -> float:
    lr = optimizer.param_groups[0]["lr"]
    return float(lr)


def set_learning_rate(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def has_momentum(optimizer) -> bool:
    """Whether every parameter group has a momentum :func:`set_momentum` can set."""
    return all("momentum" in group or "betas" in group for group in optimizer.param_groups)


def set_momentum(optimizer, momentum: float) -> None:
    """Sets the momentum of every parameter group: ``momentum`` (SGD, RMSprop) or ``betas[0]`` (the Adam family)."""
    for group in optimizer.param_groups:
        if "betas" in group:
            group["betas"] = (momentum, *group["betas"][1:])
        else:
            group["momentum"] = momentum


def _resolve_mode(mode: str, monitor: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max'. Received: mode={mode!r}")
    if mode != "auto":
        return mode
    maximized = ("acc", "accuracy", "auc", "precision", "recall", "f1", "bleu", "return", "hit", "ndcg")
    return "max" if any(word in monitor for word in maximized) else "min"


def _say(verbose: int, message: str) -> None:
    """A callback's ``verbose`` message, printed by rank 0 only."""
    if verbose and distributed.is_rank_zero():
        print(message)


def _monitored(logs: dict | None, monitor: str, who: str) -> float:
    if not logs or monitor not in logs:
        available = ", ".join(logs or {}) or "none"
        raise KeyError(f"{who} monitors {monitor!r}, which is not in the epoch logs (available: {available}). "
                       f"Validation keys need validation_data or validation_split.")
    return logs[monitor]


def _improved(value: float, best: float, mode: str, min_delta: float) -> bool:
    return value < best - min_delta if mode == "min" else value > best + min_delta
