"""benchmarks/serve_load.py, bounded: the new server in its own process answers every request of 4 keep-alive
clients, and every answer equals the model's own output."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path


def test_the_bounded_load_test_loses_no_request_and_answers_all_correctly(capsys):
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_load.py"
    spec = importlib.util.spec_from_file_location("serve_load", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    code = benchmark.main(["--servers", "new", "--rounds", "1", "--requests", "120", "--concurrency", "4"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    [run] = report["runs"]["new"]
    assert code == 0
    assert run["sent"] == run["answered"] == run["correct"] == 120 and run["statuses"] == {"200": 120}
    assert run["lost"] == run["wrong"] == run["stuck_clients"] == 0
    latency = run["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
