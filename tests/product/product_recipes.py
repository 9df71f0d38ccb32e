"""A tiny recipe for the product tests: CPU, a second per run, registered when the command line
imports this module (``DEEPZEN_RECIPE_MODULES=product_recipes`` with this folder on ``PYTHONPATH``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import deepzen
from deepzen.callbacks import Callback, ReduceLROnPlateau
from deepzen.layers import Dense, Dropout
from deepzen.models import Sequential
from deepzen.recipes import register_recipe


@dataclass
class TinyConfig:
    epochs: int = 3
    batch_size: int = 16
    samples: int = 192
    dropout: float = 0.2
    step_delay: float = 0.0  # seconds slept after each step, so that a test can stop a run inside an epoch
    seed: int = 0
    verbose: int = 0


class StepDelay(Callback):
    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_batch_end(self, step, logs=None):
        time.sleep(self.seconds)


def tiny_data(samples: int, seed: int):
    """(x (N, 6) float32, y (N,) int64 in 0..2): a separable 3-class problem."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 0.8)
    return x, y


def tiny_model(dropout: float) -> Sequential:
    return Sequential([Dense(16, input_dim=6, activation="relu"), Dropout(dropout), Dense(3)], name="tiny_mlp")


@register_recipe("tiny-mlp", TinyConfig, "A 6-16-3 MLP on synthetic data (tests of the product)")
def tiny_mlp(config: TinyConfig, run_dir: Path) -> dict:
    deepzen.seed(config.seed)
    x, y = tiny_data(config.samples, config.seed)
    model = tiny_model(config.dropout)
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=0.02),
                  loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True), metrics=["accuracy"])
    callbacks = [ReduceLROnPlateau("val_loss", factor=0.5, patience=1)]  # state that a resume must restore
    if config.step_delay:
        callbacks.append(StepDelay(config.step_delay))
    model.fit(x, y, batch_size=config.batch_size, epochs=config.epochs, validation_split=0.25,
              verbose=config.verbose, callbacks=callbacks)
    loss, accuracy = model.evaluate(x, y, verbose=0)
    model.save(run_dir / "model.dz")
    return {"loss": loss, "accuracy": accuracy}
