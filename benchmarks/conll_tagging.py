"""CoNLL-2003 English NER: the BiLSTM-CRF tagger with character features, with and without the CRF.

Runs the ``conll-bilstm-crf`` recipe (no pretrained word vectors) once with the CRF and once with a
softmax output, and reports test entity F1 (conlleval's definition), the development F1 that
selected the epoch, and the training time. Lample et al. (2016) report 83.63 test F1 for their
configuration without pretrained embeddings (90.94 with them).

    DEEPZEN_DATA=../shared/data python benchmarks/conll_tagging.py --threads 1
    python benchmarks/conll_tagging.py --epochs 2 --set max_train_sentences=2000   # a quick look

Prints a Markdown table and writes it to ``benchmarks/results/conll_tagging.md`` after each run; the
runs are also kept in ``conll_tagging.json``, so variants run by separate commands share one table.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import torch

from _common import RESULTS, StoredRuns, command_line, parse_arguments, run_conditions, run_timed

REPORT = RESULTS / "conll_tagging.md"
VARIANTS = {"crf": {"crf": True}, "softmax": {"crf": False}}


def table(rows: list[dict]) -> str:
    lines = ["| model | test F1 | test P | test R | dev F1 | best epoch / run | train time | s / epoch | run | command |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for row in rows:
        m = row["metrics"]
        lines.append(f"| {row['name']} | {100 * m['test_f1']:.2f} | {100 * m['test_precision']:.2f} | "
                     f"{100 * m['test_recall']:.2f} | {100 * m['dev_f1']:.2f} | {m['best_epoch']} / {m['epochs_run']} "
                     f"| {m['train_seconds'] / 60:.1f} min | {m['seconds_per_epoch']:.0f} | {run_conditions(row)} "
                     f"| `{row['command']}` |")
    return "\n".join(lines)


def report(rows: list[dict]) -> str:
    return "\n".join([
        "# CoNLL-2003 English NER (test = eng.testb), no pretrained word vectors", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}. Times depend on the load "
        "(each row gives the load average at the end of its run; on 2 cores, load above 2 slows a run).", "",
        table(rows), "",
        "Reference: Lample et al. (2016), LSTM-CRF without pretrained embeddings: 83.63 F1.", "",
        "Dev F1 per epoch:", "",
        *(f"- {row['name']}: {row['metrics']['dev_f1_per_epoch']}" for row in rows), ""])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="crf,softmax", help="comma-separated: crf, softmax")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="other recipe settings")
    parser.add_argument("--out", type=Path, default=REPORT)
    parser.add_argument("--run-dir", default="runs/conll", help="run folders: <run-dir>-<variant>")
    args = parse_arguments(parser, argv)

    import deepzen.text.recipes  # noqa: F401  (registers the recipes)

    overrides = dict(item.split("=", 1) for item in args.set)
    if args.epochs is not None:
        overrides["epochs"] = str(args.epochs)
    command = command_line("conll_tagging.py", argv)
    runs = StoredRuns(args.out, command, report)
    for name in args.variants.split(","):
        metrics, seconds = run_timed("conll-bilstm-crf", {**overrides, **VARIANTS[name]}, f"{args.run_dir}-{name}")
        label = f"BiLSTM-{name.upper() if name == 'crf' else 'softmax'} (char {overrides.get('char_encoder', 'lstm')})"
        print(f"{label}: {metrics} ({seconds:.0f} s)", flush=True)
        runs.add({"variant": name, "name": label, "command": command, "threads": torch.get_num_threads(),
                  "metrics": metrics})
    print(table(runs.rows))


if __name__ == "__main__":
    main()
