"""Recipes: a name -> a whole task (data, model, training, evaluation, report) with a default config.

A recipe is a function ``run(config, run_dir) -> metrics`` registered with its config dataclass.
The command line, the benchmarks and the tests run the same recipe by name with overrides::

    metrics = run_recipe("digits-cnn", {"epochs": 3}, run_dir="runs/demo")
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from deepzen._registry import Registry


@dataclass(frozen=True)
class Recipe:
    name: str
    run: Callable[[Any, Path], dict[str, float]]
    config: type  # a dataclass whose defaults are the recipe's default settings
    description: str


RECIPES: Registry[Recipe] = Registry("recipe")


def register_recipe(name: str, config: type, description: str) -> Callable:
    """Decorator registering ``fn(config, run_dir) -> metrics`` under ``name``."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"Recipe {name!r}: config must be a dataclass. Received: {config!r}")

    def add(fn: Callable) -> Callable:
        RECIPES.register(name, Recipe(name, fn, config, description))
        return fn

    return add


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
            raise ValueError(f"Recipe {recipe.name!r} has no setting {key!r}. Expected one of: {', '.join(sorted(fields))}")
        current = getattr(config, key)
        try:
            changes[key] = parse_value(value, current) if isinstance(value, str) and not isinstance(current, str) \
                else value
        except ValueError as error:
            raise ValueError(f"Recipe {recipe.name!r}: bad value for {key}: {error}") from error
    return dataclasses.replace(config, **changes)


def run_recipe(name: str, overrides: dict[str, Any] | None = None, run_dir: str | Path = "runs/latest") -> dict:
    """Runs a registered recipe and returns its metrics; outputs go to ``run_dir``."""
    recipe = RECIPES.get(name)
    config = make_config(recipe, overrides)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return recipe.run(config, run_dir)
