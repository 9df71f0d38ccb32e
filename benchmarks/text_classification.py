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
import os
import platform
from pathlib import Path

import torch

from _common import RESULTS, StoredRuns, command_line, parse_arguments, run_conditions, run_timed

REPORT = RESULTS / "text_classification.md"
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
            f"| {run_conditions(entry)} | `{entry['command']}` |")


def report(entries: list[dict]) -> str:
    return "\n".join([
        "# Sentence classification (no pretrained word vectors)", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}. Times depend on the load "
        "(each row gives the load average at the end of its run; on 2 cores, load above 2 slows a run).", "",
        "| recipe | accuracy (%) | paper | train time | run | command |", "| --- | --- | --- | ---: | --- | --- |",
        *map(row, entries), ""])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated recipe names")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe settings")
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parse_arguments(parser, argv)

    import deepzen.text.recipes  # noqa: F401  (registers the recipes)

    overrides = dict(item.split("=", 1) for item in args.set)
    command = command_line("text_classification.py", argv)
    runs = StoredRuns(args.out, command, report)
    for name in args.recipes.split(","):
        metrics, _ = run_timed(name, overrides, f"runs/{name}")
        print(f"{name}: {metrics}", flush=True)
        runs.add({"recipe": name, "command": command, "threads": torch.get_num_threads(), "metrics": metrics})
    print(report(runs.rows))


if __name__ == "__main__":
    main()
