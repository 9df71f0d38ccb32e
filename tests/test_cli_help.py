"""Settings you can discover: ``deepzen train RECIPE --help`` and ``deepzen list --long``."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import pytest

from deepzen import cli
from deepzen.recipes import RECIPES, setting_descriptions


@dataclass
class _Base:
    """Shared settings.

    Args:
        alpha: the base's words for alpha.
        beta / gamma: two settings described at once.
        delta: overridden by the subclass's comment.
    """

    alpha: float = 0.5
    beta: int = 1
    gamma: int = 2
    delta: str = "x"


@dataclass
class _Derived(_Base):
    delta: str = "y"  # the subclass's comment wins
    sizes: list = field(default_factory=lambda: [3, 4])  # widths, in words
    epsilon: float = 1e-3
    epochs: int = 7


def test_descriptions_come_from_comments_docstrings_and_the_common_table():
    described = setting_descriptions(_Derived)
    assert described == {
        "alpha": "the base's words for alpha.",
        "beta": "two settings described at once.",
        "gamma": "two settings described at once.",
        "delta": "the subclass's comment wins",
        "sizes": "widths, in words",
        "epsilon": "",  # described nowhere: shown without a meaning
        "epochs": "passes over the training data (the cap, where training stops early)",
    }


def _recipes():
    """deepzen's own recipes (not those other tests register)."""
    cli.load_recipes()
    return [name for name, recipe in RECIPES.items() if recipe.run.__module__.startswith("deepzen.")]


@pytest.mark.parametrize("name", _recipes())
def test_train_recipe_help_lists_every_setting_with_type_default_and_meaning(name, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", name, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "--run-dir" in out  # the verb's own options come first
    recipe = RECIPES.get(name)
    config = recipe.config()
    rows = {line.split(":", 1)[0].strip(): line for line in out.split(f"Settings of {name}")[1].splitlines()[1:]}
    assert set(rows) == {f.name for f in dataclasses.fields(config)}
    for item in dataclasses.fields(config):
        row = rows[item.name]
        kind = item.type if isinstance(item.type, str) else item.type.__name__
        value = getattr(config, item.name)
        default = json.dumps(list(value) if isinstance(value, tuple) else value)
        head = f"{item.name}: {kind} = {default}"
        assert row.strip().startswith(head), row
        meaning = row.strip()[len(head):].strip()
        assert meaning, f"{name}: setting {item.name!r} has no description (add a comment on its line)"


def test_train_help_of_an_unknown_recipe_names_the_known_ones(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "no-such-recipe", "--help"])
    assert stop.value.code == 2
    assert "digits-cnn" in capsys.readouterr().err


def test_an_unknown_setting_points_to_the_help(capsys):
    assert cli.main(["train", "digits-cnn", "--set", "epoch=3", "--run-dir", "/nonexistent/never"]) == 2
    assert "deepzen train digits-cnn --help" in capsys.readouterr().err


def test_list_long_shows_each_recipes_dataset_and_target(capsys):
    assert cli.main(["list", "--long"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name in _recipes():
        recipe = RECIPES.get(name)
        assert recipe.dataset and recipe.target, name
        start = next(i for i, line in enumerate(lines) if line.strip().startswith(name + " "))
        assert lines[start + 1].strip() == f"dataset: {recipe.dataset}"
        assert lines[start + 2].strip() == f"target:  {recipe.target}"
    assert cli.main(["list"]) == 0
    assert "dataset:" not in capsys.readouterr().out
