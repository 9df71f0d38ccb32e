"""The reliability table: fuzzed model and checkpoint files, and the exact-resume matrix.

Runs the project's own tests with a larger budget and counts what they saw:

- ``tests/training/test_file_fuzz.py`` with ``DEEPZEN_FUZZ_EXAMPLES`` cases per mutation kind and file
  kind: how many mutated files were refused with ``ModelFileError``, loaded unchanged, or (after a JSON
  edit whose hash was recomputed) loaded as a different but valid model;
- ``tests/training/test_resume_matrix.py``: which cells of the resume matrix are bit-exact;
- the ``digits-cnn`` recipe from the command line, 10 epochs straight against 5 epochs then
  ``--resume --set epochs=10``: the largest difference between the final weights.

    python benchmarks/reliability.py --examples 500

Writes ``benchmarks/results/reliability.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def pytest(test_file: str, env: dict[str, str], junit: Path) -> float:
    """Runs one test file; returns its wall time. Failures are counted from the JUnit report, not raised."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file,
                    f"--junitxml={junit}"], cwd=ROOT, env={**os.environ, **env}, check=False)
    return time.perf_counter() - start


def matrix_results(junit: Path) -> list[dict]:
    cells = []
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "")
        failed = case.find("failure") is not None or case.find("error") is not None
        if name.startswith("test_resume_is_bit_exact["):
            cell = name[len("test_resume_is_bit_exact["):-1]
        elif name == "test_a_gan_killed_inside_an_epoch_resumes_bit_exactly":
            cell = "GAN (two optimizers, generator average), kill -9 inside an epoch"
        else:
            continue
        cells.append({"cell": cell, "bit_exact": not failed, "seconds": float(case.get("time", 0))})
    return cells


def digits_resume_difference(folder: Path) -> float:
    """Max |weight difference| of digits-cnn: 10 epochs straight vs 5 epochs then resumed to 10."""
    import torch

    from deepzen.training.serialization import read_tensors

    def train(*arguments: str) -> None:
        subprocess.run([sys.executable, "-m", "deepzen.cli", "train", *arguments], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)

    train("digits-cnn", "--set", "epochs=10", "--run-dir", str(folder / "straight"))
    train("digits-cnn", "--set", "epochs=5", "--run-dir", str(folder / "resumed"))
    train("--resume", str(folder / "resumed"), "--set", "epochs=10")
    straight, _ = read_tensors(folder / "straight" / "last.dz")
    resumed, _ = read_tensors(folder / "resumed" / "last.dz")
    return max(float((straight[key].double() - resumed[key].double()).abs().max()) for key in straight)


def markdown(fuzz: dict, cells: list[dict], examples: int, seconds: dict[str, float], digits: float) -> str:
    lines = [f"Fuzzing ({examples} Hypothesis cases per test, derandomized; {seconds['fuzz']:.0f} s):", "",
             "| file | mutation | refused (ModelFileError) | loaded unchanged | loaded as a valid edit |",
             "|---|---|---:|---:|---:|"]
    table: dict[tuple[str, str], dict[str, int]] = {}
    for row in fuzz["rows"]:
        table.setdefault((row["file"], row["mutation"]), {})[row["outcome"]] = row["cases"]
    for (kind, mutation), outcomes in sorted(table.items()):
        lines.append(f"| {kind} | {mutation} | {outcomes.get('refused', 0)} | {outcomes.get('unchanged', 0)} | "
                     f"{outcomes.get('loaded', 0)} |")
    total = sum(row["cases"] for row in fuzz["rows"])
    lines += ["", f"{total} mutated files; every one refused with ModelFileError or loaded as described "
              f"(any other outcome fails the test).", "",
              f"Resume matrix ({seconds['matrix']:.0f} s): {sum(c['bit_exact'] for c in cells)} of {len(cells)} "
              f"cells bit-exact (weights, optimizer and callback state, history, evaluation).", "",
              "| cell (memory format, optimizer, precision, stateful callback, interruption) | bit-exact |",
              "|---|---|"]
    lines += [f"| {c['cell']} | {'yes' if c['bit_exact'] else 'NO'} |" for c in cells]
    lines += ["", f"digits-cnn from the command line, 10 epochs straight against 5 epochs then `--resume --set "
              f"epochs=10` (default settings, channels-last on the CPU): largest weight difference {digits:.3g}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=500, help="Hypothesis cases per fuzz test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        seconds = {"fuzz": pytest("tests/training/test_file_fuzz.py",
                                  {"DEEPZEN_FUZZ_EXAMPLES": str(args.examples),
                                   "DEEPZEN_FUZZ_REPORT": str(folder / "fuzz.json")}, folder / "fuzz.xml"),
                   "matrix": pytest("tests/training/test_resume_matrix.py", {}, folder / "matrix.xml")}
        fuzz = json.loads((folder / "fuzz.json").read_text())
        cells = matrix_results(folder / "matrix.xml")
        digits = digits_resume_difference(folder)
    text = markdown(fuzz, cells, args.examples, seconds, digits)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reliability.md").write_text(text)
    (RESULTS / "reliability.json").write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "fuzz": fuzz,
                                                          "resume_matrix": cells, "seconds": seconds,
                                                          "digits_cnn_resume_max_difference": digits}, indent=2))
    print(text)


if __name__ == "__main__":
    main()
