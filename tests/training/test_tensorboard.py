"""The TensorBoard callback: the event files, read back with tensorboard's EventAccumulator, hold History's values."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import deepzen
from deepzen.callbacks import TensorBoard
from deepzen.layers import Dense
from deepzen.models import Sequential

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
pytestmark = pytest.mark.usefixtures("one_thread")


def _read(folder):
    accumulator = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0,
                                                                                 "images": 0})
    accumulator.Reload()
    return accumulator


def _classifier():
    torch.manual_seed(0)
    model = Sequential([Dense(16, input_dim=6, activation="relu"), Dense(3)])
    schedule = deepzen.optimizers.schedules.ExponentialDecay(0.05, decay_steps=3, decay_rate=0.5)
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=schedule),
                  loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True), metrics=["accuracy"])
    return model


def _data(n=240):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 0.8)


def test_scalars_equal_history_and_histograms_images_are_written(tmp_path):
    x, y = _data()
    model = _classifier()
    board = TensorBoard(tmp_path / "logs", histogram_freq=1, write_grads=True, write_images=True, update_freq=2,
                        confusion_matrix_data=(x[:60], y[:60]))
    rates = []

    class Rate(deepzen.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            rates.append(model.optimizer.param_groups[0]["lr"])

    history = model.fit(x, y, batch_size=32, epochs=3, validation_split=0.25, verbose=0, callbacks=[board, Rate()])
    train, validation = _read(tmp_path / "logs" / "train"), _read(tmp_path / "logs" / "validation")
    for key in ("loss", "accuracy"):
        values = [event.value for event in train.Scalars(f"epoch_{key}")]
        assert values == [np.float32(v) for v in history.history[key]]  # event files hold float32
        values = [event.value for event in validation.Scalars(f"epoch_{key}")]
        assert values == [np.float32(v) for v in history.history[f"val_{key}"]]
        assert [event.step for event in train.Scalars(f"epoch_{key}")] == [0, 1, 2]
    assert [event.value for event in train.Scalars("epoch_learning_rate")] == [np.float32(r) for r in rates]
    assert len(set(rates)) == 3  # the schedule moved the rate every epoch
    steps = [event.step for event in train.Scalars("batch_loss")]
    assert steps == list(range(2, 3 * 6 + 1, 2))  # 6 batches per epoch, every second one
    tags = train.Tags()
    names = [name for name, _ in model.named_parameters()]
    assert {*names, f"{names[0]}/gradient"} <= set(tags["histograms"])
    histogram = train.Histograms(names[0])[-1].histogram_value
    weights = model.get_layer(index=0).weight.detach()
    assert histogram.num == weights.numel() and histogram.min == pytest.approx(float(weights.min()))
    assert {names[0], "confusion_matrix"} <= set(tags["images"])
    matrix = board.last_confusion_matrix
    predicted = np.asarray(model.predict(x[:60])).argmax(-1)
    assert matrix.sum() == 60 and np.trace(matrix) == int((predicted == y[:60]).sum())


def test_gan_sample_grids_are_images(tmp_path):
    from deepzen.generative.trainer import GAN

    torch.manual_seed(0)
    generator = Sequential([Dense(16, input_dim=4, activation="relu"), Dense(36, activation="tanh"),
                            deepzen.layers.Reshape((1, 6, 6))])
    discriminator = Sequential([deepzen.layers.Flatten(input_shape=(1, 6, 6)), Dense(8, activation="relu"), Dense(1)])
    gan = GAN(generator, discriminator, latent_dim=4)
    gan.compile()
    images = np.random.default_rng(0).uniform(-1, 1, size=(64, 1, 6, 6)).astype(np.float32)
    gan.fit(images, batch_size=16, epochs=2, verbose=0, callbacks=[TensorBoard(tmp_path, write_images=True)])
    samples = _read(tmp_path / "train").Images("samples")
    assert [event.step for event in samples] == [0, 1]
    assert samples[0].width > 6 and samples[0].height > 6  # a tiled grid of the 64 samples


def test_unsupported_keras_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="profile_batch"):
        TensorBoard(tmp_path, profile_batch=5)
    with pytest.raises(ValueError, match="update_freq"):
        TensorBoard(tmp_path, update_freq="sometimes")


def test_deepzen_train_tensorboard_logs_into_the_run_folder(tmp_path):
    from deepzen import cli

    folder = tmp_path / "run"
    assert cli.main(["train", "digits-cnn", "--run-dir", str(folder), "--tensorboard", "--set", "epochs=2",
                     "--set", "filters=4", "--set", "verbose=0"]) == 0
    history = json.loads((folder / "history.json").read_text())
    train = _read(folder / "tensorboard" / "train")
    assert [event.value for event in train.Scalars("epoch_loss")] == [np.float32(v) for v in history["loss"]]
    validation = _read(folder / "tensorboard" / "validation")
    assert [event.value for event in validation.Scalars("epoch_accuracy")] == [
        np.float32(v) for v in history["val_accuracy"]]
