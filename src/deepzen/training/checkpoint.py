"""Training checkpoints: everything needed to continue a ``fit`` exactly where it stopped.

A checkpoint holds the model weights, the state of every optimizer the model steps (``Model.optimizers``:
the compiled one, or a GAN's two) and the fp16 grad scaler's, the state
of the callbacks that keep some (those with ``state_dict()`` / ``load_state_dict(state)``:
EarlyStopping, ReduceLROnPlateau, ModelCheckpoint, ...), the History so far, the
RNG states of Python, NumPy and torch (CPU and CUDA) of every process, the epoch, and - for a
checkpoint taken inside an epoch - the step plus that epoch's losses and metric sums so far (for a
model that overrides ``train_step``: the states of its ``model.metrics``, from which its logs come; a
metric without a state dict of tensors makes the mid-epoch saves be skipped, with a warning, and the
epoch-end checkpoints still taken).

Files are one safetensors blob written atomically (:func:`~deepzen.training.serialization.write_tensors`:
temporary file, fsync, rename), so a crash while saving leaves the previous checkpoint intact.
Nested states such as ``optimizer.state_dict()`` are flattened into tensors plus a JSON tree; no
pickle is written or read.

On CPU a resumed run reproduces the uninterrupted one bit for bit: the shuffle order of an epoch
depends only on the fit's shuffle seed and the epoch, the RNG states are restored, the optimizer
state takes its parameters' memory layouts again (channels-last convolution weights), and the steps
an interrupted epoch had done are skipped (``tests/training/test_resume_matrix.py`` checks this over
optimizers, precisions, layouts, stateful callbacks and ``kill -9``).

Reading checks the header (version, epoch, step, the fit's sizes, types) and restoring checks that
every saved state fits what it restores: a malformed or hostile checkpoint raises
:class:`~deepzen.training.serialization.ModelFileError` naming the file and what is wrong.

Example:
    >>> ckpt = TrainingCheckpoint("runs/a/checkpoint.ckpt", every_steps=100)   # doctest: +SKIP
    >>> model.fit(x, y, epochs=10, callbacks=[ckpt])   # run it again to continue  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepzen.training import distributed
from deepzen.training.callbacks import Callback
from deepzen.training.engine import STEP_METRICS, EpochProgress, Unresumable
from deepzen.training.serialization import FileHeader, ModelFileError, read_header, write_tensors

CHECKPOINT_VERSION = 2  # 2: "optimizers", one state per named optimizer; 1 (still read): one "optimizer"


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
    """The inverse of :func:`flatten_state`.

    Raises:
        ModelFileError: ``tree`` names a tensor that ``tensors`` lacks, or is not a tree that
            :func:`flatten_state` writes (the message says where; the caller names the file).
    """
    if isinstance(tree, list):
        return [unflatten_state(item, tensors) for item in tree]
    if not isinstance(tree, dict):
        return tree
    if "__tensor__" in tree:
        return _saved_tensor(tree["__tensor__"], tensors)
    if "__ndarray__" in tree:
        dtype = tree.get("dtype")
        try:
            dtype = np.dtype(dtype) if isinstance(dtype, str) else None
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind not in "biuf":
            raise ModelFileError(f"the array {tree['__ndarray__']!r} has no numeric dtype "
                                 f"(received {tree.get('dtype')!r})")
        return _saved_tensor(tree["__ndarray__"], tensors).numpy().astype(dtype)
    if isinstance(tree.get("__tuple__"), list):
        return tuple(unflatten_state(item, tensors) for item in tree["__tuple__"])
    items = tree.get("__dict__")
    if not isinstance(items, list) or not all(isinstance(item, list) and len(item) == 2 for item in items):
        raise ModelFileError(f"a saved state holds an object that is not a tensor, array, tuple or dict: {tree!r:.120}")
    state = {}
    for key, item in items:
        key = unflatten_state(key, tensors)
        if not isinstance(key, (str, int, float, bool, type(None))):
            raise ModelFileError(f"a saved dict has a key that is not a number or string: {key!r:.120}")
        state[key] = unflatten_state(item, tensors)
    return state


def _saved_tensor(name: Any, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    if not isinstance(name, str) or name not in tensors:
        raise ModelFileError(f"a saved state names the tensor {name!r:.120}, which the file does not hold")
    return tensors[name]


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
    """Gives each callback with ``load_state_dict`` its saved state (matched by class name and position).

    Raises:
        ModelFileError: ``states`` is not a dict, or a saved state does not fit the callback's own
            (:func:`check_fits`).
    """
    if not isinstance(states, dict):
        raise ModelFileError(f"the callback states must be a dict. Received: {states!r:.80}")
    seen = {}
    for callback in callbacks:
        key = _callback_key(callback, seen)
        state = states.get(key)
        if state is not None and hasattr(callback, "load_state_dict"):
            if hasattr(callback, "state_dict"):
                check_fits(state, callback.state_dict(), key)
            callback.load_state_dict(state)


def check_fits(saved: Any, own: Any, where: str) -> None:
    """Refuses a saved state that cannot stand for ``own``, the live object's current state.

    Where ``own`` holds a value, the saved state must hold one of the same kind: a tensor of the
    same shape and dtype, a number for a number, a bool, a string, a dict with at least the same keys,
    and a list or tuple of as many items where ``own``'s are tensors. None in ``own`` accepts anything.

    Raises:
        ModelFileError: saying where (``where/key/...``) and what was expected.
    """
    def refuse(expected: str):
        raise ModelFileError(f"{where} must be {expected}. Received: {saved!r:.80}")

    if own is None:
        return
    if isinstance(own, torch.Tensor):
        if not (isinstance(saved, torch.Tensor) and saved.shape == own.shape and saved.dtype == own.dtype):
            refuse(f"a {own.dtype} tensor of shape {tuple(own.shape)}")
    elif isinstance(own, (bool, str)):
        if type(saved) is not type(own):
            refuse(f"a {type(own).__name__}")
    elif isinstance(own, (int, float)):
        if not _is_json(saved, float):
            refuse("a number")
    elif isinstance(own, dict):
        if not isinstance(saved, dict):
            refuse("a dict")
        for key, value in own.items():
            if key not in saved:
                refuse(f"a dict with the key {key!r}")
            check_fits(saved[key], value, f"{where}/{key}")
    elif isinstance(own, (list, tuple)):
        if not isinstance(saved, (list, tuple)):
            refuse("a list")
        if own and all(isinstance(item, torch.Tensor) for item in own):
            if len(saved) != len(own):
                refuse(f"a list of {len(own)} tensors")
            for index, (mine, theirs) in enumerate(zip(saved, own)):
                check_fits(mine, theirs, f"{where}/{index}")


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
        "epochs": model.fit_state.epochs, "steps": model.fit_state.steps,
        "batch_size": model.fit_state.batch_size, "shuffle_seed": model.fit_state.shuffle_seed,
        "stopped": bool(model.stop_training),
        "world_size": len(ranks),
        "optimizers": {name: flatten_state(optimizer.state_dict(), f"optimizer/{name}", tensors)
                       for name, optimizer in model.optimizers.items()},
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


def read_checkpoint(path: str | os.PathLike, model: nn.Module | None = None,
                    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(metadata, tensors)`` of a checkpoint whose header is checked (:func:`check_header`).

    With ``model``, the tensors the file declares are checked against it before any is read: the
    ``model/`` ones must be its state exactly, and no other (optimizer or callback state, RNG states)
    may be larger than twice its largest tensor or 1 MiB.

    Raises:
        ModelFileError: naming the file, when it is damaged, not a checkpoint, has a malformed header, or
            declares tensors the model cannot have.
    """
    header = _checked_header(path)
    if model is not None:
        _check_declared_sizes(header, model)
    return header.metadata, header.read_tensors()


def _checked_header(path: str | os.PathLike) -> FileHeader:
    header = read_header(path)
    if "checkpoint" not in header.metadata:
        raise ModelFileError(f"{path} is a deepzen file but not a training checkpoint "
                             f"(expected checkpoint version {CHECKPOINT_VERSION})")
    check_header(header.metadata, path)
    return header


def _check_declared_sizes(header: FileHeader, model: nn.Module) -> None:
    own = {f"model/{key}": tuple(value.shape) for key, value in model.state_dict().items()}
    declared = {key: spec.shape for key, spec in header.tensors.items() if key.startswith("model/")}
    if declared != own:
        wrong = sorted(key for key in set(own) | set(declared) if own.get(key) != declared.get(key))
        raise ModelFileError(f"{header.path} is not a usable training checkpoint: its model weights do not fit "
                             f"this model ({', '.join(str(key)[:80] for key in wrong[:6])})")
    limit = max(2 * max((value.numel() * value.element_size() for value in model.state_dict().values()), default=0),
                1 << 20)
    for key, spec in header.tensors.items():
        if not key.startswith("model/") and spec.nbytes > limit:
            raise ModelFileError(f"{header.path} is not a usable training checkpoint: it declares {spec.nbytes} "
                                 f"bytes for {str(key)[:80]!r}, more than this model's state can need ({limit})")


# The header's fields: their JSON types (None where a field may be null) and what else must hold.
_HEADER_FIELDS = {
    "checkpoint": (int,), "epoch": (int,), "step": (int,), "finished": (bool,), "epochs": (int,),
    "steps": (int, None), "batch_size": (int,), "shuffle_seed": (int,), "stopped": (bool,), "world_size": (int,),
    "optimizers": (dict,), "scaler": (dict, None), "callbacks": (dict,), "history": (dict, None), "ranks": (list,),
    "saved_at": (str,),
}


def check_header(metadata: dict[str, Any], path: str | os.PathLike) -> None:
    """Refuses a checkpoint header with missing fields, wrong types or positions outside the fit.

    Raises:
        ModelFileError: naming ``path`` and the field.
    """
    def refuse(what: str):
        raise ModelFileError(f"{path} is not a usable training checkpoint: {what}")

    if metadata.get("checkpoint") == 1 and "optimizer" in metadata and "optimizers" not in metadata:
        metadata["optimizers"] = {"optimizer": metadata.pop("optimizer")}  # version 1: the compiled optimizer's
    for name, kinds in _HEADER_FIELDS.items():
        if name not in metadata:
            refuse(f"its header has no {name!r}")
        value = metadata[name]
        if not (value is None and None in kinds or any(_is_json(value, kind) for kind in kinds if kind is not None)):
            expected = " or ".join("null" if kind is None else kind.__name__ for kind in kinds)
            refuse(f"{name!r} must be {expected}. Received: {value!r:.80}")
    if metadata["checkpoint"] not in (1, CHECKPOINT_VERSION):
        refuse(f"it is checkpoint version {metadata['checkpoint']}; this deepzen reads versions 1 to "
               f"{CHECKPOINT_VERSION}")
    for name in ("epochs", "steps", "batch_size", "world_size"):
        if metadata[name] is not None and metadata[name] < 1:
            refuse(f"{name!r} must be a positive integer. Received: {metadata[name]}")
    epoch, step, epochs, steps = metadata["epoch"], metadata["step"], metadata["epochs"], metadata["steps"]
    if not 0 <= epoch <= epochs:
        refuse(f"'epoch' must be in [0, {epochs}] (the fit's epochs). Received: {epoch}")
    if step < 0 or step and (epoch == epochs or steps is not None and step >= steps):
        refuse(f"'step' must be 0, or inside epoch {epoch + 1} of {epochs} (below its {steps} steps). Received: {step}")
    if len(metadata["ranks"]) != metadata["world_size"]:
        refuse(f"it holds the states of {len(metadata['ranks'])} processes for a world size of "
               f"{metadata['world_size']}")
    history = metadata["history"]
    if history is not None and not (
            history.keys() == {"history", "epoch"} and isinstance(history["epoch"], list)
            and all(_is_json(e, int) for e in history["epoch"]) and isinstance(history["history"], dict)
            and all(isinstance(values, list) and all(v is None or _is_json(v, float) for v in values)
                    for values in history["history"].values())):
        refuse("'history' must be {'history': {name: [numbers]}, 'epoch': [integers]}")


def _is_json(value: Any, kind: type) -> bool:
    """Whether a JSON value is of ``kind`` (booleans are not numbers; integers are floats)."""
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def checkpoint_position(path: str | os.PathLike) -> dict[str, Any]:
    """Where a checkpoint stands: ``{"epoch", "step", "epochs", "finished", "stopped", "saved_at"}``."""
    metadata = _checked_header(path).metadata  # no tensor is read
    return {key: metadata[key] for key in ("epoch", "step", "epochs", "finished", "stopped", "saved_at")}


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
        self._warned_unresumable = False
        self.resumed_from: dict[str, Any] | None = None
        self._previous_handler: Any = None
        self._handling_interrupts = False

    # -- events ------------------------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self.callbacks = [cb for cb in self.model.fit_state.callbacks if cb is not self]
        self.interrupted = False
        if self.read_only and not self.path.is_file():
            raise FileNotFoundError(f"No checkpoint at {self.path}: this fit never finished an epoch")
        if self.catch_interrupt and not self.read_only and threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._request_stop)
            self._handling_interrupts = True

    def resume_fit(self, state):
        if (self.resume or self.read_only) and self.path.is_file():
            self._restore(state)

    def on_train_batch_end(self, step, logs=None):
        done = step + 1
        if done == self.model.fit_state.steps:
            return  # the epoch's last step: the epoch-end checkpoint follows validation
        if self.interrupted:
            saved = self._save(self.model.fit_state.epoch, done, collective=False)
            self._stop(f"in epoch {self.model.fit_state.epoch + 1} after step {done}", saved=saved)
        if self.every_steps is not None and done % self.every_steps == 0:
            self._save(self.model.fit_state.epoch, done)

    def on_epoch_end(self, epoch, logs=None):
        finished = self.model.stop_training or epoch + 1 >= self.model.fit_state.epochs
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

    def _stop(self, where: str, saved: bool = True):
        self._restore_handler()
        if not saved:  # a custom step's epoch that a checkpoint cannot hold: the last epoch end's stays
            raise KeyboardInterrupt(f"training interrupted {where}; no checkpoint could be taken inside this epoch, "
                                    f"so a resume continues from the last epoch end ({self.path})")
        raise KeyboardInterrupt(f"training interrupted {where}; checkpoint saved to {self.path}")

    def _restore_handler(self):
        if self._handling_interrupts:
            signal.signal(signal.SIGINT, self._previous_handler if self._previous_handler is not None
                          else signal.default_int_handler)
            self._handling_interrupts = False

    # -- saving and restoring ---------------------------------------------------------------------------
    def _save(self, epoch: int, step: int, history_logs=None, finished: bool = False, collective: bool = True) -> bool:
        """Saves a checkpoint (rank 0 writes it); False when none can be taken at this point."""
        if self.read_only:
            return False
        engine = self.model.engine
        try:
            progress = engine.epoch_progress(step) if step else None
        except Unresumable as error:
            if not self._warned_unresumable:
                self._warned_unresumable = True
                warnings.warn(f"TrainingCheckpoint takes no checkpoints inside an epoch of this fit: {error}. "
                              f"The epoch-end checkpoints are still taken", stacklevel=2)
            return False
        own = {"rng": rng_state(), "progress": progress}
        # Every process takes part in the gather (the save points are the same everywhere), except on
        # Ctrl-C, where processes stop at different moments: then rank 0's state stands for all.
        ranks = distributed.all_gather_object(own) if collective else [own]
        if not distributed.is_rank_zero():
            return True
        save_checkpoint(self.path, self.model, epoch=epoch, step=step, callbacks=self.callbacks, ranks=ranks,
                        history=_history_with(self.model.history, history_logs), finished=finished)
        return True

    def _restore(self, state):
        metadata, tensors = read_checkpoint(self.path, self.model)
        model, path = self.model, self.path
        if self.read_only and not metadata["finished"]:
            raise CheckpointError(f"{path} is from epoch {metadata['epoch'] + 1} of {metadata['epochs']}, step "
                                  f"{metadata['step']}: that fit did not finish. Resume the run to finish it first")
        if metadata["step"] and (metadata["batch_size"], metadata["steps"]) != (state.batch_size, state.steps):
            raise CheckpointError(f"{path} was saved inside an epoch of {metadata['steps']} steps of "
                                  f"{metadata['batch_size']} samples; this fit has {state.steps} steps of "
                                  f"{state.batch_size}. Resume with the same batch size and data")
        with _refusing(path, "its model weights do not fit this model"):
            model.load_state_dict({key[len("model/"):]: value for key, value in tensors.items()
                                   if key.startswith("model/")})
        own_optimizers, saved_optimizers = model.optimizers, metadata["optimizers"]
        if saved_optimizers.keys() != own_optimizers.keys():
            raise ModelFileError(f"{path} is not a usable training checkpoint: it holds the state of the optimizers "
                                 f"{sorted(saved_optimizers)}; this model steps {sorted(own_optimizers)}")
        for name, optimizer in own_optimizers.items():
            what = "its optimizer state" if name == "optimizer" else f"its {name} state"
            with _refusing(path, what):
                load_optimizer_state(optimizer, unflatten_state(saved_optimizers[name], tensors))
        if metadata["scaler"] is not None and model.engine.scaler is not None:
            with _refusing(path, "its grad scaler state"):
                model.engine.scaler.load_state_dict(unflatten_state(metadata["scaler"], tensors))
        with _refusing(path, "its callback states"):
            load_callback_states(self.callbacks, unflatten_state(metadata["callbacks"], tensors))
        if metadata["history"] is not None and model.history is not None:
            model.history.history = metadata["history"]["history"]
            model.history.epoch = metadata["history"]["epoch"]
        ranks = metadata["ranks"]
        with _refusing(path, "its RNG and epoch progress"):
            own = unflatten_state(ranks[distributed.rank() if distributed.rank() < len(ranks) else 0], tensors)
            _check_rank_state(own, metadata["step"])
            set_rng_state(own["rng"])
        state.shuffle_seed = metadata["shuffle_seed"]
        state.initial_epoch = state.epochs if metadata["stopped"] else metadata["epoch"]
        if own["progress"] is not None:
            progress = own["progress"]
            state.resume_progress = EpochProgress(progress["step"], progress["losses"], progress["sizes"],
                                                     progress["metric_states"])
        self.resumed_from = {key: metadata[key] for key in ("epoch", "step", "epochs", "saved_at")}


@contextlib.contextmanager
def _refusing(path: Path, what: str):
    """Turns any error raised while a part of a checkpoint is restored into a ModelFileError naming the file."""
    try:
        yield
    except ModelFileError as error:
        raise ModelFileError(f"{path} is not a usable training checkpoint: {what}: {error}") from error
    except Exception as error:  # torch's and the callbacks' loaders raise KeyError, TypeError, RuntimeError, ...
        raise ModelFileError(f"{path} is not a usable training checkpoint: {what} ({type(error).__name__}: "
                             f"{error})") from error


def _check_rank_state(own: Any, step: int) -> None:
    """Refuses a process's saved state that is not ``{"rng": ..., "progress": ...}`` with ``step`` steps."""
    if not isinstance(own, dict) or own.keys() != {"rng", "progress"} or not isinstance(own["rng"], dict):
        raise ModelFileError("a process's state must be {'rng': {...}, 'progress': ...}")
    progress = own["progress"]
    if step == 0:
        if progress is not None:
            raise ModelFileError("a checkpoint at an epoch's start holds an epoch's progress")
        return
    custom = isinstance(progress, dict) and isinstance(progress.get("metric_states"), dict) \
        and STEP_METRICS in progress["metric_states"]  # an overriding train_step: its metrics' states only
    steps_recorded = 0 if custom else step
    if not (isinstance(progress, dict) and progress.keys() == {"step", "losses", "sizes", "metric_states"}
            and progress["step"] == step and isinstance(progress["losses"], torch.Tensor)
            and progress["losses"].shape == (steps_recorded,) and progress["losses"].is_floating_point()
            and isinstance(progress["sizes"], list) and len(progress["sizes"]) == steps_recorded
            and all(_is_json(size, int) and size >= 0 for size in progress["sizes"])
            and isinstance(progress["metric_states"], dict)
            and all(isinstance(group, list) and all(
                states is None or isinstance(states, dict) and all(isinstance(t, torch.Tensor) for t in states.values())
                for states in group) for group in progress["metric_states"].values())):
        raise ModelFileError(f"the progress of the interrupted epoch does not describe its {step} steps")


# torch optimizers whose per-parameter state tensors (besides the 0-dim step counts) have the parameter's shape
_ELEMENTWISE_OPTIMIZERS = tuple(getattr(torch.optim, name) for name in (
    "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam", "ASGD", "Rprop")
    if hasattr(torch.optim, name))


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: Any) -> None:
    """``optimizer.load_state_dict(saved)``, refusing a state that does not fit, in the parameters' layouts.

    The file holds contiguous tensors, but an optimizer's state has the layout of its parameter
    (channels-last for the convolution weights that train so on the CPU); fused kernels given a
    mix of layouts compute other numbers, so each restored state tensor takes its parameter's strides.

    Raises:
        ModelFileError: the saved state has other parameter groups, parameters or state shapes.
    """
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not (isinstance(groups, list) and isinstance(saved.get("state"), dict)
            and all(isinstance(group, dict) and isinstance(group.get("params"), list) for group in groups)):
        raise ModelFileError("it must be {'state': {...}, 'param_groups': [{'params': [...], ...}, ...]}")
    ids = [index for group in saved["param_groups"] for index in group["params"]]
    unknown = [key for key in saved["state"] if key not in ids]
    if unknown:
        raise ModelFileError(f"it holds state for parameters {unknown[:5]} that no parameter group has")
    for group, own in zip(saved["param_groups"], optimizer.param_groups):
        for name, value in own.items():
            if name == "params" or not _is_setting(value):
                continue
            if name not in group:
                raise ModelFileError(f"a parameter group has no {name!r}")
            if not _same_kind(group[name], value):
                raise ModelFileError(f"its {name!r} is {group[name]!r:.80}; this optimizer's is {value!r:.80}")
    optimizer.load_state_dict(saved)
    elementwise = isinstance(optimizer, _ELEMENTWISE_OPTIMIZERS)
    for own in optimizer.param_groups:
        for param in own["params"]:
            state = optimizer.state.get(param, {})
            for name, value in state.items():
                if not isinstance(value, torch.Tensor):
                    if elementwise and value is not None:
                        raise ModelFileError(f"its {name!r} is {value!r:.80}, not a tensor")
                    continue
                if value.dim() == 0:
                    continue
                if value.shape != param.shape:
                    if elementwise:
                        raise ModelFileError(f"its {name!r} of shape {tuple(value.shape)} does not fit a parameter "
                                             f"of shape {tuple(param.shape)}")
                elif value.stride() != param.stride():
                    state[name] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def _is_setting(value: Any) -> bool:
    """Whether an optimizer setting is a number or a tuple of them (lr, betas, eps, ...), which a step needs."""
    if isinstance(value, tuple):
        return all(map(_is_setting, value))
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_kind(saved: Any, own: Any) -> bool:
    """Whether a saved optimizer setting can stand for ``own`` (finite numbers for numbers, tuples of as many)."""
    if isinstance(own, tuple):
        return isinstance(saved, tuple) and len(saved) == len(own) and all(map(_same_kind, saved, own))
    return _is_json(saved, float) and math.isfinite(saved)


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
