"""Image-classification recipes, registered by name for the command line and the benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import deepzen
from deepzen.recipes import register_recipe


@dataclass
class DigitsConfig:
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 2e-3
    filters: int = 32
    seed: int = 0
    verbose: int = 2


def digits_cnn_model(filters: int = 32):
    """Conv-pool-conv-pool-dense for 8x8 grey images: (N, 1, 8, 8) -> 10 logits."""
    from deepzen.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
    from deepzen.models import Sequential

    return Sequential([
        Input((1, 8, 8)),
        Conv2D(filters, 3, padding="same", activation="relu"),   # (N, f, 8, 8)
        MaxPooling2D(2),                                          # (N, f, 4, 4)
        Conv2D(2 * filters, 3, padding="same", activation="relu"),
        MaxPooling2D(2),                                          # (N, 2f, 2, 2)
        Flatten(),
        Dropout(0.3),
        Dense(10),
    ], name="digits_cnn")


@register_recipe("digits-cnn", DigitsConfig,
                 "A small CNN on the 8x8 digits embedded in scikit-learn (the demo; needs no download)")
def digits_cnn(config: DigitsConfig, run_dir: Path) -> dict:
    from deepzen.data.images import load_digits_split
    from deepzen.training.plots import plot_history

    deepzen.seed(config.seed)
    x_train, y_train, x_test, y_test = load_digits_split(test_fraction=0.2, seed=config.seed)
    model = digits_cnn_model(config.filters)
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=config.learning_rate),
                  loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=config.batch_size, epochs=config.epochs,
                        validation_split=0.1, verbose=config.verbose)
    test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
    model.save(run_dir / "model.dz")
    plot_history(history, run_dir / "training_curves.png", title="digits-cnn")
    return {"test_accuracy": test_accuracy, "test_loss": test_loss, "train_samples": len(x_train),
            "test_samples": len(x_test)}
