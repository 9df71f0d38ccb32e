"""Tiny Shakespeare character language models: validation loss against training time, and a sample.

Runs the recipes ``shakespeare-char-lstm`` (2 x 384 LSTM, windows of 100 characters) and
``shakespeare-char-transformer`` (4-block GPT, d_model 128, context 128) with the same time budget
each (default 30 minutes of training; validation passes are not counted), one after the other.
Validation is the last 10% of the text (111,540 characters), scored in nats per character over
consecutive windows (500 characters for the LSTM, the 128-character context for the Transformer).
Target of the project: <= 1.60 nats/char within 30 minutes on a 2-core CPU.

    python benchmarks/language_model.py                       # 2 x 30 minutes
    python benchmarks/language_model.py --minutes 3           # a quick look

Writes ``benchmarks/results/language_model.md`` (the run folders, with curve.csv, sample.txt and
the model files, go to ``runs/benchmark-<recipe>``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

RECIPES = {"lstm": "shakespeare-char-lstm", "transformer": "shakespeare-char-transformer"}
RESULTS = Path(__file__).parent / "results"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="training-time budget per model")
    parser.add_argument("--models", default="lstm,transformer", help="comma-separated: lstm, transformer")
    parser.add_argument("--eval-every", type=int, default=0, help="steps between curve points (0: the recipe's)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not os.environ.get("DEEPZEN_DATA") and SHARED_DATA.is_dir():
        os.environ["DEEPZEN_DATA"] = str(SHARED_DATA)

    import deepzen.text.generation_recipes  # noqa: F401  (registers the recipes)
    from deepzen.recipes import RECIPES as REGISTRY, make_config, run_recipe

    sections = []
    for model in args.models.split(","):
        name = RECIPES[model]
        overrides = {"minutes": args.minutes, **({"eval_every": args.eval_every} if args.eval_every else {})}
        run_dir = Path("runs") / f"benchmark-{name}"
        start = time.perf_counter()
        metrics = run_recipe(name, overrides, run_dir)
        wall = time.perf_counter() - start
        config = make_config(REGISTRY.get(name), overrides)
        curve = (run_dir / "curve.csv").read_text().splitlines()[1:]
        table = ["| steps | training minutes | train loss | val loss (nats/char) |", "| ---: | ---: | ---: | ---: |"]
        for line in curve:
            steps, seconds, loss, val_loss = line.split(",")
            table.append(f"| {steps} | {float(seconds) / 60:.1f} | {float(loss):.3f} | {float(val_loss):.3f} |")
        sample = (run_dir / "sample.txt").read_text(encoding="utf-8")
        settings = {key: value for key, value in vars(config).items() if key not in ("verbose", "data")}
        sections += [
            f"## {name}",
            "",
            f"Validation loss **{metrics['val_loss']:.3f} nats/char** ({metrics['val_bits_per_char']:.3f} bits/char, "
            f"perplexity {metrics['val_perplexity']:.2f}) after {metrics['training_minutes']:.1f} minutes of training "
            f"({metrics['steps']} steps, {metrics['parameters']:,} parameters; {wall / 60:.1f} minutes in all with "
            f"validation and sampling).",
            "",
            *table,
            "",
            f"Settings: `{json.dumps(settings)}`",
            "",
            f"Sample (prompt {config.prompt!r}, temperature {config.temperature}):",
            "",
            "```",
            sample,
            "```",
            "",
        ]
    header = [
        "# Character language models on Tiny Shakespeare",
        "",
        f"Train: first 90% of the text, validation: last 10%. torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs.",
        f"Budget: {args.minutes:g} training minutes per model (validation not counted). Target: <= 1.60 nats/char.",
        "",
        f"Command: `python benchmarks/language_model.py --minutes {args.minutes:g} --models {args.models}"
        + (f" --threads {args.threads}" if args.threads else "") + "`",
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "language_model.md").write_text("\n".join(header + sections))
    print("\n".join(header + sections))


if __name__ == "__main__":
    main()
