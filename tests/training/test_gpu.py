"""The CUDA paths of training, files and resume (marked ``gpu``: they skip without CUDA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import deepzen
from deepzen.layers import BatchNormalization, Conv2D, Dense, Flatten, MaxPooling2D
from deepzen.models import Sequential, load_model
from deepzen.training.checkpoint import TrainingCheckpoint

pytestmark = pytest.mark.gpu

rng = np.random.default_rng(0)
X = rng.normal(size=(256, 1, 12, 12)).astype(np.float32)
Y = (X[:, 0, :6].mean(axis=(1, 2)) > 0).astype(np.int64)


def cnn(precision: str = "float32") -> Sequential:
    deepzen.seed(0)
    model = Sequential([Conv2D(8, 3, input_shape=(1, 12, 12), activation="relu"), BatchNormalization(),
                        MaxPooling2D(2), Flatten(), Dense(2)])
    model.compile(optimizer="adam", loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True),
                  metrics=["accuracy"], precision=precision, device="cuda")
    return model


@pytest.mark.parametrize("precision", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_a_cnn_learns_on_the_gpu(precision):
    model = cnn(precision)
    history = model.fit(X, Y, epochs=8, batch_size=32, verbose=0)
    assert model.device.type == "cuda"
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.evaluate(X, Y, verbose=0)[1] > 0.8


def test_a_model_saved_on_the_gpu_loads_on_the_cpu(tmp_path):
    model = cnn()
    model.fit(X, Y, epochs=1, batch_size=32, verbose=0)
    model.save(tmp_path / "m.dz")
    restored = load_model(tmp_path / "m.dz")
    assert restored.device.type == "cpu"
    np.testing.assert_allclose(restored.predict(X), model.predict(X), atol=1e-4)


def test_resume_on_the_gpu_continues_the_run(tmp_path):
    path = tmp_path / "checkpoint.ckpt"
    straight = cnn()
    straight.fit(X, Y, epochs=2, batch_size=32, verbose=0)
    first = cnn()
    first.fit(X, Y, epochs=1, batch_size=32, verbose=0, callbacks=[TrainingCheckpoint(path)])
    resumed = cnn()
    resumed.fit(X, Y, epochs=2, batch_size=32, verbose=0, callbacks=[TrainingCheckpoint(path)])
    for key, value in straight.state_dict().items():  # cuDNN kernels need not be deterministic: close, not equal
        torch.testing.assert_close(resumed.state_dict()[key], value, atol=1e-3, rtol=1e-3)
