"""Transfer learning on MNIST: LeNet-5 trained on digits 0-4, moved to digits 5-9 with 100 labelled
images per class. Three accuracies on the 4,861 test images of 5-9, from the ``mnist-transfer`` recipe:

- from scratch: the same LeNet-5 trained on the 500 labelled images only;
- feature extraction: the source network's frozen convolutional trunk (400 features per image) into
  a new small classifier (one hidden layer of 128);
- fine-tuning: the source network's convolutions under new fully connected layers (F5, F6 drawn
  afresh, a new 5-way classifier), all trained, the convolutions at 0.1x the head's learning rate.

All three train 60 epochs of the 500 images with Adam at 3e-3 (batch 32). Each seed draws another
500 labelled images and another initialization::

    python benchmarks/transfer_mnist.py --seeds 0,1,2     # writes benchmarks/results/transfer_mnist.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
SHARED_DATA = ROOT.parents[1] / "shared" / "data"
METHODS = {"scratch_accuracy": "from scratch (500 images)", "feature_extraction_accuracy": "feature extraction",
           "fine_tuning_accuracy": "fine-tuning"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--run-dir", default="runs/benchmark-transfer")
    args = parser.parse_args()
    if "DEEPZEN_DATA" not in os.environ and SHARED_DATA.is_dir():
        os.environ["DEEPZEN_DATA"] = str(SHARED_DATA)

    import torch

    from deepzen.recipes import run_recipe
    from deepzen.vision import recipes  # noqa: F401  (registers the recipes)

    threads = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    seeds = [int(seed) for seed in args.seeds.split(",")]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    runs = []
    for seed in seeds:
        metrics = run_recipe("mnist-transfer", {"seed": seed}, Path(args.run_dir) / f"seed{seed}")
        runs.append(metrics)
        print(f"seed {seed}: " + ", ".join(f"{METHODS[key]} {metrics[key]:.2%}" for key in METHODS)
              + f" (source network on 0-4: {metrics['source_test_accuracy']:.2%})", flush=True)
    minutes = (time.perf_counter() - start) / 60

    lines = ["# Transfer learning on MNIST: LeNet-5 from digits 0-4 to 5-9 with 100 labels per class", "",
             f"Command: `{threads}python benchmarks/transfer_mnist.py --seeds {args.seeds}`; date "
             f"{time.strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} CPU cores, torch {torch.__version__}, load "
             f"average {load:.1f} at the start; {minutes:.1f} min in all.", "",
             f"Test accuracy on the {runs[0]['test_samples']} test images of digits 5-9 "
             f"(mean over seeds {args.seeds}; each seed's value in brackets):", "",
             "| method | accuracy |", "|---|---:|"]
    for key, label in METHODS.items():
        values = [run[key] for run in runs]
        lines.append(f"| {label} | {statistics.mean(values):.2%} ({', '.join(f'{v:.2%}' for v in values)}) |")
    source = statistics.mean(run["source_test_accuracy"] for run in runs)
    beats = all(run[key] > run["scratch_accuracy"] for run in runs
                for key in ("feature_extraction_accuracy", "fine_tuning_accuracy"))
    lines += ["", f"The source network reaches {source:.2%} on the test images of digits 0-4. Feature extraction "
              f"and fine-tuning {'beat' if beats else 'do NOT both beat'} training from scratch for every seed."]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "transfer_mnist.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
