"""Tiny Shakespeare character language models: validation loss against training time, and a sample.

Runs the recipes ``shakespeare-char-lstm`` (2 x 384 LSTM, windows of 100 characters) and
``shakespeare-char-transformer`` (4-block GPT, d_model 128, context 128) with the same time budget
each (default 30 minutes of training; validation passes are not counted), one after the other.
Validation is the last 10% of the text (111,540 characters), scored in nats per character over
consecutive windows (500 characters for the LSTM, the 128-character context for the Transformer).
Target of the project: <= 1.60 nats/char within 30 minutes on a 2-core CPU.

    python benchmarks/language_model.py                       # 2 x 30 minutes
    python benchmarks/language_model.py --minutes 3           # a quick look

Writes ``benchmarks/results/language_model.md`` and keeps its runs in ``language_model.json``, so
models run by separate commands share one report (the run folders, with curve.csv, sample.txt and
the model files, go to ``runs/benchmark-<recipe>``).
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import torch

from _common import (RESULTS, StoredRuns, add_budget_arguments, command_line, curve_table, parse_arguments,
                     run_conditions, run_models, settings_json)

REPORT = RESULTS / "language_model.md"
RECIPES = {"lstm": "shakespeare-char-lstm", "transformer": "shakespeare-char-transformer"}


def report(entries: list[dict]) -> str:
    return "\n".join([
        "# Character language models on Tiny Shakespeare",
        "",
        f"Train: first 90% of the text, validation: last 10%. Each model trains for its command's budget of "
        f"training minutes (validation not counted). Target: <= 1.60 nats/char within 30 minutes. Machine: "
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}.",
        "",
        *(line for entry in entries
          for line in [*entry["section"][:2], f"Command: `{entry['command']}` ({run_conditions(entry)})", "",
                       *entry["section"][2:]]),
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_budget_arguments(parser, minutes=30.0, models="lstm,transformer", recipes=RECIPES)
    parser.add_argument("--eval-every", type=int, default=0, help="steps between curve points (0: the recipe's)")
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parse_arguments(parser, argv)

    import deepzen.text.generation_recipes  # noqa: F401  (registers the recipes)

    command = command_line("language_model.py", argv)
    runs = StoredRuns(args.out, command, report)
    overrides = {"minutes": args.minutes, **({"eval_every": args.eval_every} if args.eval_every else {})}
    for name, run_dir, metrics, wall, config in run_models(RECIPES, args.models, overrides):
        sample = (run_dir / "sample.txt").read_text(encoding="utf-8")
        section = [
            f"## {name}",
            "",
            f"Validation loss **{metrics['val_loss']:.3f} nats/char** ({metrics['val_bits_per_char']:.3f} bits/char, "
            f"perplexity {metrics['val_perplexity']:.2f}) after {metrics['training_minutes']:.1f} minutes of training "
            f"({metrics['steps']} steps, {metrics['parameters']:,} parameters; {wall / 60:.1f} minutes in all with "
            f"validation and sampling).",
            "",
            *curve_table(run_dir, "val loss (nats/char)"),
            "",
            f"Settings: `{settings_json(config)}`",
            "",
            f"Sample (prompt {config.prompt!r}, temperature {config.temperature}):",
            "",
            "```",
            sample,
            "```",
            "",
        ]
        runs.add({"recipe": name, "command": command, "threads": torch.get_num_threads(), "metrics": metrics,
                  "section": section})
    print(report(runs.rows))


if __name__ == "__main__":
    main()
