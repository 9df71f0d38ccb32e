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


# -- text generators: encoder and decoder-step graphs ---------------------------------------------------------
@pytest.mark.slow  # torch.export of two graphs: ~15 s on an idle 2-core machine
def test_a_translator_exports_encoder_and_decoder_step_graphs_that_decode_as_it_does(tmp_path):
    from deepzen.export import export_generator, greedy_decode_onnx, verify_generator
    from deepzen.text.translation import TransformerTranslator

    deepzen.seed(0)
    model = TransformerTranslator(20, 30, d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1)
    model.eval()
    paths = export_generator(model, tmp_path / "onnx")
    assert sorted(paths) == ["decoder_step", "encoder"] and all(path.is_file() for path in paths.values())
    assert verify_generator(paths, model) <= 1e-4
    source = torch.randint(4, 20, (3, 6), generator=torch.Generator().manual_seed(2))
    source[0, 4:] = model.pad_index  # a padded row: the mask is an input of the step graph
    expected = model.generate(source, beam_size=1, max_len=8).numpy()                  # greedy, deepzen's loop
    received = greedy_decode_onnx(paths, np.full((3, 1), model.bos_index), 8, source.numpy(), model.eos_index)
    for want, got in zip(expected, received):
        end = list(want).index(model.eos_index) + 1 if model.eos_index in want else len(want)
        assert list(got[:end]) == list(want[:end])


def test_a_language_model_exports_its_decoder_step(tmp_path):
    from deepzen.export import export_generator, greedy_decode_onnx, verify_generator
    from deepzen.text.language_model import CharLSTM, char_vocab

    deepzen.seed(0)
    model = CharLSTM(char_vocab("to be or not to be"), embedding_dim=8, units=16, num_layers=1)
    paths = export_generator(model, tmp_path / "onnx")
    assert sorted(paths) == ["decoder_step"]  # a decoder-only model has no encoder
    assert verify_generator(paths, model) <= 1e-4
    prompt = model.encode_prompt("to be")
    expected = model.generate_ids(prompt, 6, temperature=0)                             # greedy
    assert greedy_decode_onnx(paths, prompt.numpy(), 6).tolist() == expected.tolist()


def test_export_refuses_what_is_neither_with_a_reason(tmp_path):
    from deepzen.export import export_generator

    model = Sequential([Dense(2, input_shape=(3,))])
    with pytest.raises(ValueError, match="translator .* or a language model"):
        export_generator(model, tmp_path)
