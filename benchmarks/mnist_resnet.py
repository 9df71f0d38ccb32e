"""The ``mnist-resnet`` recipe (CIFAR ResNet-20 adapted to 1x28x28, with augmentation): target >= 99.5%.

Runs the registered recipe with its defaults (or ``--set key=value`` overrides, as on the command
line) and writes the test accuracy, the wall time and the command to ``benchmarks/results/``::

    python benchmarks/mnist_resnet.py                          # the full run (15 epochs)
    python benchmarks/mnist_resnet.py --estimate 20            # time 20 training steps, extrapolate
    # the paper's CIFAR-10 run:
    python benchmarks/mnist_resnet.py --set dataset=cifar10 --set epochs=164 --set schedule=step \\
        --set milestones=82,123 --set weight_decay=1e-4 --set nesterov=false --set warmup_epochs=0

CIFAR-10 (target: 91.25% for ResNet-20, He et al. 2016, Table 6) needs ``cifar-10-batches-py/`` in
``$DEEPZEN_DATA/cifar10`` (or ``--set data=PATH``); it is not in this project's shared data.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
SHARED_DATA = ROOT.parents[1] / "shared" / "data"
TRAIN_SIZES = {"cifar10": 50000}  # MNIST-format sets: 60,000


def estimate(config, steps: int) -> dict:
    """Seconds per training step of the recipe's model, augmentation and optimizer (the second of two
    epochs of ``steps`` steps, through ``fit``), and the full run's time extrapolated from it."""
    import math

    import torch

    import deepzen
    from deepzen.callbacks import Callback
    from deepzen.vision.tasks import fit_classifier, image_classifier, load_image_data

    deepzen.seed(config.seed)
    data = load_image_data(config.dataset, config.data, train_samples=config.batch_size * steps)
    augment = config.augment if config.augment != "auto" else "cifar" if config.dataset == "cifar10" else "digits"
    model = image_classifier(config.model, data, augment=augment, seed=config.seed)
    seconds = []

    class EpochTimer(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    optimizer = deepzen.optimizers.SGD(config.learning_rate, momentum=config.momentum, nesterov=config.nesterov,
                                       weight_decay=config.weight_decay)
    fit_classifier(model, data, optimizer, epochs=2, batch_size=config.batch_size, verbose=0,
                   callbacks=[EpochTimer()])
    per_step = seconds[1] / steps
    steps_per_epoch = math.ceil(TRAIN_SIZES.get(config.dataset, 60000) / config.batch_size)
    return {"seconds_per_step": per_step, "steps_per_epoch": steps_per_epoch,
            "estimated_epoch_minutes": per_step * steps_per_epoch / 60,
            "estimated_run_hours": per_step * steps_per_epoch * config.epochs / 3600,
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe setting")
    parser.add_argument("--estimate", type=int, metavar="STEPS", help="only time this many training steps")
    parser.add_argument("--run-dir", default="runs/benchmark-mnist-resnet")
    args = parser.parse_args()
    if "DEEPZEN_DATA" not in os.environ and SHARED_DATA.is_dir():
        os.environ["DEEPZEN_DATA"] = str(SHARED_DATA)

    import torch

    from deepzen.cli import parse_overrides
    from deepzen.recipes import RECIPES, make_config, run_recipe
    from deepzen.vision import recipes  # noqa: F401  (registers the recipes)

    overrides = parse_overrides(args.set)
    config = make_config(RECIPES.get("mnist-resnet"), overrides)
    threads = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    command = threads + "python benchmarks/mnist_resnet.py " + " ".join(
        [f"--set {item}" for item in args.set] + ([f"--estimate {args.estimate}"] if args.estimate else []))
    machine = (f"{os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
               f"load average {os.getloadavg()[0]:.1f} at the start")
    name = f"mnist_resnet{'_' + config.dataset if config.dataset != 'mnist' else ''}"
    if args.estimate:
        result = estimate(config, args.estimate)
        lines = [f"# `mnist-resnet` time estimate ({config.model}, {config.dataset})", "",
                 f"Command: `{command.strip()}`; date {time.strftime('%Y-%m-%d %H:%M')}; {machine}.", "",
                 f"{result['seconds_per_step']:.2f} s per training step (batch {config.batch_size}, augmentation "
                 f"included), {result['steps_per_epoch']} steps per epoch: about "
                 f"{result['estimated_epoch_minutes']:.1f} min per epoch, {result['estimated_run_hours']:.1f} h "
                 f"for {config.epochs} epochs."]
        name += "_estimate"
    else:
        start = time.perf_counter()
        metrics = run_recipe("mnist-resnet", overrides, args.run_dir)
        hours = (time.perf_counter() - start) / 3600
        target = 0.9125 if config.dataset == "cifar10" else 0.995
        lines = [f"# `mnist-resnet`: {config.model} on {config.dataset}", "",
                 f"Command: `{command.strip()}`; date {time.strftime('%Y-%m-%d %H:%M')}; {machine}.",
                 f"Settings: {json.dumps({k: v for k, v in vars(config).items() if k != 'verbose'})}", "",
                 f"Test accuracy {metrics['test_accuracy']:.2%} (target {target:.2%}: "
                 f"{'reached' if metrics['test_accuracy'] >= target else 'NOT reached'}) on "
                 f"{metrics['test_samples']} test images after {config.epochs} epochs; wall time {hours:.2f} h "
                 f"(whole recipe: data, training, report).", "",
                 f"Run folder (model, curves, confusion matrix): `{args.run_dir}`."]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
