"""Multi30k English->German: corpus BLEU on test2016 with greedy search and beam search.

Runs the recipe ``multi30k-transformer`` (and, with ``--models transformer,gru``, the GRU
encoder-decoder with Bahdanau attention, ``multi30k-gru-attention``) for a training-time budget
(default 90 minutes; validation passes are not counted), then translates the 1,000 test2016
sentences with greedy search and with beam search (beam 5, GNMT length penalty 0.6).

Tokenization: the models read and write sentencepiece BPE subwords learned on the training
split (8,000 per language); their output is detokenized by sentencepiece and scored by sacrebleu
against the raw references, with sacrebleu's defaults: 13a tokenization, cased (the scores are
therefore lower than the tokenized, lower-cased BLEU some papers report on Multi30k; the
lower-cased score is shown too). Target of the project: Transformer BLEU >= 30 after at most 90
minutes of training on this 2-core machine, beam not worse than greedy.

    python benchmarks/translation.py                                 # Transformer, 90 minutes
    python benchmarks/translation.py --models transformer,gru --minutes 45

Writes ``benchmarks/results/translation.md`` after each model (run folders under
``runs/benchmark-<recipe>``); the runs are also kept in ``translation.json``, so models run by
separate commands share one report.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import torch

from _common import (RESULTS, StoredRuns, add_budget_arguments, command_line, curve_table, parse_arguments,
                     run_conditions, run_models, settings_json)

REPORT = RESULTS / "translation.md"
RECIPES = {"transformer": "multi30k-transformer", "gru": "multi30k-gru-attention"}


def table_row(entry: dict) -> str:
    m = entry["metrics"]
    return (f"| {entry['recipe']} | {m['training_minutes']:.1f} | {m['epochs']:.1f} | {m['parameters']:,} | "
            f"{m['val_loss']:.3f} | **{m['test_bleu_greedy']:.2f}** | **{m['test_bleu_beam']:.2f}** | "
            f"{m['test_bleu_lowercased_greedy']:.2f} / {m['test_bleu_lowercased_beam']:.2f} | "
            f"{m['test_decode_seconds_greedy']:.0f} / {m['test_decode_seconds_beam']:.0f} | {run_conditions(entry)} | "
            f"`{entry['command']}` |")


def report(entries: list[dict]) -> str:
    return "\n".join([
        "# Multi30k English->German translation (test2016, 1,000 sentences)",
        "",
        "BLEU: sacrebleu corpus BLEU, default 13a tokenization, cased, on detokenized output against the raw "
        "references (one reference each). Models read and write sentencepiece BPE subwords learned on the "
        "training split. Beam search: beam 5, GNMT length penalty 0.6. Each model trains for its command's "
        "budget of training minutes (validation not counted). Target: Transformer >= 30 BLEU after at most 90 "
        f"minutes, beam not worse than greedy. Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}; each row gives its date, threads and the load average at its end.",
        "",
        "| recipe | training minutes | epochs | parameters | val loss | BLEU greedy | BLEU beam 5 | "
        "lower-cased greedy / beam | decoding seconds greedy / beam | run | command |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
        *(table_row(entry) for entry in entries),
        "",
        *(line for entry in entries for line in entry["section"]),
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_budget_arguments(parser, minutes=90.0, models="transformer", recipes=RECIPES)
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parse_arguments(parser, argv)

    import deepzen.text.generation_recipes  # noqa: F401  (registers the recipes)
    from deepzen.data.text_datasets import load_multi30k
    from deepzen.text.translation import corpus_bleu

    test_en, test_de = load_multi30k(split="test")
    command = command_line("translation.py", argv)
    runs = StoredRuns(args.out, command, report)
    for name, run_dir, metrics, wall, config in run_models(RECIPES, args.models, {"minutes": args.minutes}):
        outputs = {label: (run_dir / f"test_{label}.de").read_text(encoding="utf-8").splitlines()
                   for label in ("greedy", "beam")}
        for label, lines in outputs.items():
            metrics[f"test_bleu_lowercased_{label}"] = corpus_bleu(lines, test_de, lowercase=True)
        examples = [f"- EN: {test_en[i]}\n  - reference: {test_de[i]}\n  - greedy: {outputs['greedy'][i]}\n"
                    f"  - beam 5: {outputs['beam'][i]}" for i in range(3)]
        section = [f"## {name}", "", f"{wall / 60:.1f} minutes in all (training, validation, test decoding). "
                   f"Settings: `{settings_json(config)}`", "", *curve_table(run_dir, max_rows=15), "", *examples, ""]
        runs.add({"recipe": name, "command": command, "threads": torch.get_num_threads(), "metrics": metrics,
                  "section": section})
    print(report(runs.rows))


if __name__ == "__main__":
    main()
