"""One training epoch, side by side: a hand-written PyTorch loop, deepzen ``fit``, Keras 3 (torch
backend) and PyTorch Lightning, on MNIST (60,000 images) with a LeNet-5-sized CNN (batch 128) and a
784-256-256-10 MLP (batch 64). The same two networks built from deepzen layers, once as a ``Sequential``
and once with the Functional API (``Input`` -> layers -> ``Model(inputs, outputs)``), show what the graph
model costs over the plain stack (``--frameworks deepzen_sequential,deepzen_functional`` runs just those).

Every measurement runs in a fresh subprocess (same threads, same conditions), the frameworks are
interleaved within each repeat, and each worker times its *second* epoch (the first one pays for
one-off setup in every framework). The table reports medians over repeats.

    python benchmarks/training_speed.py --repeats 3        # needs `make bench-deps` for Keras/Lightning

Writes ``benchmarks/results/training_speed.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BATCH = {"mlp": 64, "lenet5": 128}
FRAMEWORKS = ("hand", "hand_fused", "deepzen", "deepzen_sequential", "deepzen_functional", "keras", "lightning")
LABELS = {"hand": "hand loop, default Adam", "hand_fused": "hand loop, fused Adam", "deepzen": "deepzen fit",
          "deepzen_sequential": "deepzen layers, Sequential", "deepzen_functional": "deepzen layers, Functional API",
          "keras": "Keras 3 (torch backend)", "lightning": "PyTorch Lightning"}
RESULTS = Path(__file__).parent / "results"
# extra columns: (heading, (framework, divided by these frameworks))
RATIOS = [("deepzen / hand loop (default, fused)", ("deepzen", "hand", "hand_fused")),
          ("Functional / Sequential", ("deepzen_functional", "deepzen_sequential"))]


# -- data and models, shared by the workers ----------------------------------------------------------
def mnist(model: str):
    import numpy as np

    try:
        from deepzen.data.images import load_mnist

        x, y, _, _ = load_mnist()
        x = (x.astype("float32") / 255.0)
    except FileNotFoundError:  # MNIST-shaped random data when the files are not there
        rng = np.random.default_rng(0)
        x, y = rng.random((60000, 28, 28), dtype="float32"), rng.integers(0, 10, 60000)
    x = x.reshape(len(x), 784) if model == "mlp" else x[:, None]
    return x, y.astype("int64")


def torch_module(model: str):
    from torch import nn

    if model == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    from deepzen.vision.models import create

    return create("lenet5", num_classes=10, in_channels=1)


def training_flops_per_sample(model: str) -> float:
    """Forward multiply-adds x 2 FLOPs x 3 (forward + backward for inputs and weights)."""
    import torch

    from deepzen.models import Model
    from deepzen.training.summary import multiply_adds

    module = Model(torch_module(model))
    total = []
    handles = [m.register_forward_hook(lambda m, i, o: total.append(multiply_adds(m, i, o) or 0))
               for m in module.modules() if not any(True for _ in m.children())]
    shape = (1, 784) if model == "mlp" else (1, 1, 28, 28)
    with torch.no_grad():
        module(torch.zeros(shape))
    for handle in handles:
        handle.remove()
    return 6.0 * sum(total)


def matmul_peak_gflops() -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * 2048 ** 3 / min(times) / 1e9


# -- workers: each trains two epochs and reports the second one's seconds -----------------------------
def worker_hand(model: str, fused: bool) -> float:
    import torch
    from _common import hand_written_epoch

    torch.manual_seed(0)
    x_np, y_np = mnist(model)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    net = torch_module(model)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True if fused else None)
    seconds = [hand_written_epoch(net, optimizer, x, y, BATCH[model]) for _ in range(2)]
    return seconds[1]


def worker_deepzen(model: str) -> float:
    import deepzen
    from deepzen.callbacks import Callback
    from deepzen.layers import Dense
    from deepzen.models import Model, Sequential

    deepzen.seed(0)
    x, y = mnist(model)
    if model == "mlp":
        net = Sequential([Dense(256, input_dim=784, activation="relu"), Dense(256, activation="relu"), Dense(10)])
    else:
        net = Model(torch_module(model))
    net.compile(optimizer="adam", loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True))
    timer = EpochTimer()
    net.fit(x, y, batch_size=BATCH[model], epochs=2, verbose=0, callbacks=[timer.as_deepzen(Callback)])
    return timer.seconds[1]


def deepzen_layers(model: str) -> list:
    """The MLP or LeNet-5 (as the zoo's: 5x5 convs, max pooling, ReLU, 120-84-10) from deepzen layers."""
    from deepzen.layers import Conv2D, Dense, Flatten, MaxPooling2D

    if model == "mlp":
        return [Dense(256, activation="relu"), Dense(256, activation="relu"), Dense(10)]
    return [Conv2D(6, 5, padding="same", activation="relu"), MaxPooling2D(2), Conv2D(16, 5, activation="relu"),
            MaxPooling2D(2), Flatten(), Dense(120, activation="relu"), Dense(84, activation="relu"), Dense(10)]


def worker_deepzen_layers(model: str, functional: bool) -> float:
    import deepzen
    from deepzen.callbacks import Callback
    from deepzen.layers import Input
    from deepzen.models import Model, Sequential

    deepzen.seed(0)
    x, y = mnist(model)
    inputs = Input(x.shape[1:])
    if functional:
        outputs = inputs
        for layer in deepzen_layers(model):
            outputs = layer(outputs)
        net = Model(inputs, outputs)
    else:
        net = Sequential([inputs, *deepzen_layers(model)])
    net.compile(optimizer="adam", loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True))
    timer = EpochTimer()
    net.fit(x, y, batch_size=BATCH[model], epochs=2, verbose=0, callbacks=[timer.as_deepzen(Callback)])
    return timer.seconds[1]


def paired_functional_epochs(model: str, pairs: int) -> dict[str, list[float]]:
    """Epoch seconds of the Sequential and the Functional version of ``model`` trained side by side in one
    process, epochs alternating (ABBA...), after one warm-up epoch each: on a busy machine both see the same
    load, so their ratio is far steadier than across processes."""
    import deepzen
    from deepzen.layers import Input
    from deepzen.models import Model, Sequential

    x, y = mnist(model)
    nets = {}
    for name in ("deepzen_sequential", "deepzen_functional"):
        deepzen.seed(0)
        inputs = Input(x.shape[1:])
        if name == "deepzen_functional":
            outputs = inputs
            for layer in deepzen_layers(model):
                outputs = layer(outputs)
            nets[name] = Model(inputs, outputs)
        else:
            nets[name] = Sequential([inputs, *deepzen_layers(model)])
        nets[name].compile(optimizer="adam",
                           loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True))
        nets[name].fit(x, y, batch_size=BATCH[model], epochs=1, verbose=0)  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in nets}
    for pair in range(pairs):
        order = list(nets) if pair % 2 == 0 else list(reversed(nets))
        for name in order:
            start = time.perf_counter()
            nets[name].fit(x, y, batch_size=BATCH[model], epochs=1, verbose=0)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def worker_keras(model: str) -> float:
    os.environ["KERAS_BACKEND"] = "torch"
    import keras

    keras.utils.set_random_seed(0)
    x, y = mnist(model)
    if model == "mlp":
        layers = [keras.Input((784,)), keras.layers.Dense(256, activation="relu"),
                  keras.layers.Dense(256, activation="relu"), keras.layers.Dense(10)]
    else:
        x = x.transpose(0, 2, 3, 1)  # Keras is channels-last
        layers = [keras.Input((28, 28, 1)), keras.layers.Conv2D(6, 5, padding="same", activation="relu"),
                  keras.layers.MaxPooling2D(2), keras.layers.Conv2D(16, 5, activation="relu"),
                  keras.layers.MaxPooling2D(2), keras.layers.Flatten(), keras.layers.Dense(120, activation="relu"),
                  keras.layers.Dense(84, activation="relu"), keras.layers.Dense(10)]
    net = keras.Sequential(layers)
    net.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    timer = EpochTimer()
    net.fit(x, y, batch_size=BATCH[model], epochs=2, verbose=0, callbacks=[timer.as_keras(keras.callbacks.Callback)])
    return timer.seconds[1]


def worker_lightning(model: str) -> float:
    import lightning as L
    import torch
    import torch.nn.functional as F

    L.seed_everything(0, verbose=False)
    x, y = mnist(model)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                                       batch_size=BATCH[model], shuffle=True)

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch_module(model)

        def training_step(self, batch, index):
            inputs, targets = batch
            return F.cross_entropy(self.net(inputs), targets)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    timer = EpochTimer()
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[timer.as_lightning(L.Callback)])
    trainer.fit(Module(), data)
    return timer.seconds[1]


class EpochTimer:
    """Wall time of each epoch, as a callback of whichever framework runs."""

    def __init__(self):
        self.seconds: list[float] = []

    def begin(self, *args, **kwargs):
        self.start = time.perf_counter()

    def end(self, *args, **kwargs):
        self.seconds.append(time.perf_counter() - self.start)

    def as_deepzen(self, base):
        timer = self
        return type("Timer", (base,), {"on_epoch_begin": lambda s, *a: timer.begin(),
                                       "on_epoch_end": lambda s, *a: timer.end()})()

    def as_keras(self, base):
        timer = self
        return type("Timer", (base,), {"on_epoch_begin": lambda s, *a, **k: timer.begin(),
                                       "on_epoch_end": lambda s, *a, **k: timer.end()})()

    def as_lightning(self, base):
        timer = self
        return type("Timer", (base,), {"on_train_epoch_start": lambda s, *a: timer.begin(),
                                       "on_train_epoch_end": lambda s, *a: timer.end()})()


def run_worker(framework: str, model: str) -> float:
    if framework in ("hand", "hand_fused"):
        return worker_hand(model, fused=framework == "hand_fused")
    if framework in ("deepzen_sequential", "deepzen_functional"):
        return worker_deepzen_layers(model, functional=framework == "deepzen_functional")
    return {"deepzen": worker_deepzen, "keras": worker_keras, "lightning": worker_lightning}[framework](model)


def import_seconds(module: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True, env={**os.environ,
                                                                                  "KERAS_BACKEND": "torch"})
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def available(framework: str) -> bool:
    module = {"keras": "keras", "lightning": "lightning"}.get(framework)
    if module is None:
        return True
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="mlp,lenet5")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="a comma-separated subset")
    parser.add_argument("--worker", nargs=2, metavar=("FRAMEWORK", "MODEL"), help=argparse.SUPPRESS)
    parser.add_argument("--paired", type=int, default=0, metavar="PAIRS",
                        help="instead: Sequential vs Functional in one process, PAIRS alternating epochs each")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps({"seconds": run_worker(*args.worker)}))
        return
    if args.paired:
        import torch

        lines = [f"# Functional API vs Sequential: one process, {args.paired} alternating epochs each", "",
                 f"Machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} "
                 f"thread(s); load average {os.getloadavg()[0]:.1f} at the start; "
                 f"date {time.strftime('%Y-%m-%d')}; command: `python benchmarks/training_speed.py --paired "
                 f"{args.paired} --models {args.models}`", "",
                 "| model | Sequential (median) | Functional (median) | Functional / Sequential (median of pairs) |",
                 "|---|---:|---:|---:|"]
        for model in args.models.split(","):
            seconds = paired_functional_epochs(model, args.paired)
            sequential, graph = seconds["deepzen_sequential"], seconds["deepzen_functional"]
            ratio = statistics.median(g / s for g, s in zip(graph, sequential))
            print(model, {k: [round(v, 2) for v in vals] for k, vals in seconds.items()}, flush=True)
            lines.append(f"| {model} (batch {BATCH[model]}) | {statistics.median(sequential):.2f} s | "
                         f"{statistics.median(graph):.2f} s | {ratio:.3f} |")
        lines.append(f"\nLoad average at the end: {os.getloadavg()[0]:.1f}.")
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "training_speed_functional_paired.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return

    import torch

    models = args.models.split(",")
    frameworks = [f for f in args.frameworks.split(",") if f in FRAMEWORKS and available(f)]
    samples: dict[tuple[str, str], list[float]] = {}
    for repeat in range(args.repeats):
        for model in models:
            order = frameworks[repeat % len(frameworks):] + frameworks[:repeat % len(frameworks)]
            for framework in order:
                out = subprocess.run([sys.executable, __file__, "--worker", framework, model], check=True,
                                     capture_output=True, text=True)
                seconds = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
                samples.setdefault((framework, model), []).append(seconds)
                print(f"repeat {repeat + 1}: {model:7s} {framework:11s} {seconds:6.2f} s", flush=True)

    ratios = [(heading, columns) for heading, columns in RATIOS if columns[0] in frameworks]
    subset = "" if args.frameworks == parser.get_default("frameworks") else f" --frameworks {args.frameworks}"
    peak = matmul_peak_gflops()
    lines = [f"# One training epoch on MNIST (60,000 samples), medians of {args.repeats} runs", "",
             f"Machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads; "
             f"date {time.strftime('%Y-%m-%d')}; command: `python benchmarks/training_speed.py --repeats "
             f"{args.repeats}{subset}`", "",
             "| model | " + " | ".join([LABELS[f] for f in frameworks] + [heading for heading, _ in ratios]) + " |",
             "|---|" + "---:|" * (len(frameworks) + len(ratios))]
    for model in models:
        median = {f: statistics.median(samples[(f, model)]) for f in frameworks}
        cells = [f"{median[f]:.2f} s" for f in frameworks]
        cells += [", ".join(f"{median[numerator] / median[d]:.3f}" for d in denominators if d in median) or "-"
                  for _, (numerator, *denominators) in ratios]
        lines.append(f"| {model} (batch {BATCH[model]}) | " + " | ".join(cells) + " |")
    lines += ["", f"fp32 matmul peak measured here (2048x2048): {peak:.0f} GFLOP/s."]
    for model in models:
        if model == "lenet5":
            flops = training_flops_per_sample(model) * 60000
            for f in [f for f in ("hand", "deepzen") if f in frameworks]:
                rate = flops / statistics.median(samples[(f, model)]) / 1e9
                lines.append(f"LeNet-5 training throughput, {LABELS[f]}: {rate:.1f} GFLOP/s = {rate / peak:.1%} of peak.")
    lines += ["", "`import` time (fresh interpreter, median of 3): " + ", ".join(
        f"{m} {import_seconds(m, 3):.2f} s" for m in ["torch", "deepzen.models", "keras", "lightning"]
        if m in ("torch", "deepzen.models") or available(m))]
    RESULTS.mkdir(exist_ok=True)
    name = "training_speed" + ("_" + "-".join(frameworks) if subset else "")  # a subset keeps the full table
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
