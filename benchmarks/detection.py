"""Detection recipes on real data: mAP, training time, inference speed, and training throughput as a
fraction of the machine's measured float32 matmul peak.

For each recipe asked for, the script

1. measures the matmul peak: the median GFLOP/s of a 2048x2048 float32 matmul (2 n^3 flops), with
   the same torch threads as the training;
2. runs the recipe into ``runs/benchmark-<recipe>`` (its test mAP@0.5 and mAP@[.5:.95] come from
   pycocotools);
3. counts the flops of one training step's forward and backward pass (``torch.utils.flop_counter``,
   convolutions and matmuls) and divides the achieved flop rate (flops per image x training images
   per second) by the peak;
4. times detection (network, decoding and NMS) on the test images, batch 32 and batch 1, and
   again (batch 32) with 2 threads, with the 2-thread matmul peak beside it.

The peak is measured again after training; the machine is shared, so both numbers are reported::

    python benchmarks/detection.py --recipes mnist-detection --threads 1
    python benchmarks/detection.py --recipes raccoon-detection --threads 1 --set epochs=40
    python benchmarks/detection.py --recipes raccoon-detection --threads 1 --measure-only  # speeds again

Writes ``benchmarks/results/detection-<recipe>.json`` (``-measure-only.json``) and prints a Markdown
table row per recipe.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from _common import RESULTS, command_line, parse_arguments, run_timed

from deepzen.recipes import parse_overrides
from deepzen.vision.detection.loss import MultiboxLoss
from deepzen.vision.detection.recipes import load_detector


def matmul_peak(n: int = 2048, repeats: int = 7) -> float:
    """Median GFLOP/s of an n x n float32 matmul."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        rates.append(2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def training_flops_per_image(model, batch: int = 8) -> float:
    """Flops of one training step (forward + backward, with the loss) per image."""
    from torch.utils.flop_counter import FlopCounterMode

    channels, (height, width) = model.config["in_channels"], model.image_size
    images = torch.rand(batch, channels, height, width)
    targets = torch.tensor([[[4.0, 4.0, width / 2, height / 2, 0.0]]]).repeat(batch, 1, 1)
    model.train()
    with FlopCounterMode(display=False) as counter:
        MultiboxLoss(model.anchors)(targets, model(images)).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def detection_speed(model, images: torch.Tensor, batch: int, seconds: float = 20.0) -> float:
    """Images per second of ``model.detect`` (network, decoding, NMS) on uint8 images, at least 2 passes."""
    model.eval()
    done, start = 0, time.perf_counter()
    while True:
        for first in range(0, len(images), batch):
            model.detect(images[first:first + batch].float() / 255)
            done += len(images[first:first + batch])
            if time.perf_counter() - start > seconds and done >= 2 * batch:
                return done / (time.perf_counter() - start)


def two_thread_speeds(model, images: torch.Tensor) -> dict[str, float]:
    """The matmul peak and detection speed with both cores' threads (2), then the threads restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        return {"matmul_peak_gflops_2_threads": round(matmul_peak(), 1),
                "detect_images_per_second_batch_32_2_threads": round(detection_speed(model, images, 32), 1)}
    finally:
        torch.set_num_threads(threads)


def test_images(recipe: str, run_dir: Path, config) -> torch.Tensor:
    """The recipe's test images again (uint8), for the speed measurement."""
    if recipe == "mnist-detection":
        from deepzen.vision.detection.scenes import load_mnist_scenes

        return torch.as_tensor(load_mnist_scenes(config.data, train_scenes=1, test_scenes=256, seed=config.seed,
                                                 canvas=config.canvas, digits=tuple(config.digits),
                                                 sizes=tuple(config.sizes))[2])
    from deepzen.data.paths import dataset_folder
    from deepzen.vision.detection.readers import load_detection_folder, to_arrays

    _, test = load_detection_folder(dataset_folder("raccoon", config.data))
    return torch.as_tensor(to_arrays(test, config.image_size)[0])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="mnist-detection", help="comma-separated detection recipes")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a recipe setting")
    parser.add_argument("--measure-only", action="store_true",
                        help="no training: measure the peak and the speeds for the finished runs/benchmark-<recipe>")
    args = parse_arguments(parser, argv)
    from deepzen.recipes import RECIPES, make_config

    overrides = parse_overrides(args.set)
    for recipe in args.recipes.split(","):
        config = make_config(RECIPES.get(recipe), overrides)
        threads = torch.get_num_threads()
        peak_before = matmul_peak()
        run_dir = Path("runs") / f"benchmark-{recipe}"
        if args.measure_only:
            metrics = json.loads((run_dir / "metrics.json").read_text())
            seconds = metrics["train_seconds"]
        else:
            metrics, seconds = run_timed(recipe, overrides, run_dir)
            (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")  # for --measure-only
        peak_after = matmul_peak()
        model, _ = load_detector(run_dir)
        flops = training_flops_per_image(model)
        achieved = flops * metrics["train_images_per_second"] / 1e9
        images = test_images(recipe, run_dir, config)
        result = {
            "recipe": recipe, "command": command_line("detection.py", argv),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "threads": threads,
            "overrides": overrides, "test_map_50": metrics["test_map_50"], "test_map": metrics["test_map"],
            "test_map_75": metrics["test_map_75"], "test_ap_50_per_class": metrics["test_ap_50_per_class"],
            "train_seconds": metrics["train_seconds"], "wall_seconds": round(seconds, 1),
            "train_images_per_second": metrics["train_images_per_second"],
            "training_gflops_per_image": round(flops / 1e9, 4), "achieved_gflops": round(achieved, 2),
            "matmul_peak_gflops_before": round(peak_before, 1), "matmul_peak_gflops_after": round(peak_after, 1),
            "fraction_of_peak": round(achieved / max(peak_before, peak_after), 4),
            "detect_images_per_second_batch_32": round(detection_speed(model, images, 32), 1),
            "detect_images_per_second_batch_1": round(detection_speed(model, images[:64], 1), 1),
            **two_thread_speeds(model, images),
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_images": metrics["train_images"], "test_images": metrics["test_images"],
        }
        RESULTS.mkdir(exist_ok=True)
        suffix = "-measure-only" if args.measure_only else ""
        (RESULTS / f"detection-{recipe}{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        print(f"| {recipe} | {result['test_map_50']:.3f} | {result['test_map']:.3f} | {result['train_seconds'] / 60:.1f} min "
              f"| {result['train_images_per_second']:.1f} | {result['fraction_of_peak']:.1%} of "
              f"{max(peak_before, peak_after):.0f} GFLOP/s | {result['detect_images_per_second_batch_32']:.1f} / "
              f"{result['detect_images_per_second_batch_1']:.1f} |")


if __name__ == "__main__":
    main()
