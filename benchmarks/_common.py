"""Plumbing shared by the recipe benchmarks: arguments and data folder, timed recipe runs, the machine
line, the exact command, training-curve tables and the results files.

The scripts import it as ``from _common import ...`` (``python benchmarks/X.py`` puts this folder on
the path).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SHARED_DATA = HERE.parents[1] / "shared" / "data"


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Adds ``--threads`` to ``parser``, parses ``argv``, sets torch's threads, and points
    ``DEEPZEN_DATA`` at ``../shared/data`` when it is unset and that folder exists."""
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not os.environ.get("DEEPZEN_DATA") and SHARED_DATA.is_dir():
        os.environ["DEEPZEN_DATA"] = str(SHARED_DATA)
    return args


def add_budget_arguments(parser: argparse.ArgumentParser, minutes: float, models: str,
                         recipes: dict[str, str]) -> None:
    """``--minutes`` (the training-time budget of each model) and ``--models`` (keys of ``recipes``)."""
    parser.add_argument("--minutes", type=float, default=minutes, help="training-time budget per model")
    parser.add_argument("--models", default=models, help=f"comma-separated: {', '.join(recipes)}")


def command_line(script: str, argv: list[str] | None = None) -> str:
    """The command that ran ``benchmarks/<script>``, with the arguments it was given (``sys.argv`` by default)."""
    arguments = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", f"benchmarks/{script}", *arguments])


def run_timed(recipe: str, overrides: dict[str, Any], run_dir: str | Path) -> tuple[dict[str, Any], float]:
    """``(metrics, wall-clock seconds)`` of one run of a registered recipe."""
    from deepzen.recipes import run_recipe

    start = time.perf_counter()
    metrics = run_recipe(recipe, overrides, run_dir)
    return metrics, time.perf_counter() - start


def run_models(recipes: dict[str, str], models: str, overrides: dict[str, Any]
               ) -> Iterator[tuple[str, Path, dict[str, Any], float, Any]]:
    """Runs the recipes of the comma-separated ``models`` one after the other, each into
    ``runs/benchmark-<recipe>``; yields ``(recipe, run folder, metrics, wall-clock seconds, config)``."""
    for model in models.split(","):
        name = recipes[model]
        run_dir = Path("runs") / f"benchmark-{name}"
        metrics, seconds = run_timed(name, overrides, run_dir)
        yield name, run_dir, metrics, seconds, recipe_config(name, overrides)


def recipe_config(recipe: str, overrides: dict[str, Any]) -> Any:
    """The configuration a recipe runs with: its defaults plus ``overrides``."""
    from deepzen.recipes import RECIPES, make_config

    return make_config(RECIPES.get(recipe), overrides)


def settings_json(config: Any) -> str:
    """A recipe configuration as one line of JSON, without the settings that only steer output."""
    return json.dumps({key: value for key, value in vars(config).items() if key not in ("verbose", "data")})


def curve_table(run_dir: str | Path, val_label: str = "val loss", max_rows: int | None = None) -> list[str]:
    """A run's ``curve.csv`` (steps, seconds, loss, val_loss) as Markdown table lines.

    With ``max_rows``, longer curves are thinned to about that many evenly spaced rows plus the last one.
    """
    curve = (Path(run_dir) / "curve.csv").read_text().splitlines()[1:]
    if max_rows is not None and len(curve) > max_rows:
        curve = curve[::len(curve) // max_rows] + [curve[-1]]
    lines = [f"| steps | training minutes | train loss | {val_label} |", "| ---: | ---: | ---: | ---: |"]
    for line in curve:
        steps, seconds, loss, val_loss = line.split(",")
        lines.append(f"| {steps} | {float(seconds) / 60:.1f} | {float(loss):.3f} | {float(val_loss):.3f} |")
    return lines


def write_report(path: Path, text: str) -> None:
    """Writes a Markdown report (creating its folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


class StoredRuns:
    """The runs behind a Markdown report, kept in the JSON file beside it, so that runs made by separate
    commands share one table; the rows of an earlier run of the same command are replaced. The file is
    read again before each write, so commands running at the same time keep each other's rows.

    Args:
        report: the Markdown file (``<name>.md``; the runs go to ``<name>.json``).
        command: this run's command (see :func:`command_line`).
        render: the report's Markdown for a list of rows.
    """

    def __init__(self, report: Path, command: str, render: Callable[[list[dict]], str]):
        self.report, self.stored, self.render, self.command = report, report.with_suffix(".json"), render, command
        self.added: list[dict] = []

    @property
    def rows(self) -> list[dict]:
        """The other commands' stored rows, then this run's."""
        earlier = json.loads(self.stored.read_text(encoding="utf-8")) if self.stored.is_file() else []
        return [row for row in earlier if row["command"] != self.command] + self.added

    def add(self, row: dict) -> None:
        """Adds a run, stamped with the date and the load average at its end, and rewrites the JSON and the
        report at once (a later crash keeps it)."""
        self.added.append({**row, "date": time.strftime("%Y-%m-%d"), "load_average": round(os.getloadavg()[0], 1)})
        rows = self.rows
        self.report.parent.mkdir(parents=True, exist_ok=True)
        partial = self.stored.with_name(f"{self.stored.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(rows, indent=1), encoding="utf-8")
        partial.replace(self.stored)  # a reader never sees half a file
        write_report(self.report, self.render(rows))


def run_conditions(row: dict) -> str:
    """When and how a stored run ran: date, torch threads and the load average at its end (runs stored
    before dates were recorded ran on a shared machine at load 10-13)."""
    if "load_average" not in row:
        if "date" in row:  # recorded without its load
            return f"{row['date']}, {row['threads']} thread(s)"
        return f"{row['threads']} thread(s), shared machine (load 10-13)"
    return f"{row['date']}, {row['threads']} thread(s), load {row['load_average']}"


def hand_written_epoch(net: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                       batch_size: int) -> float:
    """One epoch of the loop a careful PyTorch user writes: tensors in memory, a random permutation,
    index slicing, cross-entropy, no per-step host sync. Returns its wall-clock seconds."""
    import torch.nn.functional as F

    start = time.perf_counter()
    net.train()
    order = torch.randperm(len(x))
    for i in range(0, len(x), batch_size):
        index = order[i:i + batch_size]
        loss = F.cross_entropy(net(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start
