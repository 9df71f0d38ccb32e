"""The ``deepzen`` command: run recipes by name, list what is available, run the demo."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

# The domain verticals register their recipes when imported; the command line is where they meet.
RECIPE_MODULES = ("deepzen.vision.recipes", "deepzen.text.recipes", "deepzen.generative.recipes",
                  "deepzen.recommend.recipes", "deepzen.rl.recipes")


def load_recipes() -> None:
    for name in RECIPE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:  # a vertical that exists but fails to import is a real error
                raise


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"deepzen: --set expects key=value. Received: {pair!r}")
        overrides[key.strip()] = value
    return overrides


def command_train(args) -> int:
    from deepzen.recipes import run_recipe

    load_recipes()
    run_dir = Path(args.run_dir or f"runs/{args.recipe}-{time.strftime('%Y%m%d-%H%M%S')}")
    metrics = run_recipe(args.recipe, parse_overrides(args.set), run_dir)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    print(f"Run folder: {run_dir}")
    return 0


def command_demo(args) -> int:
    from deepzen.recipes import run_recipe

    load_recipes()
    run_dir = Path(args.run_dir)
    print("deepzen demo: a small CNN on the 8x8 digits shipped inside scikit-learn")
    metrics = run_recipe("digits-cnn", parse_overrides(args.set), run_dir)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"Test accuracy: {metrics['test_accuracy']:.2%} on {metrics['test_samples']} held-out images")
    print(f"Saved the model to {run_dir / 'model.dz'} and the training curves to {run_dir / 'training_curves.png'}")
    return 0


def command_list(args) -> int:
    from deepzen.data.paths import dataset_status
    from deepzen.recipes import RECIPES

    load_recipes()
    print("Recipes:")
    for name, recipe in RECIPES.items():
        print(f"  {name:24s} {recipe.description}")
    try:
        from deepzen.vision.models import list_models
    except ImportError:
        list_models = None
    if list_models is not None:
        print("Image models:\n  " + ", ".join(list_models()))
    print("Datasets (files under $DEEPZEN_DATA):")
    for name, present in dataset_status().items():
        print(f"  {name:24s} {'present' if present else 'missing'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepzen", description="The classic deep-learning curriculum, on PyTorch.")
    verbs = parser.add_subparsers(dest="verb", required=True)

    demo = verbs.add_parser("demo", help="train a small CNN on the embedded 8x8 digits (no download)")
    demo.add_argument("--run-dir", default="runs/demo", help="where the model, curves and metrics go")
    demo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    demo.set_defaults(handler=command_demo)

    train = verbs.add_parser("train", help="run a recipe by name")
    train.add_argument("recipe", help="a recipe name (see `deepzen list`)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    train.add_argument("--run-dir", help="the run folder (default: runs/RECIPE-TIMESTAMP)")
    train.set_defaults(handler=command_train)

    listing = verbs.add_parser("list", help="recipes, models and datasets")
    listing.set_defaults(handler=command_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"deepzen: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
