"""An experiment's run folder: ``report.md`` (the claim, the data and settings, a table of the
measured numbers, the finding computed from them, the figures) and ``results.json`` (the same
numbers for programs).

Each experiment fills an :class:`ExperimentResult` and calls :func:`write_report`; the words of
its finding are assembled from the measurements with the small formatters here (:func:`percent`,
:func:`number`, :func:`points`, :func:`join`), so a different run tells a different story.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("number", "percent", "integer", "seconds", "text")


@dataclass(frozen=True)
class Column:
    """One column of the results table.

    Args:
        key: the row dict key.
        header: the column title.
        kind: how values are shown: "number" (3 significant digits), "percent" (a fraction shown
            as %), "integer", "seconds" or "text".
        timing: a wall-clock measurement, which differs between two runs with the same seed.
    """

    key: str
    header: str
    kind: str = "number"
    timing: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Expected kind to be one of {', '.join(KINDS)}. Received: kind={self.kind!r}")

    def format(self, value: Any) -> str:
        if value is None:
            return "—"
        if self.kind == "text":
            return str(value)
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        if self.kind == "percent":
            return percent(value)
        if self.kind == "integer":
            return f"{int(value):,}"
        if self.kind == "seconds":
            return f"{value:.1f} s"
        return number(value)


# The last columns of every experiment's table: each row has "diverged_at" (the step whose loss
# was not finite, or None) and "seconds" (the variant's training time, from common.Trained).
TRAINING_COLUMNS = (Column("diverged_at", "diverged at step", "integer"),
                    Column("seconds", "training time", "seconds", timing=True))


@dataclass
class ExperimentResult:
    """What an experiment measured and concluded.

    Attributes:
        name: the registered experiment name.
        title: the report's heading.
        claim: the textbook statement under test, one or two sentences.
        data: what it trained on (``ExperimentData.describe()``).
        settings: the options it ran with.
        columns: the table's columns after "variant".
        rows: one dict per variant: ``{"variant": name, column key: value, ...}``.
        finding: one paragraph computed from ``rows`` (and the curves behind the figures).
        figures: ``(file name in run_dir, caption)``; the first is the experiment's summary picture.
        run_dir: where the report was written.
        seconds: the experiment's wall time.
        notes: remarks for the reader (e.g. a dataset fallback).
    """

    name: str
    title: str
    claim: str
    data: str
    settings: dict[str, Any]
    columns: list[Column]
    rows: list[dict[str, Any]]
    finding: str
    figures: list[tuple[str, str]]
    run_dir: Path
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def report_path(self) -> Path:
        return Path(self.run_dir) / "report.md"

    @property
    def variants(self) -> list[str]:
        return [row["variant"] for row in self.rows]

    def measurements(self) -> dict[str, dict[str, float | None]]:
        """The numeric, non-timing cells by variant and column key (what a fixed seed reproduces)."""
        keys = [c.key for c in self.columns if c.kind != "text" and not c.timing]
        return {row["variant"]: {key: row.get(key) for key in keys} for row in self.rows}


def percent(fraction: float) -> str:
    """``0.9712`` -> ``"97.1%"``."""
    return f"{100 * fraction:.1f}%"


def number(value: float) -> str:
    """Three significant digits: ``0.000123`` -> ``"0.000123"``, ``3.2e-09`` -> ``"3.2e-09"``, ``0`` -> ``"0"``."""
    return f"{value:.3g}"


def points(fraction: float, signed: bool = False) -> str:
    """A difference of two fractions in percentage points: ``0.081`` -> ``"8.1 points"``; signed:
    ``"+8.1 points"``, ``"-0.3 points"``."""
    value = round(100 * fraction, 1) + 0.0  # + 0.0 turns -0.0 into 0.0
    return f"{value:+.1f} points" if signed else f"{value:.1f} points"


def join(items: list[str], word: str = "and") -> str:
    """``["a", "b", "c"]`` -> ``"a, b and c"``."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {word} {items[-1]}"


def markdown_table(columns: list[Column], rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, "variant" first, numbers right-aligned."""
    header = "| variant | " + " | ".join(c.header for c in columns) + " |"
    rule = "|:--|" + "|".join(":--" if c.kind == "text" else "--:" for c in columns) + "|"
    lines = [header, rule]
    for row in rows:
        lines.append(f"| {row['variant']} | " + " | ".join(c.format(row.get(c.key)) for c in columns) + " |")
    return "\n".join(lines)


def _settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"`{key}={value!r}`" for key, value in settings.items())


def write_report(result: ExperimentResult) -> Path:
    """Writes ``report.md`` and ``results.json`` into ``result.run_dir``; returns the report's path."""
    run_dir = Path(result.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# {result.title}", "", result.claim, "",
             f"**Data:** {result.data}.  ", f"**Settings:** {_settings_text(result.settings)}.  ",
             f"**Run time:** {result.seconds:.0f} s.", "",
             "## Measurements", "", markdown_table(result.columns, result.rows), "",
             "## Finding", "", result.finding, ""]
    if result.figures:
        lines += ["## Figures", ""]
        for file, caption in result.figures:
            lines += [f"![{caption}]({file})", "", f"*{caption}*", ""]
    if result.notes:
        lines += ["## Notes", "", *(f"- {note}" for note in result.notes), ""]
    path = result.report_path
    path.write_text("\n".join(lines))
    results = {"name": result.name, "title": result.title, "claim": result.claim, "data": result.data,
               "settings": result.settings, "seconds": result.seconds,
               "columns": [{"key": c.key, "header": c.header, "kind": c.kind, "timing": c.timing}
                           for c in result.columns],
               "rows": [{key: _finite_or_none(value) for key, value in row.items()} for row in result.rows],
               "finding": result.finding,
               "figures": [{"file": file, "caption": caption} for file, caption in result.figures],
               "notes": result.notes}
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=_json_value) + "\n")
    return path


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity: such cells become null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _json_value(value: Any) -> Any:
    if hasattr(value, "tolist"):  # NumPy scalars and arrays
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Cannot write {type(value).__name__} to results.json")


def save_figure(figure, path: str | Path) -> Path:
    """Writes a matplotlib figure as PNG and closes it."""
    from deepzen.training.plots import pyplot

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    pyplot().close(figure)
    return path
