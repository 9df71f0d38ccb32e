"""One training step of a 2-layer, 256-unit character LSTM: deepzen's LSTM layer against bare ``nn.LSTM``.

The same network (embedding 65 -> 64, LSTM 256 x 2, linear -> 65 logits), batch (64 windows of
100 characters), loss and fused Adam, built four ways:

- ``nn.LSTM``: a hand-written PyTorch step around ``torch.nn.LSTM`` (the reference);
- ``deepzen LSTM layer``: the same hand-written step with ``deepzen.layers.LSTM(256, num_layers=2)``;
- ``deepzen CharLSTM.fit``: the language model of ``deepzen.text.language_model`` trained by ``fit``
  on the same batch, dropout off (timed from the start to the end of the training loop, so fit's
  one-off build probe is left out);
- ``Keras 3 LSTM (torch backend)``: two stacked ``keras.layers.LSTM(256)`` trained by ``train_on_batch``,
  when keras is installed.

The variants run interleaved (one block of steps each, in turn, ``--repeats`` times) so that load
changes hit them alike; the table reports the median milliseconds per step. Writes
``benchmarks/results/lstm_speed.md``.

    python benchmarks/lstm_speed.py --repeats 7 --steps 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported anywhere

import torch
from torch import nn

VOCAB, EMBED, UNITS, LAYERS, BATCH, STEPS_PER_WINDOW = 65, 64, 256, 2, 64, 100
RESULTS = Path(__file__).parent / "results"


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    stream = torch.randint(0, VOCAB, (BATCH, STEPS_PER_WINDOW + 1), generator=generator)
    return stream[:, :-1], stream[:, 1:]


def hand_step(recurrent: nn.Module):
    """A hand-written training step around ``recurrent`` ((N, T, 64) -> (N, T, 256))."""
    embedding, output = nn.Embedding(VOCAB, EMBED), nn.Linear(UNITS, VOCAB)
    x, y = batch()
    recurrent(embedding(x[:2]))  # builds a lazy layer
    parameters = [*embedding.parameters(), *recurrent.parameters(), *output.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=1e-3, fused=True)

    def step():
        hidden = recurrent(embedding(x))
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden             # nn.LSTM returns (output, state)
        loss = nn.functional.cross_entropy(output(hidden).reshape(-1, VOCAB), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def torch_lstm():
    return hand_step(nn.LSTM(EMBED, UNITS, LAYERS, batch_first=True))


def deepzen_layer():
    from deepzen.layers import LSTM

    return hand_step(LSTM(UNITS, num_layers=LAYERS, return_sequences=True))


def deepzen_fit():
    import deepzen
    from deepzen.data.text import Vocab
    from deepzen.text.language_model import CharLSTM

    vocab = Vocab([chr(33 + i) for i in range(VOCAB)], unk_token=None)
    model = CharLSTM(vocab, embedding_dim=EMBED, units=UNITS, num_layers=LAYERS, dropout=0.0)
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=1e-3),
                  loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True))
    x, y = batch()

    class SameBatch:  # the same batch every step, like the other variants
        def __init__(self, steps):
            self.steps = steps

        def __len__(self):
            return self.steps

        def __iter__(self):
            return iter([(x, y)] * self.steps)

    class Clock(deepzen.callbacks.Callback):  # times the training loop, not fit's one-off build probe
        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_train_end(self, logs=None):
            self.seconds = time.perf_counter() - self.start

    clock = Clock()
    model.fit(SameBatch(1), epochs=1, verbose=0)  # builds the model and the engine

    def train(steps):
        model.fit(SameBatch(steps), epochs=1, verbose=0, callbacks=[clock])
        return clock.seconds

    return train


def keras_lstm():
    import keras

    model = keras.Sequential([keras.Input((STEPS_PER_WINDOW,), dtype="int32"), keras.layers.Embedding(VOCAB, EMBED),
                              keras.layers.LSTM(UNITS, return_sequences=True),
                              keras.layers.LSTM(UNITS, return_sequences=True), keras.layers.Dense(VOCAB)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = (t.numpy() for t in batch())
    model.train_on_batch(x, y)
    return lambda: model.train_on_batch(x, y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=5, help="training steps per variant per round")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no-keras", action="store_true", help="skip Keras even when it is installed")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    variants = {"nn.LSTM (hand-written step)": torch_lstm(), "deepzen LSTM layer (hand-written step)": deepzen_layer()}
    fit = deepzen_fit()
    if not args.no_keras:
        try:
            variants["Keras 3 LSTM, torch backend (train_on_batch)"] = keras_lstm()
        except ImportError:
            print("keras is not installed: skipping it (pip install keras)")
    timings: dict[str, list[float]] = {name: [] for name in [*variants, "deepzen CharLSTM.fit"]}
    for step in variants.values():  # warm-up
        step()
    for round_index in range(args.repeats):
        for name, step in variants.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            timings[name].append((time.perf_counter() - start) / args.steps * 1000)
        timings["deepzen CharLSTM.fit"].append(fit(args.steps) / args.steps * 1000)
        print(f"round {round_index + 1}: " + ", ".join(f"{name.split(' (')[0]} {values[-1]:.0f} ms"
                                                      for name, values in timings.items()), flush=True)

    reference = statistics.median(timings["nn.LSTM (hand-written step)"])
    rows = [f"| {name} | {statistics.median(values):.1f} | {statistics.median(values) / reference:.3f} |"
            for name, values in timings.items()]
    threads = torch.get_num_threads()
    report = "\n".join([
        "# Character LSTM training step: deepzen vs nn.LSTM",
        "",
        f"2-layer, {UNITS}-unit LSTM, embedding {VOCAB} -> {EMBED}, batch {BATCH} x {STEPS_PER_WINDOW} characters, "
        f"cross-entropy over {VOCAB} classes, Adam. torch {torch.__version__}, {threads} thread(s), "
        f"{args.repeats} interleaved rounds of {args.steps} steps; medians.",
        "",
        "| variant | ms / step | relative to nn.LSTM |",
        "| --- | ---: | ---: |",
        *rows,
        "",
        f"Command: `python benchmarks/lstm_speed.py --repeats {args.repeats} --steps {args.steps}"
        + (f" --threads {args.threads}`" if args.threads else "`"),
        "",
    ])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lstm_speed.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
