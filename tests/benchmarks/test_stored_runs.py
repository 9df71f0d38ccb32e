"""The benchmark reports' run store: runs of other commands are kept, a rerun of a command replaces its rows."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import _common  # noqa: E402  (the benchmark scripts' helpers, not a package)


def render(rows):
    return "\n".join(f"{row['recipe']} {row['command']} {row['value']}" for row in rows)


def test_runs_of_separate_commands_share_one_report(tmp_path):
    report = tmp_path / "results" / "report.md"
    first = _common.StoredRuns(report, "python a.py --models x", render)
    first.add({"recipe": "x", "command": "python a.py --models x", "value": 1, "threads": 1})
    second = _common.StoredRuns(report, "python a.py --models y", render)
    second.add({"recipe": "y", "command": "python a.py --models y", "value": 2, "threads": 1})
    assert report.read_text().splitlines() == ["x python a.py --models x 1", "y python a.py --models y 2"]

    rerun = _common.StoredRuns(report, "python a.py --models x", render)
    rerun.add({"recipe": "x", "command": "python a.py --models x", "value": 3, "threads": 1})
    assert report.read_text().splitlines() == ["y python a.py --models y 2", "x python a.py --models x 3"]
    stored = json.loads(report.with_suffix(".json").read_text())
    assert [row["value"] for row in stored] == [2, 3]
    assert all("date" in row and "load_average" in row for row in stored)
    assert _common.run_conditions(stored[0]).startswith(stored[0]["date"])


def test_commands_running_at_the_same_time_keep_each_others_rows(tmp_path):
    report = tmp_path / "report.md"
    first = _common.StoredRuns(report, "python a.py --seed 1", render)
    second = _common.StoredRuns(report, "python a.py --seed 2", render)    # both opened before either writes
    first.add({"recipe": "x", "command": "python a.py --seed 1", "value": 1, "threads": 1})
    second.add({"recipe": "x", "command": "python a.py --seed 2", "value": 2, "threads": 1})
    first.add({"recipe": "y", "command": "python a.py --seed 1", "value": 3, "threads": 1})
    assert sorted(row["value"] for row in json.loads(report.with_suffix(".json").read_text())) == [1, 2, 3]
    assert sorted(report.read_text().splitlines()) == ["x python a.py --seed 1 1", "x python a.py --seed 2 2",
                                                       "y python a.py --seed 1 3"]
    assert not list(tmp_path.glob("*.partial"))
