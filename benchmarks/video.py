"""Video on Moving MNIST: the ``moving-mnist-video`` recipe's 3D CNN against the 2D CNN averaged over
the frames, and the 3D CNN's training throughput as a fraction of this machine's float32 matmul peak.

The recipe trains on clips of two MNIST digits (different classes) moving across a 64x64 canvas for
20 frames and bouncing off its edges, drawn from MNIST's training digits; it tests on clips drawn
from MNIST's test digits. Each clip's label gives, for each digit class, "absent" or the direction
the digit sets off in (left, right, up, down). Target for the 3D CNN: direction accuracy >= 0.90
(of the digits that appear, those predicted present and moving the right way). The frame average
sees the same frames in no order, so it can tell at best the axis of motion, not its sign::

    python benchmarks/video.py                      # writes benchmarks/results/video.md
    python benchmarks/video.py --set model=r2plus1d
    python benchmarks/video.py --set epochs=1 --set train_clips=200   # a quick look

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

TARGET = 0.90
SCORES = {"digits_accuracy": "which digits appear (clip exact)", "direction_accuracy": "direction of each digit",
          "clip_accuracy": "whole clip right"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a recipe setting")
    parser.add_argument("--run-dir", default=None, help="default: runs/benchmark-moving-mnist-video-<model>")
    args = parse_arguments(parser, argv)

    import deepzen
    from deepzen.data.moving_mnist import LABEL_NAMES, load_moving_mnist
    from deepzen.recipes import RECIPES, make_config, parse_overrides
    from deepzen.vision import video_recipes  # noqa: F401  (registers the recipe)
    from deepzen.vision.video import create

    overrides = parse_overrides(args.set)
    config = make_config(RECIPES.get("moving-mnist-video"), overrides)
    run_dir = args.run_dir or f"runs/benchmark-moving-mnist-video-{config.model}"
    load = os.getloadavg()[0]
    metrics, seconds = run_timed("moving-mnist-video", overrides, run_dir)
    print(json.dumps(metrics, indent=1), flush=True)

    x, y, _, _ = load_moving_mnist(config.data, train_clips=config.batch_size * 10, test_clips=1, seed=1,
                                   frames=config.frames, shared_direction=config.shared_direction)
    loss = deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True)
    speeds = {}
    for name in (config.model, "frame_average"):
        model = create(name, (10, len(LABEL_NAMES)), x.shape[1:], filters=config.filters)
        speeds[name] = training_throughput(model, loss, x.astype(np.float32), y, config.batch_size, steps=10)
    peak = matmul_peak_gflops()

    met = "meets" if metrics["test_direction_accuracy"] >= TARGET else "does NOT meet"
    trained = "both models" if config.baseline else f"the {config.model}"
    baseline_header = (f"frame average ({metrics['baseline_parameters']:,} parameters)" if config.baseline
                       else "frame average (not run: baseline=false)")
    lines = [
        "# Video: a 3D CNN against a frame-averaged 2D CNN on Moving MNIST", "",
        f"Command: `{command_line('video.py', argv)}`; date {time.strftime('%Y-%m-%d %H:%M')}; "
        f"{os.cpu_count()}-core CPU, shared (load average {load:.1f} at the start), {torch.get_num_threads()} torch "
        f"thread(s), torch {torch.__version__}.", "",
        f"Settings: `{json.dumps({k: v for k, v in vars(config).items() if k not in ('verbose', 'data')})}`; "
        f"{metrics['train_clips']} training clips, {metrics['test_clips']} test clips (2 digits, "
        f"{config.frames} frames of 64x64); {trained} trained in {seconds / 60:.1f} min.", "",
        f"| test accuracy | {config.model} ({metrics['test_parameters']:,} parameters) | {baseline_header} |",
        "|---|---:|---:|",
    ]
    for key, label in SCORES.items():
        baseline = f"{metrics[f'baseline_{key}']:.3f}" if f"baseline_{key}" in metrics else "not run"
        lines.append(f"| {label} | {metrics[f'test_{key}']:.3f} | {baseline} |")
    lines += ["", f"Target for the 3D CNN: direction accuracy >= {TARGET}: it {met} it.", "",
              "Training throughput (`Model.fit`, batch "
              f"{config.batch_size}, median of 3 timed fits of 10 steps; GFLOP counted by FlopCounterMode, forward + "
              f"backward) against the measured float32 matmul peak ({peak:.1f} GFLOP/s, 2048x2048, same threads, "
              "same process):", "",
              "| model | clips/s | GFLOP per step | GFLOP/s | fraction of peak |", "|---|---:|---:|---:|---:|"]
    for name, speed in speeds.items():
        lines.append(f"| {name} | {speed['samples_per_second']:.1f} | {speed['gflops_per_step']:.2f} | "
                     f"{speed['gflops_per_second']:.1f} | {speed['gflops_per_second'] / peak:.1%} |")
    write_report(RESULTS / f"video_{config.model}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
