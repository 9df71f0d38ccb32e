"""Run folders: what ``deepzen train`` leaves behind, and how a run is resumed.

A run folder holds::

    run.json            recipe, status (running / completed / interrupted / failed), sessions
    config.json         the resolved config  {"recipe": ..., "config": {...}}
    config.toml         the same config, reusable with ``deepzen train RECIPE --config``
    environment.json    per session: versions, device, processes, seed, command, host
    history.csv         one row per epoch (train and validation logs)
    history.json        the same as {"epoch": [...], "loss": [...], ...}
    training_curves.png the curves of history.json
    best.dz, last.dz    the model after its best epoch (val_loss, else loss) and after the last one
    checkpoint.ckpt     the training checkpoint that ``--resume`` continues from
    metrics.json        the recipe's final evaluation (test metrics)

plus whatever the recipe writes itself (``model.dz``, plots). A recipe that calls ``fit`` several
times gets ``history-2.csv``, ``checkpoint-2.ckpt``... for its second fit.

Recipes need no code for this: while a run is active (:func:`current_run`), every ``Model.fit``
adds the run's recorder and :class:`~deepzen.training.checkpoint.TrainingCheckpoint` callbacks.
Resuming re-runs the recipe from the start (data, model), and each fit continues from its
checkpoint; fits that had finished are restored without training.

Example:
    >>> run = Run.create("digits-cnn", {"epochs": 3}, "runs/demo")   # doctest: +SKIP
    >>> metrics = run.execute()                                       # doctest: +SKIP
    >>> metrics = Run.open("runs/demo").execute()   # after a crash: continues  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from deepzen.training import distributed
from deepzen.training.callbacks import Callback
from deepzen.training.checkpoint import TrainingCheckpoint
from deepzen.training.serialization import atomic_write

MODEL_FILES = {"final": "model.dz", "best": "best.dz", "last": "last.dz"}

_active: "Run | None" = None


def current_run() -> "Run | None":
    """The run whose recipe is executing in this process, if any (``Model.fit`` asks)."""
    return _active


class RunError(ValueError):
    """A run folder that cannot be created, resumed or read; the message says why."""


class Run:
    """One run folder and the recipe run it records.

    Use :meth:`create` for a new run, :meth:`open` to resume or replay one, then :meth:`execute`.

    Args:
        path: the folder.
        recipe: the recipe's registered name.
        config: the resolved config (the recipe's dataclass).
        mode: "train" (record and checkpoint every fit, resuming from existing checkpoints) or
            "replay" (restore every fit from its final checkpoint and train nothing; writes nothing).
        checkpoint_every: also checkpoint every N steps inside epochs (None = at epoch ends).
    """

    def __init__(self, path: str | os.PathLike, recipe: str, config: Any, mode: str = "train",
                 checkpoint_every: int | None = None):
        if mode not in ("train", "replay"):
            raise ValueError(f"mode must be 'train' or 'replay'. Received: mode={mode!r}")
        self.path, self.recipe, self.config = Path(path), recipe, config
        self.mode, self.checkpoint_every = mode, checkpoint_every
        self.fits = 0

    # -- creating and opening ------------------------------------------------------------------------
    @classmethod
    def create(cls, recipe: str, overrides: dict[str, Any] | None = None, path: str | os.PathLike | None = None,
               checkpoint_every: int | None = None) -> "Run":
        """A new run folder (``runs/RECIPE-TIMESTAMP`` by default) with its config written; refuses to
        reuse a folder that already holds a run."""
        from deepzen.recipes import RECIPES, make_config

        config = make_config(RECIPES.get(recipe), overrides)
        if path is None:
            path = distributed.broadcast_object(default_folder(recipe))
        run = cls(path, recipe, config, checkpoint_every=checkpoint_every)
        problem = None
        if distributed.is_rank_zero():
            if (run.path / "run.json").exists():
                problem = (f"{run.path} already holds a run. Continue it with --resume {run.path}, or choose "
                           f"another --run-dir")
            else:
                run.path.mkdir(parents=True, exist_ok=True)
                run._write_config()
                run._write_json("run.json", {"recipe": recipe, "status": "created", "sessions": []})
        problem = distributed.broadcast_object(problem)  # the other processes wait for rank 0 here
        if problem:
            raise RunError(problem)
        return run

    @classmethod
    def open(cls, path: str | os.PathLike, overrides: dict[str, Any] | None = None, mode: str = "train",
             checkpoint_every: int | None = None) -> "Run":
        """An existing run: ``mode="train"`` continues it (``overrides`` may change settings such as
        ``epochs``), ``mode="replay"`` re-runs it without training."""
        from deepzen.recipes import RECIPES, make_config

        path = Path(path)
        saved = read_json(path / "config.json", "the run's config")
        recipe = RECIPES.get(saved["recipe"])
        if mode == "replay" and not (path / "checkpoint.ckpt").is_file():
            if recipe.replay_file is None:
                raise RunError(f"{path} has no checkpoint.ckpt: a replay restores what Model.fit trained, and this "
                               f"run either never finished an epoch or its recipe trains with its own loop")
            if not (path / recipe.replay_file).is_file():
                raise RunError(f"{path} has no {recipe.replay_file}: a replay of {recipe.name} loads what its "
                               f"training saved there, and this run has not finished")
        config = make_config(recipe, {**saved["config"], **(overrides or {})})
        run = cls(path, saved["recipe"], config, mode=mode, checkpoint_every=checkpoint_every)
        if mode == "train" and distributed.is_rank_zero():
            for leftover in path.glob(".*.tmp"):  # temporary files of writes a crash interrupted
                leftover.unlink(missing_ok=True)
            if overrides:
                run._write_config()
        distributed.barrier()
        return run

    # -- running -------------------------------------------------------------------------------------
    def execute(self) -> dict[str, Any]:
        """Runs the recipe with this run active and returns its metrics (written to metrics.json).

        The status in run.json follows: running, then completed, interrupted (Ctrl-C) or failed.
        """
        global _active
        from deepzen.recipes import RECIPES

        recipe = RECIPES.get(self.recipe)
        writes = self.mode == "train" and distributed.is_rank_zero()
        if writes:
            self._begin_session()
        with self._recipe_folder() as folder:
            _active, self.fits = self, 0
            try:
                metrics = recipe.run(self.config, folder)
            except KeyboardInterrupt:
                if writes:
                    self._end_session("interrupted")
                raise
            except BaseException as error:
                if writes:
                    self._end_session("failed", f"{type(error).__name__}: {error}")
                raise
            finally:
                _active = None
        if writes:
            self._write_json("metrics.json", _json_ready(metrics))
            self._end_session("completed")
        return metrics

    @contextlib.contextmanager
    def _recipe_folder(self) -> Iterator[Path]:
        """Where the recipe writes: the run folder, or a scratch folder for a replay and for ranks > 0."""
        if self.mode == "train" and distributed.is_rank_zero():
            yield self.path
            return
        scratch = Path(tempfile.mkdtemp(prefix="deepzen-scratch-"))
        try:
            yield scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def fit_callbacks(self) -> list[Callback]:
        """The callbacks the next ``fit`` of the recipe gets: the recorder (rank 0) and the checkpoint."""
        suffix = "" if self.fits == 0 else f"-{self.fits + 1}"
        self.fits += 1
        checkpoint = TrainingCheckpoint(self.path / f"checkpoint{suffix}.ckpt", every_steps=self.checkpoint_every,
                                        read_only=self.mode == "replay")
        if self.mode == "replay" or not distributed.is_rank_zero():
            return [checkpoint]
        return [RunRecorder(self.path, suffix, title=self.recipe), checkpoint]  # the checkpoint saves the recorder

    # -- files ---------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return read_json(self.path / "run.json", "the run's status")

    def _write_json(self, name: str, value: Any) -> None:
        text = json.dumps(value, indent=2) + "\n"
        atomic_write(self.path / name, lambda file: file.write(text.encode()))

    def _write_config(self) -> None:
        values = dataclasses.asdict(self.config)
        self._write_json("config.json", {"recipe": self.recipe, "config": values})
        text = (f"# deepzen train {self.recipe} --config {self.path / 'config.toml'}\n" + to_toml(values))
        atomic_write(self.path / "config.toml", lambda file: file.write(text.encode()))

    def _begin_session(self) -> None:
        info = self.info()
        session = environment(self.config)
        info["status"] = "running"
        info["sessions"].append({"started": session["started"], "command": session["command"]})
        self._write_json("run.json", info)
        sessions = []
        if (self.path / "environment.json").is_file():
            sessions = read_json(self.path / "environment.json", "the environment")["sessions"]
        self._write_json("environment.json", {"sessions": [*sessions, session]})

    def _end_session(self, status: str, error: str | None = None) -> None:
        info = self.info()
        info["status"] = status
        info["sessions"][-1].update({"ended": time.strftime("%Y-%m-%dT%H:%M:%S"), "status": status})
        if error:
            info["sessions"][-1]["error"] = error
        self._write_json("run.json", info)


class RunRecorder(Callback):
    """Writes a fit's per-epoch logs (history.csv and .json), ``last.dz``/``best.dz`` and the curves PNG.

    The history files are rewritten whole from the History at each epoch end, so a resumed fit (whose
    History the checkpoint restores) continues them without gaps or duplicates.

    Args:
        folder: the run folder.
        suffix: appended to the file names ("" for the first fit, "-2" for the second ...).
        title: the curves' title.
    """

    def __init__(self, folder: str | os.PathLike, suffix: str = "", title: str | None = None):
        self.folder, self.suffix, self.title = Path(folder), suffix, title
        self.best = math.inf

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]

    def _file(self, stem: str, extension: str) -> Path:
        return self.folder / f"{stem}{self.suffix}.{extension}"

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        records = self.model.history
        keys = list(records.history)
        table = {"epoch": [e + 1 for e in records.epoch], **records.history}
        json_text = json.dumps(table, indent=2) + "\n"
        atomic_write(self._file("history", "json"), lambda file: file.write(json_text.encode()))
        rows = io.StringIO()
        writer = csv.writer(rows)
        writer.writerow(["epoch", *keys])
        for index, number in enumerate(table["epoch"]):
            columns = (records.history[key] for key in keys)  # a key that appeared late has fewer values
            writer.writerow([number, *(values[index] if index < len(values) else "" for values in columns)])
        atomic_write(self._file("history", "csv"), lambda file: file.write(rows.getvalue().encode()))
        self.model.save(self._file("last", "dz"))
        monitored = logs.get("val_loss", logs.get("loss"))
        if monitored is not None and monitored < self.best:
            self.best = monitored
            self.model.save(self._file("best", "dz"))

    def on_train_end(self, logs=None):
        from deepzen.training.plots import plot_history

        if self.model.history.history:
            plot_history(self.model.history, self._file("training_curves", "png"), title=self.title)


# -- helpers -----------------------------------------------------------------------------------------------
def model_file(run_dir: str | os.PathLike, which: str = "auto") -> Path:
    """A run's model file: "final" (the recipe's model.dz), "best", "last", or "auto" (the first present)."""
    if which != "auto" and which not in MODEL_FILES:
        raise ValueError(f"Expected which to be 'auto' or one of {', '.join(MODEL_FILES)}. Received: {which!r}")
    run_dir = Path(run_dir)
    names = list(MODEL_FILES.values()) if which == "auto" else [MODEL_FILES[which]]
    for name in names:
        if (run_dir / name).is_file():
            return run_dir / name
    raise RunError(f"{run_dir} has no model file ({' or '.join(names)}). Is it a run folder whose training "
                   f"finished an epoch?")


def environment(config: Any = None) -> dict[str, Any]:
    """Versions, device, processes, seed, command and host of this session."""
    import deepzen
    from deepzen.runtime import default_device

    device = default_device()
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": sys.argv,
        "deepzen": deepzen.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "host": platform.node(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "processes": distributed.world_size(),
        "seed": getattr(config, "seed", None),
    }


def read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise RunError(f"{path.parent} is not a deepzen run folder (no {path.name} with {what})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RunError(f"{path} is not valid JSON: {error}") from error


def load_toml_config(path: str | os.PathLike) -> dict[str, Any]:
    """The settings in a TOML file (top-level keys = config fields, as in a run's config.toml)."""
    import tomllib

    try:
        with open(path, "rb") as file:
            values = tomllib.load(file)
    except FileNotFoundError:
        raise RunError(f"No config file at {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise RunError(f"{path} is not valid TOML: {error}") from error
    tables = [key for key, value in values.items() if isinstance(value, dict)]
    if tables:
        raise RunError(f"{path}: expected top-level settings (key = value). Received tables: {', '.join(tables)}")
    return values


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def to_toml(values: dict[str, Any]) -> str:
    """Flat settings as TOML (None has no TOML spelling: such keys become comments)."""
    lines = []
    for key, value in values.items():
        name = key if _BARE_KEY.match(key) else json.dumps(key)
        lines.append(f"# {name} is not set" if value is None else f"{name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"Cannot write {type(value).__name__} to TOML: {value!r}")


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, (np.generic, torch.Tensor)):
        return value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def default_folder(recipe: str) -> Path:
    """``runs/RECIPE-YYYYmmdd-HHMMSS`` (with a number appended if taken)."""
    return fresh_folder(Path("runs") / f"{recipe}-{time.strftime('%Y%m%d-%H%M%S')}")


def fresh_folder(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``... the first that does not exist."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}-{number}")
    return candidate
