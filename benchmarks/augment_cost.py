"""What batched augmentation costs next to the training step it feeds (CIFAR-sized batch, ResNet-20).

Times, interleaved and repeated: (a) a CIFAR-style pipeline (pad-4 random crop, horizontal flip,
normalize) and (b) a heavier one (crop, flip, rotation, zoom, translation, normalize) on a
``(128, 3, 32, 32)`` batch, against (c) one ResNet-20 training step (forward, backward, SGD
momentum) on the same batch. Reports medians and the ratios (a)/(c), (b)/(c)::

    python benchmarks/augment_cost.py            # writes benchmarks/results/augment_cost.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from deepzen.vision.augment import (Augment, Normalize, RandomCrop, RandomFlip, RandomRotation, RandomTranslation,
                                    RandomZoom)
from deepzen.vision.models import create

RESULTS = Path(__file__).resolve().parent / "results" / "augment_cost.md"
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    torch.manual_seed(0)
    images = torch.rand(args.batch_size, 3, 32, 32)
    labels = torch.randint(0, 10, (args.batch_size,))
    pipelines = {
        "crop + flip + normalize": Augment(RandomCrop(32, padding=4), RandomFlip("horizontal"), Normalize(MEAN, STD),
                                           seed=0),
        "crop + flip + rotation + zoom + translation + normalize": Augment(
            RandomCrop(32, padding=4), RandomFlip("horizontal"), RandomRotation(0.05), RandomZoom(0.1),
            RandomTranslation(0.1, 0.1), Normalize(MEAN, STD), seed=0),
    }
    network = create("resnet20", num_classes=10, in_channels=3)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9)

    def train_step():
        loss = F.cross_entropy(network(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    jobs = {"ResNet-20 training step": train_step, **{name: (lambda p=p: p(images)) for name, p in pipelines.items()}}
    for job in jobs.values():  # warm-up
        timed(job, 3)
    samples: dict[str, list[float]] = {name: [] for name in jobs}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):  # interleaved
        for name, job in jobs.items():
            samples[name] += timed(job, 1)
    load_after = os.getloadavg()[0]
    median = {name: statistics.median(times) * 1000 for name, times in samples.items()}
    step = median["ResNet-20 training step"]
    lines = ["# Augmentation cost next to the training step it feeds", "",
             f"Command: `python benchmarks/augment_cost.py --repeats {args.repeats}`; date {time.strftime('%Y-%m-%d')}; "
             f"{os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads); "
             f"load average {load_before:.1f} before, {load_after:.1f} after.", "",
             f"Batch ({args.batch_size}, 3, 32, 32), medians of {args.repeats} interleaved runs.", "",
             "| work | median ms | / training step |", "|---|---:|---:|"]
    lines += [f"| {name} | {ms:.1f} | {ms / step:.3f} |" for name, ms in median.items()]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
