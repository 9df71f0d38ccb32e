"""Training checkpoints: everything needed to continue a ``fit`` exactly where it stopped.

A checkpoint holds the model weights, the optimizer state (and the fp16 grad scaler's), the state
of the callbacks that keep some (those with ``state_dict()`` / ``load_state_dict(state)``:
EarlyStopping, ReduceLROnPlateau, ModelCheckpoint, ...), the History so far, the
RNG states of Python, NumPy and torch (CPU and CUDA) of every process, the epoch, and - for a
checkpoint taken inside an epoch - the step plus that epoch's losses and metric sums so far.

Files are one safetensors blob written atomically (:func:`~deepzen.training.serialization.write_tensors`:
temporary file, fsync, rename), so a crash while saving leaves the previous checkpoint intact.
Nested states such as ``optimizer.state_dict()`` are flattened into tensors plus a JSON tree; no
pickle is written or read.

On CPU a resumed run reproduces the uninterrupted one bit for bit: the shuffle order of an epoch
depends only on the fit's shuffle seed and the epoch, the RNG states are restored, and the steps an
interrupted epoch had done are skipped.

Example:
    >>> ckpt = TrainingCheckpoint("runs/a/checkpoint.ckpt", every_steps=100)   # doctest: +SKIP
    >>> model.fit(x, y, epochs=10, callbacks=[ckpt])   # run it again to continue  # doctest: +SKIP
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepzen.training import distributed
from deepzen.training.callbacks import Callback
from deepzen.training.engine import EpochProgress
from deepzen.training.serialization import ModelFileError, read_tensors, write_tensors

CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used for this fit (another batch size, or an unfinished fit to replay)."""


class Unstorable(TypeError):
    """A value that a checkpoint cannot hold (not a tensor, array, number, string or container of them)."""


# -- nested state <-> tensors + JSON ------------------------------------------------------------------------
def flatten_state(value: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """A JSON-ready tree for ``value``, with its tensors moved into ``tensors`` under ``prefix/...``.

    Handles tensors, NumPy arrays, numbers, strings, None, lists, tuples and dicts with any scalar keys
    (``optimizer.state_dict()`` uses int keys). Raises :class:`Unstorable` for anything else.
    """
    if isinstance(value, torch.Tensor):
        tensors[prefix] = value.detach()
        return {"__tensor__": prefix}
    if isinstance(value, np.ndarray):
        tensors[prefix] = torch.from_numpy(value.astype(np.int64) if value.dtype == np.uint32 else value.copy())
        return {"__ndarray__": prefix, "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [flatten_state(item, f"{prefix}/{i}", tensors) for i, item in enumerate(value)]}
    if isinstance(value, list):
        return [flatten_state(item, f"{prefix}/{i}", tensors) for i, item in enumerate(value)]
    if isinstance(value, dict):
        items = [[flatten_state(key, f"{prefix}/key{i}", tensors), flatten_state(item, f"{prefix}/{key}", tensors)]
                 for i, (key, item) in enumerate(value.items())]
        return {"__dict__": items}
    raise Unstorable(f"A checkpoint stores tensors, arrays, numbers, strings and containers of them. "
                     f"Received: {type(value).__name__} at {prefix!r}")


def unflatten_state(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of :func:`flatten_state`."""
    if isinstance(tree, list):
        return [unflatten_state(item, tensors) for item in tree]
    if not isinstance(tree, dict):
        return tree
    if "__tensor__" in tree:
        return tensors[tree["__tensor__"]]
    if "__ndarray__" in tree:
        return tensors[tree["__ndarray__"]].numpy().astype(np.dtype(tree["dtype"]))
    if "__tuple__" in tree:
        return tuple(unflatten_state(item, tensors) for item in tree["__tuple__"])
    return {unflatten_state(key, tensors): unflatten_state(item, tensors) for key, item in tree["__dict__"]}


# -- RNG states -------------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's global generators (CUDA ones when in use)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- callbacks' own state ------------------------------------------------------------------------------
# A callback keeps state across epochs by defining state_dict() and load_state_dict(state).
def callback_states(callbacks: list[Callback]) -> dict[str, Any]:
    """``{"EarlyStopping": {...}, "EarlyStopping#2": {...}}`` for the callbacks that keep state."""
    states, seen = {}, {}
    for callback in callbacks:
        key = _callback_key(callback, seen)
        if hasattr(callback, "state_dict"):
            states[key] = callback.state_dict()
    return states


def load_callback_states(callbacks: list[Callback], states: dict[str, Any]) -> None:
    """Gives each callback with ``load_state_dict`` its saved state (matched by class name and position)."""
    seen = {}
    for callback in callbacks:
        state = states.get(_callback_key(callback, seen))
        if state is not None and hasattr(callback, "load_state_dict"):
            callback.load_state_dict(state)


def _callback_key(callback: Callback, seen: dict[str, int]) -> str:
    name = type(callback).__name__
    seen[name] = seen.get(name, 0) + 1
    return name if seen[name] == 1 else f"{name}#{seen[name]}"


# -- files ------------------------------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike, model, *, epoch: int, step: int, callbacks: list[Callback],
                    ranks: list[dict[str, Any]], history: dict[str, Any] | None, finished: bool = False) -> None:
    """Writes a checkpoint of ``model`` (which is inside ``fit``) after ``step`` steps of ``epoch``.

    Args:
        epoch: the epoch to continue with (0-based); ``step`` steps of it are done.
        callbacks: the fit's callbacks (their state is saved when they keep any).
        ranks: per process ``{"rng": rng_state(), "progress": EpochProgress | None}``, in rank order.
        history: ``{"history": {key: [per-epoch values]}, "epoch": [epochs]}`` so far.
        finished: the fit ended here (all epochs done, or a callback stopped it).
    """
    engine = model.engine
    tensors: dict[str, torch.Tensor] = {f"model/{key}": value for key, value in model.state_dict().items()}
    metadata = {
        "checkpoint": CHECKPOINT_VERSION,
        "epoch": epoch, "step": step, "finished": finished,
        "epochs": model.fit_state["epochs"], "steps": model.fit_state["steps"],
        "batch_size": model.fit_state["batch_size"], "shuffle_seed": model.fit_state["shuffle_seed"],
        "stopped": bool(model.stop_training),
        "world_size": len(ranks),
        "optimizer": flatten_state(engine.optimizer.state_dict(), "optimizer", tensors),
        "scaler": flatten_state(engine.scaler.state_dict(), "scaler", tensors) if engine.scaler else None,
        "callbacks": flatten_state(callback_states(callbacks), "callbacks", tensors),
        "history": history,
        "ranks": [flatten_state({"rng": own["rng"], "progress": _progress_tree(own["progress"])}, f"rank{index}",
                                tensors) for index, own in enumerate(ranks)],
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_tensors(path, tensors, metadata)


def _progress_tree(progress: EpochProgress | None) -> dict | None:
    if progress is None:
        return None
    return {"step": progress.step, "losses": progress.losses, "sizes": progress.sizes,
            "metric_states": progress.metric_states}


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(metadata, tensors)`` of a checkpoint; raises :class:`ModelFileError` when damaged or not one."""
    tensors, metadata = read_tensors(path)
    if metadata.get("checkpoint") != CHECKPOINT_VERSION:
        raise ModelFileError(f"{path} is a deepzen file but not a training checkpoint "
                             f"(expected checkpoint version {CHECKPOINT_VERSION})")
    return metadata, tensors


def checkpoint_position(path: str | os.PathLike) -> dict[str, Any]:
    """Where a checkpoint stands: ``{"epoch", "step", "epochs", "finished", "saved_at"}``."""
    metadata, _ = read_checkpoint(path)
    return {key: metadata[key] for key in ("epoch", "step", "epochs", "finished", "saved_at")}


# -- the callback ----------------------------------------------------------------------------------------
class TrainingCheckpoint(Callback):
    """Saves resumable checkpoints during ``fit`` and, when ``path`` exists at the start, resumes from it.

    Put it after the callbacks whose state it restores (it runs their ``on_train_begin`` reset first).

    Args:
        path: the checkpoint file (rewritten atomically at each save).
        every_steps: also save every N steps inside an epoch (for long epochs); None = epoch ends only.
        resume: continue from ``path`` when it exists.
        read_only: only restore, never write, and refuse a checkpoint of a fit that did not finish
            (used to replay a finished run, e.g. ``deepzen evaluate``).
        catch_interrupt: make Ctrl-C (SIGINT) stop at the end of the current step, save, and raise
            ``KeyboardInterrupt``; a second Ctrl-C quits at once.
    """

    def __init__(self, path: str | os.PathLike, every_steps: int | None = None, resume: bool = True,
                 read_only: bool = False, catch_interrupt: bool = True):
        if every_steps is not None and (not isinstance(every_steps, int) or every_steps < 1):
            raise ValueError(f"every_steps must be a positive integer or None. Received: every_steps={every_steps!r}")
        self.path, self.every_steps = Path(path), every_steps
        self.resume, self.read_only, self.catch_interrupt = resume, read_only, catch_interrupt
        self.interrupted = False
        self.resumed_from: dict[str, Any] | None = None
        self._previous_handler: Any = None
        self._handling_interrupts = False

    # -- events ------------------------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self.callbacks = [cb for cb in self.model.fit_state["callbacks"] if cb is not self]
        self.interrupted = False
        if self.read_only and not self.path.is_file():
            raise FileNotFoundError(f"No checkpoint at {self.path}: this fit never finished an epoch")
        if (self.resume or self.read_only) and self.path.is_file():
            self._restore()
        if self.catch_interrupt and not self.read_only and threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._request_stop)
            self._handling_interrupts = True

    def on_train_batch_end(self, step, logs=None):
        done = step + 1
        if done == self.model.fit_state["steps"]:
            return  # the epoch's last step: the epoch-end checkpoint follows validation
        if self.interrupted:
            self._save(self.model.fit_state["epoch"], done, collective=False)
            self._stop(f"in epoch {self.model.fit_state['epoch'] + 1} after step {done}")
        if self.every_steps is not None and done % self.every_steps == 0:
            self._save(self.model.fit_state["epoch"], done)

    def on_epoch_end(self, epoch, logs=None):
        finished = self.model.stop_training or epoch + 1 >= self.model.fit_state["epochs"]
        self._save(epoch + 1, 0, history_logs=(epoch, logs or {}), finished=finished,
                   collective=not self.interrupted)
        if self.interrupted:
            self._stop(f"after epoch {epoch + 1}")

    def on_train_end(self, logs=None):
        self._restore_handler()

    # -- interrupts --------------------------------------------------------------------------------------
    def _request_stop(self, signum, frame):
        if self.interrupted:  # the second Ctrl-C: quit now
            self._restore_handler()
            raise KeyboardInterrupt
        self.interrupted = True
        if distributed.is_rank_zero():
            print("\nInterrupted: saving a checkpoint at the end of this step (Ctrl-C again to quit at once)",
                  file=sys.stderr, flush=True)

    def _stop(self, where: str):
        self._restore_handler()
        raise KeyboardInterrupt(f"training interrupted {where}; checkpoint saved to {self.path}")

    def _restore_handler(self):
        if self._handling_interrupts:
            signal.signal(signal.SIGINT, self._previous_handler if self._previous_handler is not None
                          else signal.default_int_handler)
            self._handling_interrupts = False

    # -- saving and restoring ---------------------------------------------------------------------------
    def _save(self, epoch: int, step: int, history_logs=None, finished: bool = False, collective: bool = True):
        if self.read_only:
            return
        engine = self.model.engine
        own = {"rng": rng_state(), "progress": engine.epoch_progress(step) if step else None}
        # Every process takes part in the gather (the save points are the same everywhere), except on
        # Ctrl-C, where processes stop at different moments: then rank 0's state stands for all.
        ranks = distributed.all_gather_object(own) if collective else [own]
        if not distributed.is_rank_zero():
            return
        save_checkpoint(self.path, self.model, epoch=epoch, step=step, callbacks=self.callbacks, ranks=ranks,
                        history=_history_with(self.model.history, history_logs), finished=finished)

    def _restore(self):
        metadata, tensors = read_checkpoint(self.path)
        model, state = self.model, self.model.fit_state
        if self.read_only and not metadata["finished"]:
            raise CheckpointError(f"{self.path} is from epoch {metadata['epoch'] + 1} of {metadata['epochs']}, step "
                                  f"{metadata['step']}: that fit did not finish. Resume the run to finish it first")
        if metadata["step"] and (metadata["batch_size"], metadata["steps"]) != (state["batch_size"], state["steps"]):
            raise CheckpointError(f"{self.path} was saved inside an epoch of {metadata['steps']} steps of "
                                  f"{metadata['batch_size']} samples; this fit has {state['steps']} steps of "
                                  f"{state['batch_size']}. Resume with the same batch size and data")
        model.load_state_dict({key[len("model/"):]: value for key, value in tensors.items()
                               if key.startswith("model/")})
        model.engine.optimizer.load_state_dict(unflatten_state(metadata["optimizer"], tensors))
        if metadata["scaler"] is not None and model.engine.scaler is not None:
            model.engine.scaler.load_state_dict(unflatten_state(metadata["scaler"], tensors))
        load_callback_states(self.callbacks, unflatten_state(metadata["callbacks"], tensors))
        if metadata["history"] is not None and model.history is not None:
            model.history.history = metadata["history"]["history"]
            model.history.epoch = metadata["history"]["epoch"]
        ranks = metadata["ranks"]
        own = unflatten_state(ranks[distributed.rank() if distributed.rank() < len(ranks) else 0], tensors)
        set_rng_state(own["rng"])
        state["shuffle_seed"] = metadata["shuffle_seed"]
        state["initial_epoch"] = state["epochs"] if metadata["stopped"] else metadata["epoch"]
        if own["progress"] is not None:
            progress = own["progress"]
            state["resume_progress"] = EpochProgress(progress["step"], progress["losses"], progress["sizes"],
                                                     progress["metric_states"])
        self.resumed_from = {key: metadata[key] for key in ("epoch", "step", "epochs", "saved_at")}


def _history_with(history, epoch_logs: tuple[int, dict] | None) -> dict[str, Any] | None:
    """The History's records, plus this epoch's logs when the History (which runs last) has not seen them yet."""
    if history is None:
        return None
    records = {"history": {key: list(values) for key, values in history.history.items()}, "epoch": list(history.epoch)}
    if epoch_logs is not None and (not history.epoch or history.epoch[-1] != epoch_logs[0]):
        epoch, logs = epoch_logs
        records["epoch"].append(epoch)
        for key, value in logs.items():
            records["history"].setdefault(key, []).append(value)
    return records
