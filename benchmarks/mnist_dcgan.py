"""DCGAN on MNIST: Fréchet distance in LeNet-5 features and mode coverage of 10,000 generated digits.

Runs the ``mnist-dcgan`` recipe (the same one ``deepzen train mnist-dcgan`` runs) and writes
``benchmarks/results/mnist_dcgan.md`` and the final fixed-noise sample grid
``benchmarks/results/mnist_dcgan_samples.png``. The LeNet-5 that defines the feature space is
trained once and kept in ``<run-dir>/cache``; later runs reuse it, so their distances are comparable.

    python benchmarks/mnist_dcgan.py                       # the recipe's settings (15 epochs)
    python benchmarks/mnist_dcgan.py --epochs 4 --no-spectral-norm --generator-average 0
    python benchmarks/mnist_dcgan.py --epochs 1 --train-images 1024 --classifier-epochs 1 \
        --run-dir /tmp/dcgan-smoke --results /tmp/dcgan-smoke/results   # a smoke run, not a result

The GAN trains with ``Model.fit`` (its ``train_step`` updates D, then G), as in ``deepzen train``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MIN_CLASS_FRACTION = 0.05  # the coverage target: every digit at least 5% of the samples


def parse_args(argv=None) -> argparse.Namespace:
    from deepzen.generative.recipes import MnistDCGANConfig

    defaults = MnistDCGANConfig()  # the recipe's settings are the benchmark's defaults
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--base-filters", type=int, default=defaults.base_filters)
    parser.add_argument("--minibatch-std", action=argparse.BooleanOptionalAction, default=defaults.minibatch_std,
                        help="a minibatch std-dev channel in D")
    parser.add_argument("--spectral-norm", action=argparse.BooleanOptionalAction, default=defaults.spectral_norm,
                        help="spectral norm instead of batch norm in D")
    parser.add_argument("--discriminator-lr", type=float, default=defaults.discriminator_learning_rate,
                        help="D's learning rate (0: G's, 2e-4)")
    parser.add_argument("--generator-average", type=float, default=defaults.generator_average,
                        help="sample from a moving average of G's weights with this decay (0: the live G)")
    parser.add_argument("--classifier-epochs", type=int, default=defaults.classifier_epochs)
    parser.add_argument("--train-images", type=int, default=defaults.train_images,
                        help="0: all 60,000; fewer for a quick smoke run of the script (not a result)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--run-dir", default=str(ROOT / "runs" / "bench-mnist-dcgan"))
    parser.add_argument("--results", default=str(RESULTS), help="folder for the report and the sample grid")
    return parser.parse_args(argv)


def shown_path(path: Path) -> str:
    """``path`` relative to the project when it is inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def report(metrics: dict, args: argparse.Namespace, command: str, seconds: float) -> str:
    fractions = metrics["class_fractions"]
    covered = metrics["classes_covered"] == 10 and metrics["min_class_fraction"] >= MIN_CLASS_FRACTION
    lines = [
        "# DCGAN on MNIST",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}.",
        "",
        f"DCGAN (generator {2 * args.base_filters}->{args.base_filters}->1 channels from a 7x7 projection of "
        f"100-d noise, discriminator {args.base_filters}->{2 * args.base_filters}"
        f"{', spectral normalization' if args.spectral_norm else ''}"
        f"{' + a minibatch std-dev channel' if args.minibatch_std else ''}), Adam(2e-4, beta_1=0.5)"
        f"{f' (discriminator {args.discriminator_lr:g})' if args.discriminator_lr else ''}, "
        f"one-sided label smoothing 0.1"
        f"{f', samples from a moving average of the generator (decay {args.generator_average:g})' if args.generator_average else ''}"
        f", batch {args.batch_size}, {metrics['epochs']} epochs over "
        f"{metrics['train_images']:,} training digits: {metrics['train_seconds']:.0f} s of training "
        f"({metrics['train_seconds'] / max(metrics['epochs'], 1):.0f} s per epoch), {seconds:.0f} s in all.",
        "",
        "## Fréchet distance to the 10,000 test digits",
        "",
        f"Features: F6 (84 units) of a LeNet-5 trained on MNIST ({args.classifier_epochs} epochs, test accuracy "
        f"{metrics['classifier_test_accuracy']:.2%}). Lower is better; not comparable with Inception-based FIDs.",
        "",
        "| samples (10,000 each) | Fréchet distance |",
        "| --- | ---: |",
        f"| DCGAN after training | {metrics['fd_generated']:.2f} |",
        f"| the same generator before training | {metrics['fd_untrained_generator']:.2f} |",
        f"| real training digits (the floor) | {metrics['fd_real_train']:.2f} |",
        "",
        "## Mode coverage",
        "",
        f"LeNet-5's labels of 10,000 generated digits: {metrics['classes_covered']} of 10 classes, the rarest at "
        f"{metrics['min_class_fraction']:.1%} (target: all 10, none below {MIN_CLASS_FRACTION:.0%}): "
        f"**{'met' if covered else 'not met'}**.",
        "",
        "| digit | " + " | ".join(str(digit) for digit in range(10)) + " |",
        "| --- |" + " ---: |" * 10,
        "| share | " + " | ".join(f"{fraction:.1%}" for fraction in fractions) + " |",
        "",
        f"Final epoch: D(x) = {metrics['final_d_real']:.3f}, D(G(z)) = {metrics['final_d_fake']:.3f}, "
        f"discriminator loss {metrics['final_d_loss']:.3f}, generator loss {metrics['final_g_loss']:.3f}.",
        "",
        "After each epoch (10,000 samples from one fixed noise batch):",
        "",
        "| epoch | Fréchet distance | rarest class |",
        "| ---: | ---: | ---: |",
        *(f"| {epoch} | {fd:.2f} | {fraction:.1%} |" for epoch, (fd, fraction) in
          enumerate(zip(metrics["fd_per_epoch"], metrics["min_class_fraction_per_epoch"]), start=1)),
        "",
        f"Samples from fixed noise after the last epoch: `{shown_path(Path(args.results) / 'mnist_dcgan_samples.png')}`.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    shared = ROOT.parent / "shared" / "data"
    if not os.environ.get("DEEPZEN_DATA") and shared.is_dir():
        os.environ["DEEPZEN_DATA"] = str(shared)

    import deepzen.generative.recipes  # noqa: F401 - registers mnist-dcgan
    from deepzen.recipes import run_recipe

    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "base_filters": args.base_filters,
                 "minibatch_std": args.minibatch_std, "spectral_norm": args.spectral_norm,
                 "discriminator_learning_rate": args.discriminator_lr, "generator_average": args.generator_average,
                 "classifier_epochs": args.classifier_epochs, "train_images": args.train_images,
                 "seed": args.seed,
                 "cache_dir": str(Path(args.run_dir) / "cache")}
    start = time.perf_counter()
    metrics = run_recipe("mnist-dcgan", overrides, args.run_dir)
    seconds = time.perf_counter() - start

    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    if metrics["samples_png"]:
        shutil.copyfile(metrics["samples_png"], results / "mnist_dcgan_samples.png")
    threads = [f"{name}={os.environ[name]}" for name in ("OMP_NUM_THREADS",) if name in os.environ]
    command = " ".join(shlex.quote(part) for part in [*threads, "python", "benchmarks/mnist_dcgan.py", *sys.argv[1:]])
    (results / "mnist_dcgan.md").write_text(report(metrics, args, command, seconds))
    print((results / "mnist_dcgan.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
