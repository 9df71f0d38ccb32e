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

Writes ``benchmarks/results/translation.md`` (run folders under ``runs/benchmark-<recipe>``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

RECIPES = {"transformer": "multi30k-transformer", "gru": "multi30k-gru-attention"}
RESULTS = Path(__file__).parent / "results"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=90.0, help="training-time budget per model")
    parser.add_argument("--models", default="transformer", help="comma-separated: transformer, gru")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not os.environ.get("DEEPZEN_DATA") and SHARED_DATA.is_dir():
        os.environ["DEEPZEN_DATA"] = str(SHARED_DATA)

    import deepzen.text.generation_recipes  # noqa: F401  (registers the recipes)
    from deepzen.data.text_datasets import load_multi30k
    from deepzen.recipes import RECIPES as REGISTRY, make_config, run_recipe
    from deepzen.text.translation import corpus_bleu

    test_en, test_de = load_multi30k(split="test")
    rows, sections = [], []
    for model in args.models.split(","):
        name = RECIPES[model]
        run_dir = Path("runs") / f"benchmark-{name}"
        start = time.perf_counter()
        metrics = run_recipe(name, {"minutes": args.minutes}, run_dir)
        wall = time.perf_counter() - start
        config = make_config(REGISTRY.get(name), {"minutes": args.minutes})
        outputs = {label: (run_dir / f"test_{label}.de").read_text(encoding="utf-8").splitlines()
                   for label in ("greedy", "beam")}
        lowercased = {label: corpus_bleu(lines, test_de, lowercase=True) for label, lines in outputs.items()}
        rows.append(f"| {name} | {metrics['training_minutes']:.1f} | {metrics['epochs']:.1f} | "
                    f"{metrics['parameters']:,} | {metrics['val_loss']:.3f} | **{metrics['test_bleu_greedy']:.2f}** | "
                    f"**{metrics['test_bleu_beam']:.2f}** | {lowercased['greedy']:.2f} / {lowercased['beam']:.2f} | "
                    f"{metrics['test_decode_seconds_greedy']:.0f} / {metrics['test_decode_seconds_beam']:.0f} |")
        curve = (run_dir / "curve.csv").read_text().splitlines()[1:]
        points = ["| steps | training minutes | train loss | val loss |", "| ---: | ---: | ---: | ---: |"]
        for line in curve[:: max(1, len(curve) // 15)] + ([curve[-1]] if len(curve) > 15 else []):
            steps, seconds, loss, val_loss = line.split(",")
            points.append(f"| {steps} | {float(seconds) / 60:.1f} | {float(loss):.3f} | {float(val_loss):.3f} |")
        examples = [f"- EN: {test_en[i]}\n  - reference: {test_de[i]}\n  - greedy: {outputs['greedy'][i]}\n"
                    f"  - beam 5: {outputs['beam'][i]}" for i in range(3)]
        settings = {key: value for key, value in vars(config).items() if key not in ("verbose", "data")}
        sections += [f"## {name}", "", f"{wall / 60:.1f} minutes in all (training, validation, test decoding). "
                     f"Settings: `{json.dumps(settings)}`", "", *points, "", *examples, ""]
    header = [
        "# Multi30k English->German translation (test2016, 1,000 sentences)",
        "",
        "BLEU: sacrebleu corpus BLEU, default 13a tokenization, cased, on detokenized output against the raw "
        "references (one reference each). Models read and write sentencepiece BPE subwords learned on the "
        "training split. Beam search: beam 5, GNMT length penalty 0.6.",
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs. Budget: {args.minutes:g} training "
        "minutes per model (validation not counted). Target: Transformer >= 30 BLEU, beam not worse than greedy.",
        "",
        f"Command: `python benchmarks/translation.py --minutes {args.minutes:g} --models {args.models}"
        + (f" --threads {args.threads}" if args.threads else "") + "`",
        "",
        "| recipe | training minutes | epochs | parameters | val loss | BLEU greedy | BLEU beam 5 | "
        "lower-cased greedy / beam | decoding seconds greedy / beam |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "translation.md").write_text("\n".join(header + sections))
    print("\n".join(header + sections))


if __name__ == "__main__":
    main()
