"""Recipes: a name -> a whole task (data, model, training, evaluation, report) with a default config.

A recipe is a function ``run(config, run_dir) -> metrics`` registered with its config dataclass.
The command line, the benchmarks and the tests run the same recipe by name with overrides::

    metrics = run_recipe("digits-cnn", {"epochs": 3}, run_dir="runs/demo")

A recipe may also register a *predictor*, ``predictor(run_dir, inputs, top) -> results``, that
``deepzen predict RUN INPUT...`` calls on raw inputs (text lines, user ids) with what the recipe
left in the run folder; each result is a dict with the ``"input"`` and the prediction's fields::

    predict = RECIPES.get("sst2-textcnn").predictor
    predict(Path("runs/sst2"), ["a fine film"], None)
    # [{"input": "a fine film", "label": "positive", "probability": 0.93, "top": [...]}]

A recipe that predicts on image files (detection, segmentation) also registers an *image predictor*,
``image_predictor(run_dir, pictures, top) -> results``, on decoded Pillow images: ``deepzen serve``
calls it on uploaded images, so that no client can name a file on the server.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import re
import textwrap
import tokenize
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from deepzen._registry import Registry


# predictor(run_dir, inputs, top) -> one dict per input; top=None means the predictor's own default
Predictor = Callable[[Path, list[str], int | None], list[dict[str, Any]]]
# image_predictor(run_dir, pictures, top) -> one dict per Pillow image, without "input"
ImagePredictor = Callable[[Path, list[Any], int | None], list[dict[str, Any]]]


@dataclass(frozen=True)
class Recipe:
    name: str
    run: Callable[[Any, Path], dict[str, float]]
    config: type  # a dataclass whose defaults are the recipe's default settings
    description: str
    predictor: Predictor | None = None  # raw-input prediction for `deepzen predict` (None: arrays/images only)
    image_predictor: ImagePredictor | None = None  # the predictor of image-file recipes on decoded images
    replay_file: str | None = None  # what `deepzen evaluate` loads when the recipe trains with its own loop
    dataset: str = ""  # the data it trains on by default, for `deepzen list --long`
    target: str = ""  # the result it is expected to reach there (the metric and its threshold)


RECIPES: Registry[Recipe] = Registry("recipe")


def register_recipe(name: str, config: type, description: str, predictor: Predictor | None = None,
                    replay_file: str | None = None, *, image_predictor: ImagePredictor | None = None,
                    dataset: str = "", target: str = "") -> Callable:
    """Decorator registering ``fn(config, run_dir) -> metrics`` under ``name``.

    Args:
        name: the recipe's name on the command line.
        config: the settings dataclass; its defaults are the recipe's defaults.
        description: one line for ``deepzen list``.
        predictor: optional ``predictor(run_dir, inputs, top) -> [{"input": ..., ...}, ...]`` that
            predicts on raw input strings (text lines, user ids) from what the recipe saved in
            ``run_dir``; ``top`` is how many classes / items to list (None: the predictor's default).
            Bad inputs raise ``ValueError`` with a message naming the input and what was expected.
            ``deepzen serve`` passes it what clients send, so it must not read files: a recipe whose
            predictor reads image files gives ``image_predictor`` too.
        replay_file: for a recipe that trains with its own loop rather than ``Model.fit``: the file in
            the run folder it loads, instead of training, when ``deepzen evaluate`` replays the run
            (the recipe asks :func:`deepzen.runs.current_run` whether it is replaying).
        dataset: the dataset it trains on by default (``deepzen list --long``).
        target: the result it is expected to reach there, e.g. "test accuracy >= 99.0%" (``deepzen list --long``).
        image_predictor: for a predictor on image files: ``image_predictor(run_dir, pictures, top)``, the
            same prediction on decoded Pillow images, one dict per image without ``"input"`` and
            writing no file; ``deepzen serve`` answers uploaded images with it.
    """
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"Recipe {name!r}: config must be a dataclass. Received: {config!r}")
    for role, function in (("predictor", predictor), ("image_predictor", image_predictor)):
        if function is not None and not callable(function):
            raise TypeError(f"Recipe {name!r}: {role} must be callable. Received: {function!r}")
    if image_predictor is not None and predictor is None:
        raise TypeError(f"Recipe {name!r}: an image_predictor goes with the predictor on image files it serves")

    def add(fn: Callable) -> Callable:
        RECIPES.register(name, Recipe(name, fn, config, description, predictor, image_predictor, replay_file, dataset,
                                      target))
        return fn

    return add


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """``["epochs=3", "lr=0.1"]`` (the command line's ``--set`` pairs) -> ``{"epochs": "3", "lr": "0.1"}``."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value. Received: {pair!r}")
        overrides[key.strip()] = value
    return overrides


def parse_value(text: str, current: Any) -> Any:
    """Converts a ``--set key=value`` string to the type of the field's current value."""
    if isinstance(current, bool):
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"Expected true or false. Received: {text!r}")
        return lowered in ("true", "1", "yes")
    if isinstance(current, int):
        return int(text)
    if isinstance(current, float):
        return float(text)
    if isinstance(current, (list, tuple)):
        items = json.loads(text) if text.strip().startswith("[") else [t for t in text.split(",") if t]
        return type(current)(items)
    if current is None:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def make_config(recipe: Recipe, overrides: dict[str, Any] | None = None) -> Any:
    """The recipe's default config with ``overrides`` applied (strings are converted to the field types)."""
    config = recipe.config()
    fields = {f.name for f in dataclasses.fields(config)}
    changes = {}
    for key, value in (overrides or {}).items():
        if key not in fields:
            raise ValueError(f"Recipe {recipe.name!r} has no setting {key!r}. Expected one of: {', '.join(sorted(fields))} "
                             f"(each explained by: deepzen train {recipe.name} --help)")
        current = getattr(config, key)
        try:
            changes[key] = parse_value(value, current) if isinstance(value, str) and not isinstance(current, str) \
                else value
        except ValueError as error:
            raise ValueError(f"Recipe {recipe.name!r}: bad value for {key}: {error}") from error
    return dataclasses.replace(config, **changes)


def run_config(run_dir: str | Path) -> tuple[Recipe, Any]:
    """The recipe and the resolved config of the run in ``run_dir`` (read from its ``config.json``).

    Predictors use it to rebuild the run's model with the settings it was trained with.
    """
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no config.json: expected a run folder written by `deepzen train`")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        name, values = saved["recipe"], saved["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a run config (expected the keys recipe and config): {error}") from error
    recipe = RECIPES.get(name)
    return recipe, make_config(recipe, values)


def run_file(run_dir: str | Path, name: str, what: str) -> Path:
    """``run_dir / name`` if it exists, else a FileNotFoundError naming the file and ``what`` it holds."""
    path = Path(run_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no {name} ({what}): expected the folder of a finished run of a "
                                f"recipe that saves it")
    return path


def cached_load(load: Callable[..., Any], *paths: Path) -> Any:
    """``load(*paths)``, kept while the files are unchanged (same inode, size and modification time) for the
    next call with the same ``load`` (a module-level function): a predictor that loads its model on every
    call costs one load per run, not one per served batch. The last 4 loads are kept."""
    return _load_unchanged(load, paths, tuple(_identity(path) for path in paths))


@lru_cache(maxsize=4)
def _load_unchanged(load: Callable[..., Any], paths: tuple[Path, ...], identities: tuple) -> Any:
    return load(*paths)  # identities: part of the cache key only


def forget_loaded() -> None:
    """Empties :func:`cached_load`'s store: the next loads read their files again (benchmarks, tests)."""
    _load_unchanged.cache_clear()


def load_run_model(run_dir: str | Path, name: str, what: str):
    """The model file ``run_dir / name`` loaded for prediction (not compiled), once while it is unchanged
    (:func:`cached_load`); a FileNotFoundError naming the file and ``what`` it holds when it is missing."""
    return cached_load(_load_for_prediction, run_file(run_dir, name, what))


def _load_for_prediction(path: Path):
    from deepzen.training.serialization import load_model

    return load_model(path, compile=False)


def _identity(path: Path) -> tuple[str, int, int, int]:
    stat = Path(path).stat()
    return str(Path(path).resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns


def write_text(path: str | Path, text: str) -> None:
    """Writes a UTF-8 text file of a run folder atomically (a crash leaves the old file or the new one)."""
    from deepzen.training.serialization import atomic_write

    atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def run_recipe(name: str, overrides: dict[str, Any] | None = None, run_dir: str | Path = "runs/latest") -> dict:
    """Runs a registered recipe and returns its metrics; outputs go to ``run_dir``."""
    recipe = RECIPES.get(name)
    config = make_config(recipe, overrides)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return recipe.run(config, run_dir)


# -- describing the settings (`deepzen train RECIPE --help`) -----------------------------------------------
# The meaning of a setting comes from its config dataclass: the comment on the field's line
# (``epochs: int = 10  # passes over the training data``), else its entry in the class docstring's
# ``Args:`` or ``Attributes:`` section; settings every recipe shares fall back to this table.
COMMON_SETTINGS = {
    "epochs": "passes over the training data (the cap, where training stops early)",
    "batch_size": "samples per training step",
    "learning_rate": "the optimizer's step size",
    "seed": "random seed of the data split, the initial weights and the shuffling",
    "verbose": "0: silent, 1: a progress bar, 2: one line per epoch",
    "data": "the dataset's folder or your own file (empty: the recipe's dataset in $DEEPZEN_DATA)",
    "valid_data": "your own validation file, in the training file's format (empty: the dataset's split, or a "
                  "validation_split of your training file)",
    "test_data": "your own test file, in the training file's format (empty: the dataset's test split)",
    "dropout": "dropout rate",
    "label_smoothing": "share of each one-hot target spread evenly over the classes (Keras's label_smoothing)",
    "clipnorm": "clip each gradient's L2 norm to this (0: no clipping)",
    "weight_decay": "weight decay factor",
    "momentum": "SGD momentum",
    "nesterov": "Nesterov momentum",
    "min_lr_fraction": "the cosine schedule's final learning rate, as a fraction of the peak",
    "warmup_steps": "steps of linear learning-rate warmup",
    "warmup_epochs": "epochs of linear learning-rate warmup",
    "embedding_dim": "size of the word vectors",
    "min_freq": "words seen fewer times in the training data become <unk>",
    "filter_sizes": "the convolution widths (in words) of the TextCNN",
    "num_filters": "filters per width of the TextCNN",
    "model": "which network",
    "threads": "torch threads (0: torch's default)",
}
_SECTION = re.compile(r"^\s*(Args|Arguments|Attributes|Settings):\s*$")
_ENTRY = re.compile(r"^\s+([\w /]+?)\s*(?:\([^)]*\))?:\s+(.*\S)\s*$")
_FIELD = re.compile(r"^\s+(\w+)\s*:")


def setting_descriptions(config: type) -> dict[str, str]:
    """One line on each field of a recipe's config dataclass, by field name (see the comment above).

    A docstring entry ``a / b: text`` describes both ``a`` and ``b``. Fields with no description anywhere
    get none (``deepzen train RECIPE --help`` shows them without; the tests require one for every recipe).
    """
    found: dict[str, str] = {}
    for klass in reversed(config.__mro__):  # the most derived class's words win
        if not dataclasses.is_dataclass(klass):
            continue
        found.update(_docstring_entries(klass.__doc__ or ""))
        found.update(_field_comments(klass))
    names = [f.name for f in dataclasses.fields(config)]
    return {name: found.get(name) or COMMON_SETTINGS.get(name, "") for name in names}


def _docstring_entries(doc: str) -> dict[str, str]:
    entries: dict[str, str] = {}
    in_section = False
    for line in inspect.cleandoc(doc).splitlines():
        if _SECTION.match(line):
            in_section = True
            continue
        if in_section:
            match = _ENTRY.match("    " + line) if line.startswith("    ") and not line.startswith("     ") else None
            if match:
                for name in match.group(1).split("/"):
                    entries[name.strip()] = match.group(2)
            elif line and not line.startswith(" "):
                in_section = False  # the section ended
    return entries


def _field_comments(klass: type) -> dict[str, str]:
    try:
        source = inspect.getsource(klass)
    except (OSError, TypeError):  # a class made at run time has no source
        return {}
    comments = {token.start[0]: token.string.lstrip("#").strip()
                for token in tokenize.generate_tokens(io.StringIO(textwrap.dedent(source)).readline)
                if token.type == tokenize.COMMENT}
    found = {}
    for number, line in enumerate(textwrap.dedent(source).splitlines(), start=1):
        match = _FIELD.match(line)
        if match and number in comments and line.startswith("    ") and not line.startswith("     "):
            found[match.group(1)] = comments[number]
    return found


def describe_settings(recipe: Recipe) -> str:
    """The settings of ``recipe`` as ``deepzen train RECIPE --help`` prints them: name, type, default, meaning."""
    config = recipe.config()
    meanings = setting_descriptions(recipe.config)
    rows = []
    for item in dataclasses.fields(config):
        kind = item.type if isinstance(item.type, str) else getattr(item.type, "__name__", str(item.type))
        rows.append((item.name, kind, json.dumps(_jsonable(getattr(config, item.name))), meanings[item.name]))
    width = max(len(f"{name}: {kind} = {default}") for name, kind, default, _ in rows)
    lines = [f"Settings of {recipe.name} (--set KEY=VALUE, or a TOML file with --config):"]
    for name, kind, default, meaning in rows:
        head = f"{name}: {kind} = {default}"
        lines.append(f"  {head:<{width}}  {meaning}".rstrip())
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
