"""Experiments: the claims of introductory deep-learning material, measured on real data and drawn.

Each experiment trains its variants side by side (MNIST from ``$DEEPZEN_DATA``; the embedded 8x8
digits when MNIST is missing), writes a run folder with PNG plots, ``report.md`` (a table of the
measured numbers and a finding computed from them) and ``results.json``, and returns an
:class:`~deepzen.experiments.report.ExperimentResult`::

    from deepzen.experiments import run_experiment
    result = run_experiment("initialization", "runs/initialization", epochs=2)
    print(result.finding)

or from the shell: ``deepzen experiment initialization --set epochs=2``.

==================  ==========================================================================
initialization      zeros vs N(0, 0.01) vs Glorot vs He in a 10-layer MLP
activations         sigmoid / tanh / ReLU / GELU in 5- and 20-layer MLPs: per-layer gradients
optimizers          SGD ... AdamW on one model: loss against steps and against wall time
regularization      none / L1 / L2 / dropout / augmentation / early stopping on 1,000 images
batchnorm           a CNN with and without batch normalization, small and large learning rate
residual            plain vs residual CNNs of depth 8, 20 and 56: training error against depth
augmentation        what each augmentation does to digits, and what it buys on a small subset
==================  ==========================================================================

Every experiment is deterministic under its ``seed`` (wall times aside) and its sizes are options.
Every variant trains with ``Model.fit`` (:func:`deepzen.experiments.common.train`), measured by
callbacks: the experiments keep no training loop of their own.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import time
from pathlib import Path
from typing import Any, Callable

from deepzen._registry import Registry
from deepzen.experiments.report import ExperimentResult
from deepzen.recipes import parse_overrides, parse_value



class _Experiment:
    """The ``run`` function of ``deepzen.experiments.<module>``, imported on first use, so that listing
    the experiments (the command line's parser) does not import torch."""

    def __init__(self, module: str):
        self.module = module

    @property
    def function(self) -> Callable[..., ExperimentResult]:
        return importlib.import_module(f"deepzen.experiments.{self.module}").run

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self.function)

    @property
    def __doc__(self) -> str | None:
        return self.function.__doc__

    def __call__(self, run_dir: str | Path, **options: Any) -> ExperimentResult:
        return self.function(run_dir, **options)


EXPERIMENTS: Registry[Callable[..., ExperimentResult]] = Registry("experiment")
for _name in ("initialization", "activations", "optimizers", "regularization", "batchnorm", "residual",
              "augmentation"):
    EXPERIMENTS.register(_name, _Experiment(_name))


def experiment_options(name: str) -> dict[str, Any]:
    """The options of an experiment and their defaults (the keyword arguments of its function)."""
    parameters = inspect.signature(EXPERIMENTS.get(name)).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def run_experiment(name: str, run_dir: str | Path, **options: Any) -> ExperimentResult:
    """Runs experiment ``name`` into ``run_dir`` (created) and returns its result.

    Args:
        name: one of ``EXPERIMENTS.names()``.
        run_dir: the run folder for ``report.md``, ``results.json`` and the figures.
        **options: the experiment's options (see :func:`experiment_options`), e.g. ``epochs=2``.

    Raises:
        ValueError: for an unknown experiment or option (the message lists the valid ones).
    """
    valid = experiment_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"Experiment {name!r} has no option {', '.join(map(repr, unknown))}. "
                         f"Expected some of: {', '.join(valid)}")
    return EXPERIMENTS.get(name)(run_dir, **options)


# -- the `deepzen experiment` command ------------------------------------------------------------------
def parse_option(text: str, default: Any) -> Any:
    """The value of ``--set key=text`` for an option whose default is ``default``.

    A Python literal (``3``, ``0.1``, ``(8, 20)``, ``{'sgd': 0.1}``, ``None``) is taken as written, so
    tuples of numbers and dicts work, and a single value for a tuple option becomes a 1-tuple. Other
    text is read as a recipe's settings are (:func:`deepzen.recipes.parse_value`): ``true``/``false``
    (also ``yes``/``no``, ``1``/``0``) for a bool option, comma-separated words for a tuple option
    (``sgd,adam``), a plain string for a string option (``mnist``); text that is no number for a
    number option raises a ValueError.
    """
    if isinstance(default, bool):
        return parse_value(text, default)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return parse_value(text, default)
    if isinstance(default, (list, tuple)) and not isinstance(value, (list, tuple)):
        return (value,)
    return value


def command_experiment(args: argparse.Namespace) -> int:
    """Runs ``deepzen experiment NAME``: prints where the report is and the finding."""
    defaults = experiment_options(args.name)
    if args.options:
        for key, value in defaults.items():
            print(f"{key} = {value!r}")
        return 0
    options = {key: parse_option(text.strip(), defaults.get(key)) for key, text in parse_overrides(args.set).items()}
    run_dir = Path(args.run_dir or f"runs/experiment-{args.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    result = run_experiment(args.name, run_dir, **options)
    print(f"\n{result.title}\n\n{result.finding}\n\nReport: {result.report_path}")
    return 0


def add_experiment_command(subparsers) -> argparse.ArgumentParser:
    """Adds ``experiment NAME [--set KEY=VALUE ...] [--run-dir DIR] [--options]`` to a ``deepzen``
    sub-command table (``parser.add_subparsers()``); its handler is ``args.handler``."""
    names = EXPERIMENTS.names()
    parser = subparsers.add_parser(
        "experiment", help="measure a textbook claim (initialization, optimizers, ...) and report it",
        description="Train the variants of an experiment side by side and write a run folder with PNG plots "
                    "and report.md: a table of the measured numbers and a finding computed from them. "
                    f"Experiments: {', '.join(names)}.")
    parser.add_argument("name", choices=names, metavar="NAME", help=f"one of: {', '.join(names)}")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an option, e.g. --set epochs=2 --set dataset=digits (see --options)")
    parser.add_argument("--run-dir", help="the run folder (default: runs/experiment-NAME-TIMESTAMP)")
    parser.add_argument("--options", action="store_true", help="list the experiment's options and defaults")
    parser.set_defaults(handler=command_experiment)
    return parser


