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
    tensorboard/        with ``deepzen train --tensorboard``: the fits' TensorBoard logs (train/, validation/)

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
from deepzen.training.callbacks import Callback, add_fit_callback_provider
from deepzen.training.checkpoint import CheckpointError, TrainingCheckpoint, checkpoint_position
from deepzen.training.serialization import ModelFileError, atomic_write
from deepzen.training.tensorboard import TensorBoard

MODEL_FILES = {"final": "model.dz", "best": "best.dz", "last": "last.dz"}

_active: "Run | None" = None


def current_run() -> "Run | None":
    """The run whose recipe is executing in this process, if any."""
    return _active


def _active_run_callbacks() -> list[Callback]:
    return _active.fit_callbacks() if _active is not None else []


add_fit_callback_provider(_active_run_callbacks)  # Model.fit records and checkpoints in the active run


@contextlib.contextmanager
def unrecorded() -> Iterator[None]:
    """Fits inside the block are neither recorded nor checkpointed by the active run: for a recipe's helper
    model that it caches itself (e.g. a classifier that judges samples), so that the run's own fits keep
    their numbers, and their checkpoints, whether the helper trains in this session or is loaded."""
    global _active
    previous, _active = _active, None
    try:
        yield
    finally:
        _active = previous


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
        self.changed: dict[str, Any] = {}  # settings that differ from config.json (written once accepted)
        self.resuming = ""  # where a resumed run continues, in words (set by open)
        self.restarted = False
        self.accepted = False  # this session's settings were accepted: a fit trains with them (or started over)
        self.tensorboard = False  # every fit also logs for TensorBoard into tensorboard/ (deepzen train --tensorboard)

    # -- creating and opening ------------------------------------------------------------------------
    @classmethod
    def create(cls, recipe: str, overrides: dict[str, Any] | None = None, path: str | os.PathLike | None = None,
               checkpoint_every: int | None = None) -> "Run":
        """A new run folder (``runs/RECIPE-TIMESTAMP`` by default) with its config written. A folder whose
        run never started training (it failed before its first fit) is taken over; one whose run trained
        is refused with a message naming ``--resume`` and ``--restart``."""
        from deepzen.recipes import RECIPES, make_config

        config = make_config(RECIPES.get(recipe), overrides)
        if path is None:
            path = distributed.broadcast_object(default_folder(recipe))
        run = cls(path, recipe, config, checkpoint_every=checkpoint_every)
        problem = None
        if distributed.is_rank_zero():
            sessions: list = []
            if (run.path / "run.json").exists():
                try:
                    sessions = run._untrained_sessions()
                except RunError as error:
                    problem = str(error)
            if problem is None:
                run.path.mkdir(parents=True, exist_ok=True)
                run._write_config()
                # the earlier attempts that never trained stay on record; their folder is this run's now
                run._write_json("run.json", {"recipe": recipe, "status": "created", "sessions": sessions})
        problem = distributed.broadcast_object(problem)  # the other processes wait for rank 0 here
        if problem:
            raise RunError(problem)
        return run

    @classmethod
    def open(cls, path: str | os.PathLike, overrides: dict[str, Any] | None = None, mode: str = "train",
             checkpoint_every: int | None = None, restart: bool = False) -> "Run":
        """An existing run: ``mode="train"`` continues it (``overrides`` may change settings such as
        ``epochs``), ``mode="replay"`` re-runs it without training.

        A run to continue needs a readable checkpoint; ``restart=True`` starts it over in its folder instead
        (same config, plus ``overrides``), deleting what its training wrote. Overrides reach ``config.json``
        only once the resumed training has accepted them (see :attr:`resuming` for where it continues).

        Raises:
            RunError: the folder is not a run, one of its files is broken, or (without ``restart``) it has
                no usable checkpoint to continue from.
        """
        from deepzen.recipes import make_config

        path = Path(path)
        recipe, saved = read_run_config(path)
        if mode == "replay" and not (path / "checkpoint.ckpt").is_file():
            if recipe.replay_file is None:
                raise RunError(f"{path} has no checkpoint.ckpt: a replay restores what Model.fit trained, and this "
                               f"run either never finished an epoch or its recipe trains with its own loop")
            if not (path / recipe.replay_file).is_file():
                raise RunError(f"{path} has no {recipe.replay_file}: a replay of {recipe.name} loads what its "
                               f"training saved there, and this run has not finished")
        config = make_config(recipe, {**saved, **(overrides or {})})
        run = cls(path, recipe.name, config, mode=mode, checkpoint_every=checkpoint_every)
        if mode == "replay":
            return run
        run.changed = {key: value for key, value in dataclasses.asdict(config).items() if saved.get(key) != value}
        outcome: tuple[str | None, str] = (None, "")
        if distributed.is_rank_zero():
            for leftover in path.glob(".*.tmp"):  # temporary files of writes a crash interrupted
                leftover.unlink(missing_ok=True)
            try:
                if restart:
                    run._clear_training()
                    outcome = (None, "from the start (--restart: its checkpoints, histories and models were deleted)")
                else:
                    outcome = (None, run._resume_point())
            except RunError as error:
                outcome = (str(error), "")
        problem, run.resuming = distributed.broadcast_object(outcome)  # the other processes wait for rank 0 here
        if problem:
            raise RunError(problem)
        run.restarted = restart
        return run

    # -- running -------------------------------------------------------------------------------------
    def execute(self) -> dict[str, Any]:
        """Runs the recipe with this run active and returns its metrics (written to metrics.json).

        The status in run.json follows: running, then completed, interrupted (Ctrl-C) or failed. A resumed
        session whose checkpoint refused its settings (another batch size inside an epoch, a damaged file)
        is recorded as "refused" and leaves the run's status and config as they were.
        """
        global _active
        from deepzen.recipes import RECIPES

        recipe = RECIPES.get(self.recipe)
        writes = self.mode == "train" and distributed.is_rank_zero()
        previous_status = self._begin_session() if writes else None
        if self.restarted:
            self._accept()  # starting over: there is no checkpoint to refuse the settings
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
                    refused = not self.accepted and _is_refusal(error)
                    self._end_session("refused" if refused else "failed", f"{type(error).__name__}: {error}",
                                      run_status=previous_status if refused else None)
                raise
            finally:
                _active = None
        self._accept()  # every fit was restored finished: the recipe's later steps took the settings
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
        """The callbacks the next ``fit`` of the recipe gets: the recorder (rank 0), the checkpoint, and
        the one that accepts this session's settings once the checkpoint has let the fit go on."""
        suffix = "" if self.fits == 0 else f"-{self.fits + 1}"
        self.fits += 1
        checkpoint = TrainingCheckpoint(self.path / f"checkpoint{suffix}.ckpt", every_steps=self.checkpoint_every,
                                        read_only=self.mode == "replay")
        if self.mode == "replay" or not distributed.is_rank_zero():
            return [checkpoint]
        logs = [TensorBoard(self.path / f"tensorboard{suffix}")] if self.tensorboard else []
        return [RunRecorder(self.path, suffix, title=self.recipe), *logs, checkpoint, _AcceptSettings(self)]

    def _accept(self) -> None:
        """This session's settings are in use: writes the changed ones to config.json and run.json (once)."""
        if self.accepted:
            return
        self.accepted = True
        if self.mode != "train" or not distributed.is_rank_zero() or not self.changed:
            return
        self._write_config()
        info = self.info()
        info["sessions"][-1]["changed"] = _json_ready(self.changed)
        self._write_json("run.json", info)

    def _untrained_sessions(self) -> list:
        """The sessions of the run already in this folder when it never started training (it failed, was
        refused or interrupted before its first fit wrote anything), so a new run may take the folder over.

        Raises:
            RunError: the folder holds a run that trained, is running, or whose run.json is unreadable; the
                message says how to continue it, train it again, or use another folder.
        """
        how = (f"Continue it with: deepzen train --resume {self.path}; train it again from the start, with its "
               f"config: deepzen train --resume {self.path} --restart; or choose another --run-dir")
        try:
            info = self.info()
        except RunError as error:
            raise RunError(f"{self.path} already holds a run whose status cannot be read ({error}). Choose another "
                           f"--run-dir") from None
        trained = sorted(file.name for file in self.path.iterdir() if _TRAINING_FILE.match(file.name))
        if info["status"] in ("created", "failed", "refused", "interrupted") and not trained:
            return info["sessions"]
        state = f"it trained ({', '.join(trained)})" if trained else f"its status is {info['status']!r}"
        raise RunError(f"{self.path} already holds a run: {state}. {how}")

    # -- resuming ------------------------------------------------------------------------------------
    def _resume_point(self) -> str:
        """Where the resumed training continues, in words; a RunError when there is nothing to continue from."""
        from deepzen.recipes import RECIPES

        restart = f"deepzen train --resume {self.path} --restart"
        checkpoints = sorted(self.path.glob("checkpoint*.ckpt"), key=_fit_number)
        if not checkpoints or checkpoints[0].name != "checkpoint.ckpt":
            info = self.info()
            if not info["sessions"]:
                return "from the start: it has not trained yet"
            if RECIPES.get(self.recipe).replay_file is not None:
                reason = (f"{self.recipe} trains with its own loop, which saves no checkpoint, so resuming it would "
                          f"train it all again")
            elif (self.path / "history.csv").is_file():
                reason = ("checkpoint.ckpt is missing, though history.csv records finished epochs: it was deleted "
                          "or moved. Put it back to continue")
            else:
                reason = (f"its training stopped ({info['status']}) before its first checkpoint, which is saved at "
                          f"the end of epoch 1 (or every --checkpoint-every steps)")
            raise RunError(f"{self.path} has no checkpoint to continue from: {reason}. To train it again from the "
                           f"start in this folder, with its config: {restart}")
        positions = []
        for file in checkpoints:
            try:
                positions.append(checkpoint_position(file))
            except ModelFileError as error:
                raise RunError(f"{file} cannot be resumed from: {error}. Put back an intact copy, or train the run "
                               f"again from the start in this folder, with its config: {restart}") from None
        where, fit = positions[-1], _fit_number(checkpoints[-1])
        prefix = "" if fit == 1 else f"in its fit {fit} "
        if not where["finished"]:
            return f"{prefix}from epoch {where['epoch'] + 1}, step {where['step']}"
        if where["stopped"]:
            return (f"{prefix}after its training, which a callback stopped after epoch {where['epoch']}: only the "
                    f"recipe's steps after training run again")
        epochs = getattr(self.config, "epochs", None)
        if fit == 1 and isinstance(epochs, int) and epochs > where["epoch"]:
            return f"after epoch {where['epoch']}: continuing to epoch {epochs}"
        return (f"{prefix}after its finished training ({where['epoch']} epochs): only the recipe's steps after "
                f"training run again")

    def _clear_training(self) -> None:
        """Deletes what training wrote (checkpoints, histories, curves, models, metrics), so the run starts over."""
        from deepzen.recipes import RECIPES

        replay_file = RECIPES.get(self.recipe).replay_file
        for file in self.path.iterdir():
            if _TRAINING_FILE.match(file.name) or file.name == replay_file:
                file.unlink()

    # -- files ---------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """run.json: ``{"recipe", "status", "sessions": [...]}``."""
        path = self.path / "run.json"
        info = read_json(path, "the run's status")
        if not (isinstance(info, dict) and isinstance(info.get("status"), str) and isinstance(info.get("sessions"), list)
                and all(isinstance(session, dict) for session in info["sessions"])):
            raise RunError(f"{path} is not a run status: expected {{\"status\": ..., \"sessions\": [{{...}}, ...]}}")
        return info

    def _write_json(self, name: str, value: Any) -> None:
        text = json.dumps(value, indent=2) + "\n"
        atomic_write(self.path / name, lambda file: file.write(text.encode()))

    def _write_config(self) -> None:
        values = dataclasses.asdict(self.config)
        self._write_json("config.json", {"recipe": self.recipe, "config": values})
        text = (f"# deepzen train {self.recipe} --config {self.path / 'config.toml'}\n" + to_toml(values))
        atomic_write(self.path / "config.toml", lambda file: file.write(text.encode()))

    def _begin_session(self) -> str:
        """Records a new session in run.json and environment.json; returns the run's status before it."""
        info = self.info()
        previous = info["status"]
        session = environment(self.config)
        info["status"] = "running"
        info["sessions"].append({"started": session["started"], "command": session["command"],
                                 **({"restart": True} if self.restarted else {})})
        self._write_json("run.json", info)
        sessions = []
        file = self.path / "environment.json"
        if file.is_file():
            sessions = read_json(file, "the environment")
            sessions = sessions.get("sessions") if isinstance(sessions, dict) else None
            if not isinstance(sessions, list):
                raise RunError(f"{file} is not an environment record: expected {{\"sessions\": [...]}}")
        self._write_json("environment.json", {"sessions": [*sessions, session]})
        return previous

    def _end_session(self, status: str, error: str | None = None, run_status: str | None = None) -> None:
        info = self.info()
        info["status"] = run_status or status
        info["sessions"][-1].update({"ended": time.strftime("%Y-%m-%dT%H:%M:%S"), "status": status})
        if error:
            info["sessions"][-1]["error"] = error
        self._write_json("run.json", info)


class _AcceptSettings(Callback):
    """Once the checkpoint has restored the fit (or found none) and the fit begins an epoch, the session's
    settings are accepted and written (:meth:`Run._accept`); a fit that has nothing left to train accepts none."""

    def __init__(self, run: Run):
        self.run = run

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.model.fit_state.initial_epoch:
            self.run._accept()


def _is_refusal(error: BaseException) -> bool:
    """Whether ``error`` (or what it wraps) is a checkpoint refusing to continue: nothing was trained."""
    while error is not None:
        if isinstance(error, (CheckpointError, ModelFileError)):
            return True
        error = error.__cause__
    return False


def _fit_number(checkpoint: Path) -> int:
    """1 for checkpoint.ckpt, N for checkpoint-N.ckpt."""
    _, _, number = checkpoint.stem.partition("-")
    return int(number) if number.isdigit() else 1


# what a run's training writes, for each fit (suffix -N from the second fit on): deleted by --restart
_TRAINING_FILE = re.compile(r"^(checkpoint(-\d+)?\.ckpt|history(-\d+)?\.(csv|json)|training_curves(-\d+)?\.png"
                            r"|(best|last)(-\d+)?\.dz|model\.dz|metrics\.json)$")


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
    """The JSON value in a run folder's file; a RunError naming the file when it is missing or not JSON."""
    if not path.is_file():
        raise RunError(f"{path.parent} is not a deepzen run folder (no {path.name} with {what})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError, OSError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise RunError(f"{path} is not valid JSON with {what}: {reason}") from None


def read_run_config(run_dir: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """The recipe and the saved settings of a run (its config.json), each setting checked against the type of
    the recipe's default; a RunError naming the file and the setting when anything does not fit."""
    from deepzen.recipes import RECIPES

    path = Path(run_dir) / "config.json"
    saved = read_json(path, "the run's config")
    if not (isinstance(saved, dict) and isinstance(saved.get("recipe"), str) and isinstance(saved.get("config"), dict)):
        raise RunError(f"{path} is not a run config: expected {{\"recipe\": NAME, \"config\": {{...}}}}")
    try:
        recipe = RECIPES.get(saved["recipe"])
    except ValueError as error:
        raise RunError(f"{path}: {error}") from None
    defaults = dataclasses.asdict(recipe.config())
    for key, value in saved["config"].items():
        if key not in defaults:
            raise RunError(f"{path}: recipe {recipe.name!r} has no setting {key!r}")
        if not _same_kind(value, defaults[key]):
            raise RunError(f"{path}: setting {key} expects a value like {defaults[key]!r}. Received: {value!r}")
    return recipe, saved["config"]


def _same_kind(value: Any, default: Any) -> bool:
    """Whether a setting read from JSON has the type of the recipe's default (None defaults take anything)."""
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, list)
    return isinstance(value, type(default))


def run_recipe_name(run_dir: str | os.PathLike) -> str | None:
    """The recipe named in a run folder's config.json; None when the folder has none (a bare model folder)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        return None
    saved = read_json(path, "the run's config")
    if not isinstance(saved, dict) or not isinstance(saved.get("recipe"), str):
        raise RunError(f"{path} is not a run config: expected {{\"recipe\": NAME, \"config\": {{...}}}}")
    return saved["recipe"]


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
