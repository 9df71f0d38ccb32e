"""ONNX export: a CNN (through ``deepzen export RUN``) and an Embedding + GRU text classifier match
deepzen's outputs under onnxruntime within 1e-4, with a dynamic batch axis."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import deepzen
from deepzen import cli
from deepzen.export import ExportMismatchError, export_onnx, verify_onnx
from deepzen.layers import GRU, Dense, Embedding
from deepzen.models import Sequential
from deepzen.training.serialization import load_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def onnx_outputs(path, inputs: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    return session.run(None, {"input": inputs})[0]


def test_export_of_a_trained_cnn_run_matches_under_onnxruntime(digits_run, capsys):
    assert cli.main(["export", str(digits_run)]) == 0
    assert "onnxruntime matches deepzen within" in capsys.readouterr().out
    model = load_model(digits_run / "model.dz", compile=False)
    images = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)  # another batch size than exported
    expected = model.predict(images)
    assert np.abs(onnx_outputs(digits_run / "model.onnx", images) - expected).max() <= 1e-4


def test_export_of_an_embedding_gru_text_classifier_matches(tmp_path):
    deepzen.seed(0)
    model = Sequential([Embedding(100, 16, input_shape=(12,)), GRU(24), Dense(4, activation="softmax")])
    model.build()
    path = export_onnx(model, tmp_path / "text.onnx")
    assert verify_onnx(path, model) <= 1e-4
    ids = np.random.default_rng(1).integers(0, 100, (7, 12))
    assert np.abs(onnx_outputs(path, ids) - model.predict(ids)).max() <= 1e-4
    with torch.no_grad():  # the check fails when the file no longer matches the model
        model.layers[0].weight.mul_(1.5)
    with pytest.raises(ExportMismatchError, match="differ from the model's"):
        verify_onnx(path, model)


def test_models_that_cannot_be_exported_are_refused_with_a_reason(tmp_path):
    with pytest.raises(ValueError, match="not built"):
        export_onnx(Sequential([Dense(2)]), tmp_path / "x.onnx")
