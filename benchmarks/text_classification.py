"""Sentence classification on MR (10-fold cross-validation) and SST-2: Kim's CNN-rand and a BiLSTM with attention.

Runs the registered recipes and reports the accuracy the papers report: Kim (2014), CNN-rand,
MR 76.1 (10-fold CV) and SST-2 82.7 (trained with SST's phrase-level labels, which are not in
``../shared/data``: these runs train on the 6,920 training sentences only).

    DEEPZEN_DATA=../shared/data python benchmarks/text_classification.py --threads 1
    python benchmarks/text_classification.py --recipes mr-textcnn --set max_folds=3   # fewer folds

Prints a Markdown table and writes it to ``benchmarks/results/text_classification.md`` after each recipe;
runs are also kept in ``text_classification.json``, so recipes run by separate commands share one table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "text_classification.md"
RECIPES = ("mr-textcnn", "sst2-textcnn", "sst2-bilstm-attention")
PAPER = {"mr-textcnn": "76.1 (Kim 2014, CNN-rand)", "mr-bilstm-attention": "-",
         "sst2-textcnn": "82.7 (Kim 2014, CNN-rand, phrase-level training)", "sst2-bilstm-attention": "-"}


def row(entry: dict) -> str:
    name, metrics = entry["recipe"], entry["metrics"]
    if "cv_accuracy" in metrics:
        accuracy = (f"{100 * metrics['cv_accuracy']:.2f} ± {100 * metrics['cv_accuracy_std']:.2f} "
                    f"({metrics['folds_run']} folds of 10-fold CV)")
    else:
        accuracy = f"{100 * metrics['test_accuracy']:.2f} (test; dev {100 * metrics['dev_accuracy']:.2f}, " \
                   f"epoch {metrics['best_epoch']})"
    return (f"| {name} | {accuracy} | {PAPER.get(name, '-')} | {metrics['train_seconds'] / 60:.1f} min "
            f"| `{entry['command']}` |")


def report(entries: list[dict]) -> str:
    return "\n".join([
        "# Sentence classification (no pretrained word vectors)", "",
        f"Machine: {platform.machine()}, torch {torch.__version__}; the 2 cores were shared with other jobs "
        "(load average 10-13), so times are upper bounds.", "",
        "| recipe | accuracy (%) | paper | train time | command |", "| --- | --- | --- | ---: | --- |",
        *map(row, entries), ""])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated recipe names")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe settings")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    import deepzen.text.recipes  # noqa: F401  (registers the recipes)
    from deepzen.recipes import run_recipe

    overrides = dict(item.split("=", 1) for item in args.set)
    command = ("python benchmarks/text_classification.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    stored = args.out.with_suffix(".json")  # earlier runs; a repeated command replaces its rows
    names = args.recipes.split(",")
    entries = [e for e in (json.loads(stored.read_text()) if stored.is_file() else []) if e["command"] != command]
    for name in names:
        metrics = run_recipe(name, overrides, run_dir=f"runs/{name}")
        print(f"{name}: {metrics}", flush=True)
        entries.append({"recipe": name, "command": command, "threads": torch.get_num_threads(),
                        "metrics": metrics})
        args.out.parent.mkdir(parents=True, exist_ok=True)
        stored.write_text(json.dumps(entries, indent=1), encoding="utf-8")
        args.out.write_text(report(entries), encoding="utf-8")
    print(report(entries))


if __name__ == "__main__":
    main()
