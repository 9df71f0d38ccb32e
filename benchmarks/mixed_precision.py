"""Mixed precision on the CPU: bfloat16 autocast (``precision="mixed_bfloat16"``) against float32.

Trains LeNet-5 and ResNet-20 on MNIST subsets with small budgets, the two precisions interleaved
(float32 first in even repeats, bfloat16 first in odd ones) so that a change in the machine's load
hits both, and reports the median training time per epoch and the median test accuracy::

    python benchmarks/mixed_precision.py                               # defaults below
    python benchmarks/mixed_precision.py --repeats 5 --threads 2
    python benchmarks/mixed_precision.py --models resnet20 --resnet-train 2000 --resnet-epochs 2 --repeats 1 \
        --out benchmarks/results/mixed_precision_resnet20.md       # ResNet-20's accuracy on a longer budget

The table goes to ``benchmarks/results/mixed_precision.md`` with the command, the date and the
machine (whether the CPU has native bfloat16 instructions decides what autocast can gain).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
SHARED_DATA = ROOT.parents[1] / "shared" / "data"
PRECISIONS = ("float32", "mixed_bfloat16")


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_bf16_flags() -> str:
    """The CPU's native bfloat16 instruction sets (avx512_bf16, amx_bf16), or "none" (Linux only)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return "unknown"
    found = sorted({flag for flag in flags if "bf16" in flag})
    return ", ".join(found) or "none"


def run_once(name: str, data, precision: str, epochs: int, batch_size: int, learning_rate: float, seed: int) -> dict:
    import deepzen
    from deepzen.vision.tasks import image_classifier

    deepzen.seed(seed)
    model = image_classifier(name, data)
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=learning_rate),
                  loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True), metrics=["accuracy"],
                  precision=precision, device="cpu")
    started = time.perf_counter()
    model.fit(data.x_train, data.y_train, batch_size=batch_size, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - started
    _, accuracy = model.evaluate(data.x_test, data.y_test, batch_size=500, verbose=0)
    return {"seconds_per_epoch": seconds / epochs, "test_accuracy": accuracy}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's setting)")
    parser.add_argument("--lenet-train", type=int, default=4000, help="LeNet-5 training images")
    parser.add_argument("--lenet-epochs", type=int, default=2)
    parser.add_argument("--resnet-train", type=int, default=512, help="ResNet-20 training images")
    parser.add_argument("--resnet-epochs", type=int, default=1)
    parser.add_argument("--test", type=int, default=2000, help="test images")
    parser.add_argument("--models", default="lenet5,resnet20", help="comma-separated: lenet5, resnet20")
    parser.add_argument("--out", type=Path, default=RESULTS / "mixed_precision.md")
    args = parser.parse_args()
    os.environ.setdefault("DEEPZEN_DATA", str(SHARED_DATA))
    import torch

    from deepzen.vision.tasks import load_image_data

    if args.threads:
        torch.set_num_threads(args.threads)
    plans = [plan for plan in (("lenet5", args.lenet_train, args.lenet_epochs, 64, 2e-3),
                               ("resnet20", args.resnet_train, args.resnet_epochs, 64, 2e-3))
             if plan[0] in args.models.split(",")]
    if not plans:
        parser.error(f"--models names none of lenet5, resnet20. Received: {args.models!r}")
    rows = []
    for name, train, epochs, batch_size, learning_rate in plans:
        data = load_image_data("mnist", train_samples=train, test_samples=args.test, seed=0)
        results = {precision: [] for precision in PRECISIONS}
        warmup = load_image_data("mnist", train_samples=128, test_samples=64, seed=1)
        for precision in PRECISIONS:  # untimed: the first fit of a model pays oneDNN's kernel setup
            run_once(name, warmup, precision, 1, batch_size, learning_rate, seed=0)
        for repeat in range(args.repeats):
            order = PRECISIONS if repeat % 2 == 0 else PRECISIONS[::-1]
            for precision in order:
                result = run_once(name, data, precision, epochs, batch_size, learning_rate, seed=repeat)
                results[precision].append(result)
                print(f"{name} {precision} repeat {repeat}: {result['seconds_per_epoch']:.2f} s/epoch, "
                      f"test accuracy {result['test_accuracy']:.4f}", flush=True)
        medians = {precision: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
                   for precision, runs in results.items()}
        ratio = statistics.median(b["seconds_per_epoch"] / f["seconds_per_epoch"]
                                  for f, b in zip(results["float32"], results["mixed_bfloat16"]))
        rows.append((name, train, epochs, medians, ratio, results))
    lines = ["# Mixed precision on the CPU: bfloat16 autocast vs float32", "",
             f"Command: `python {' '.join(['benchmarks/mixed_precision.py', *sys.argv[1:]])}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
             f"Machine: {cpu_name()}, {os.cpu_count()} CPUs (shared with other jobs), torch "
             f"{torch.__version__}, {torch.get_num_threads()} threads; native bfloat16 instructions: "
             f"{cpu_bf16_flags()}", "",
             "| model | training images x epochs | float32 s/epoch | bf16 s/epoch | bf16 / float32 time (median of "
             "paired ratios) | float32 test acc. | bf16 test acc. |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, train, epochs, medians, ratio, _ in rows:
        f, b = medians["float32"], medians["mixed_bfloat16"]
        lines.append(f"| {name} | {train} x {epochs} | {f['seconds_per_epoch']:.2f} | {b['seconds_per_epoch']:.2f} | "
                     f"{ratio:.2f} | {f['test_accuracy']:.4f} | {b['test_accuracy']:.4f} |")
    lines += ["", f"Medians of {args.repeats} interleaved repeats (repeat r uses seed r for both precisions); "
              f"test accuracy on {args.test} MNIST test images.", "", "Every run:", ""]
    for name, _, _, _, _, results in rows:
        for precision, runs in results.items():
            lines.append(f"- {name} {precision}: " + ", ".join(
                f"{r['seconds_per_epoch']:.2f} s ({r['test_accuracy']:.4f})" for r in runs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
