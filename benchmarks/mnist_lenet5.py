"""LeNet-5 on MNIST to 99.0% test accuracy: deepzen vs a hand-written PyTorch loop vs Keras 3 (torch backend).

All three train the same network (LeNet-5 with ReLU and max pooling, 61,706 parameters) on the same
normalized arrays with the ``mnist-lenet5`` recipe's settings: Adam at 2e-3 with a per-epoch cosine
decay over 12 epochs, batch 128, no augmentation. deepzen runs the recipe's own building blocks
(:mod:`deepzen.vision.tasks`), whose ``compile`` trains the convolutions channels-last on the CPU (its
default ``memory_format="auto"``); the hand loop is what a careful PyTorch user writes (tensors in memory,
a random permutation per epoch, index slicing, default ``torch.optim.Adam``, no per-step ``.item()``);
Keras builds the same layers channels-last with its default initializers.

After every epoch each framework evaluates the 10,000 test images (not counted in the training
time). "Time to 99.0%" is the training time summed up to the first epoch that reaches 99.0%.
Each framework runs in a fresh subprocess, one after the other; repeat k seeds every framework with k::

    python benchmarks/mnist_lenet5.py                 # writes benchmarks/results/mnist_lenet5.md
    python benchmarks/mnist_lenet5.py --repeats 3 --frameworks deepzen,hand
    python benchmarks/mnist_lenet5.py --repeats 5 --epochs 6   # a 6-epoch cosine: mnist_lenet5_6_epochs.md

Needs MNIST in ``$DEEPZEN_DATA/mnist`` (default: ../shared/data next to the repository, when present).
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

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
SHARED_DATA = ROOT.parents[1] / "shared" / "data"
FRAMEWORKS = ("deepzen", "hand", "keras")
LABELS = {"deepzen": "deepzen (`mnist-lenet5` recipe code)", "hand": "hand-written PyTorch loop",
          "keras": "Keras 3, torch backend"}
BATCH, LEARNING_RATE, TARGET = 128, 2e-3, 0.99
EPOCHS = 12  # the recipe's; --epochs sets a shorter cosine schedule for every framework


def cosine(epoch: int) -> float:
    from deepzen.vision.tasks import cosine_schedule

    return cosine_schedule(LEARNING_RATE, EPOCHS)(epoch, LEARNING_RATE)


def mnist():
    from deepzen.vision.tasks import load_image_data

    return load_image_data("mnist")


# -- workers: train EPOCHS epochs, report each epoch's training seconds and test accuracy ------------
def worker_deepzen(seed: int) -> dict:
    import deepzen
    from deepzen.callbacks import Callback
    from deepzen.vision.tasks import accuracy, cosine_schedule, fit_classifier, image_classifier

    deepzen.seed(seed)
    data = mnist()
    model = image_classifier("lenet5", data)
    log = {"epoch_seconds": [], "test_accuracy": []}

    class TimeAndTest(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            log["epoch_seconds"].append(time.perf_counter() - self.start)
            log["test_accuracy"].append(accuracy(model, data.x_test, data.y_test, batch_size=1000))

    fit_classifier(model, data, deepzen.optimizers.Adam(learning_rate=LEARNING_RATE), epochs=EPOCHS,
                   batch_size=BATCH, schedule=cosine_schedule(LEARNING_RATE, EPOCHS), verbose=0,
                   callbacks=[TimeAndTest()])
    return log


def worker_hand(seed: int) -> dict:
    import torch
    from _common import hand_written_epoch

    from deepzen.vision.models import create

    torch.manual_seed(seed)
    data = mnist()
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    x_test, y_test = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    net = create("lenet5")
    optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    log = {"epoch_seconds": [], "test_accuracy": []}
    for epoch in range(EPOCHS):
        for group in optimizer.param_groups:
            group["lr"] = cosine(epoch)
        log["epoch_seconds"].append(hand_written_epoch(net, optimizer, x, y, BATCH))
        net.eval()
        with torch.no_grad():
            correct = sum(int((net(x_test[i:i + 1000]).argmax(1) == y_test[i:i + 1000]).sum())
                          for i in range(0, len(x_test), 1000))
        log["test_accuracy"].append(correct / len(x_test))
    return log


def worker_keras(seed: int) -> dict:
    os.environ["KERAS_BACKEND"] = "torch"
    import keras

    keras.utils.set_random_seed(seed)
    data = mnist()
    x, x_test = data.x_train.transpose(0, 2, 3, 1), data.x_test.transpose(0, 2, 3, 1)  # Keras is channels-last
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((28, 28, 1)), layers.Conv2D(6, 5, padding="same", activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(16, 5, activation="relu"), layers.MaxPooling2D(2), layers.Flatten(),
        layers.Dense(120, activation="relu"), layers.Dense(84, activation="relu"), layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    log = {"epoch_seconds": [], "test_accuracy": []}

    class TimeAndTest(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            log["epoch_seconds"].append(time.perf_counter() - self.start)
            log["test_accuracy"].append(float(self.model.evaluate(x_test, data.y_test, batch_size=1000,
                                                                  verbose=0)[1]))

    model.fit(x, data.y_train, batch_size=BATCH, epochs=EPOCHS, verbose=0,
              callbacks=[TimeAndTest(), keras.callbacks.LearningRateScheduler(lambda epoch, lr: cosine(epoch))])
    return log


WORKERS = {"deepzen": worker_deepzen, "hand": worker_hand, "keras": worker_keras}


# -- driver -------------------------------------------------------------------------------------------
def time_to_target(log: dict) -> tuple[int | None, float | None]:
    """(epochs, summed training seconds) until the test accuracy first reaches TARGET."""
    for epoch, accuracy in enumerate(log["test_accuracy"]):
        if accuracy >= TARGET:
            return epoch + 1, sum(log["epoch_seconds"][:epoch + 1])
    return None, None


def keras_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("keras") is not None


def main() -> None:
    global EPOCHS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="epochs, and the length of the cosine decay")
    parser.add_argument("--worker", nargs=2, metavar=("FRAMEWORK", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    EPOCHS = args.epochs
    if "DEEPZEN_DATA" not in os.environ and SHARED_DATA.is_dir():
        os.environ["DEEPZEN_DATA"] = str(SHARED_DATA)
    if args.worker:
        print(json.dumps(WORKERS[args.worker[0]](int(args.worker[1]))))
        return

    import torch

    threads = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    frameworks = [f for f in args.frameworks.split(",") if f != "keras" or keras_available()]
    skipped = [f for f in args.frameworks.split(",") if f not in frameworks]
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {f: [] for f in frameworks}
    for repeat in range(args.repeats):
        order = frameworks[repeat % len(frameworks):] + frameworks[:repeat % len(frameworks)]
        for framework in order:
            out = subprocess.run([sys.executable, __file__, "--worker", framework, str(repeat), "--epochs", str(EPOCHS)], check=True,
                                 capture_output=True, text=True, env=os.environ)
            log = json.loads(out.stdout.strip().splitlines()[-1])
            runs[framework].append(log)
            epochs, seconds = time_to_target(log)
            reached = f"99.0% after {epochs} epochs, {seconds:.1f} s" if epochs else "99.0% not reached"
            print(f"seed {repeat}: {framework:8s} {reached}; test accuracy per epoch "
                  f"{[round(a, 4) for a in log['test_accuracy']]}", flush=True)
    load_after = os.getloadavg()

    lines = ["# LeNet-5 on MNIST: wall time to 99.0% test accuracy", "",
             f"Command: `{threads}python benchmarks/mnist_lenet5.py --repeats {args.repeats} --epochs {EPOCHS} "
             f"--frameworks {args.frameworks}`; date {time.strftime('%Y-%m-%d %H:%M')}.",
             f"Machine: {os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
             f"load average {load_before[0]:.1f} before and {load_after[0]:.1f} after (the run's own load is 2: one "
             f"framework at a time on 2 threads).",
             f"Settings (all three): LeNet-5 (ReLU, max pooling), Adam lr {LEARNING_RATE} with a per-epoch cosine "
             f"decay over {EPOCHS} epochs, batch {BATCH}, inputs normalized with the training mean/std, no "
             f"augmentation. Training time only (the per-epoch test evaluation is not counted).", "",
             "| framework | epochs to 99.0% | time to 99.0% | median epoch | test accuracy after "
             f"{EPOCHS} epochs | per seed: epochs to 99.0%, seconds |", "|---|---:|---:|---:|---:|---|"]
    for framework in frameworks:
        reached = [time_to_target(log) for log in runs[framework]]
        times = [seconds for _, seconds in reached if seconds is not None]
        epochs = [epoch for epoch, _ in reached if epoch is not None]
        median_epoch = statistics.median(s for log in runs[framework] for s in log["epoch_seconds"])
        final = statistics.median(log["test_accuracy"][-1] for log in runs[framework])
        to_target = (f"{statistics.median(times):.1f} s" if len(times) == len(reached) else
                     f"reached in {len(times)}/{len(reached)} runs")
        lines.append(f"| {LABELS[framework]} | {statistics.median(epochs) if epochs else '-'} | {to_target} | "
                     f"{median_epoch:.1f} s | {final:.2%} | "
                     f"{'; '.join(f'{e}, {t:.1f} s' if e else 'not reached' for e, t in reached)} |")
    if args.repeats > 1:
        lines += ["", f"Medians over {args.repeats} runs per framework; run k uses seed k in every framework "
                  f"(initialization and shuffling), so the epoch that crosses 99.0% is not one seed's luck."]
    if skipped:
        lines += ["", f"Skipped (not installed): {', '.join(skipped)}."]
    lines += ["", "Per-epoch test accuracy of the first run:", ""]
    lines += [f"- {framework}: " + ", ".join(f"{a:.2%}" for a in runs[framework][0]["test_accuracy"])
              for framework in frameworks]
    RESULTS.mkdir(exist_ok=True)
    name = "mnist_lenet5.md" if EPOCHS == 12 else f"mnist_lenet5_{EPOCHS}_epochs.md"
    (RESULTS / name).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
