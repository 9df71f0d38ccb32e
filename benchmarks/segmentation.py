"""Segmentation on MNIST scenes: the ``mnist-segmentation`` recipe's test mIoU, and the U-Net's training
throughput as a fraction of this machine's float32 matmul peak.

The recipe trains the U-Net (Conv2DTranspose up-sampling, skip connections) on scenes of 1-3 MNIST
digits (64x64, 11 pixel classes: background and the ten digits) drawn from MNIST's training digits,
and measures the mean IoU over the 11 classes on test scenes drawn from MNIST's test digits.
Target: mIoU >= 0.85. Then, in the same process, it times ``Model.fit`` steps of the same U-Net and
measures the peak with a 2048x2048 float32 matmul (see ``_throughput.py``)::

    python benchmarks/segmentation.py                 # writes benchmarks/results/segmentation.md
    python benchmarks/segmentation.py --set epochs=2 --set train_scenes=500   # a quick look

Needs MNIST in ``$DEEPZEN_DATA/mnist`` (default: ../shared/data next to the repository, when present).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from _common import RESULTS, command_line, parse_arguments, run_timed, write_report
from _throughput import matmul_peak_gflops, training_throughput

TARGET = 0.85


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a recipe setting")
    parser.add_argument("--run-dir", default="runs/benchmark-mnist-segmentation")
    args = parse_arguments(parser, argv)

    from deepzen.data.mask_scenes import NUM_CLASSES, load_mask_scenes
    from deepzen.recipes import RECIPES, make_config, parse_overrides
    from deepzen.vision import segmentation_recipes  # noqa: F401  (registers the recipe)
    from deepzen.vision.segmentation import unet
    from deepzen.vision.segmentation_recipes import segmentation_loss

    overrides = parse_overrides(args.set)
    config = make_config(RECIPES.get("mnist-segmentation"), overrides)
    load = os.getloadavg()[0]
    metrics, seconds = run_timed("mnist-segmentation", overrides, args.run_dir)
    print(json.dumps(metrics, indent=1), flush=True)

    x, y, _, _ = load_mask_scenes(config.data, train_scenes=config.batch_size * 20, test_scenes=1, seed=1)
    model = unet(NUM_CLASSES, x.shape[1:], filters=config.filters, depth=config.depth, skips=config.skips)
    speed = training_throughput(model, segmentation_loss(config.loss, config.background_weight), x.astype(np.float32), y, config.batch_size)
    peak = matmul_peak_gflops()

    per_class = " | ".join(f"{metrics[f'test_iou_{name}']:.3f}" for name in
                           ("background", *(str(d) for d in range(10))))
    met = "meets" if metrics["test_mean_iou"] >= TARGET else "does NOT meet"
    lines = [
        "# Segmentation: U-Net on MNIST scenes with per-pixel digit masks", "",
        f"Command: `{command_line('segmentation.py', argv)}`; date {time.strftime('%Y-%m-%d %H:%M')}; "
        f"{os.cpu_count()}-core CPU, shared (load average {load:.1f} at the start), {torch.get_num_threads()} torch "
        f"thread(s), torch {torch.__version__}.", "",
        f"Settings: `{json.dumps({k: v for k, v in vars(config).items() if k not in ('verbose', 'data')})}`; "
        f"{metrics['parameters']:,} parameters; {metrics['train_scenes']} training scenes, "
        f"{metrics['test_scenes']} test scenes; the run took {seconds / 60:.1f} min.", "",
        f"**Test mIoU over the 11 classes: {metrics['test_mean_iou']:.3f}** (target {TARGET}: {met} it); pixel "
        f"accuracy {metrics['test_pixel_accuracy']:.4f}.", "",
        "| background | " + " | ".join(str(d) for d in range(10)) + " |", "|" + "---:|" * 11,
        f"| {per_class} |", "",
        "Training throughput of the U-Net (`Model.fit`, batch "
        f"{config.batch_size}, median of 3 timed fits of 20 steps): {speed['samples_per_second']:.1f} images/s, "
        f"{speed['gflops_per_step']:.2f} GFLOP per step (forward + backward, counted by FlopCounterMode), "
        f"{speed['gflops_per_second']:.1f} GFLOP/s = **{speed['gflops_per_second'] / peak:.1%} of the measured "
        f"float32 matmul peak** ({peak:.1f} GFLOP/s, 2048x2048, same threads, same process).",
    ]
    write_report(RESULTS / "segmentation.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
