"""`deepzen interpret RUN [INPUTS]`: the PNGs of a trained digits-cnn run and the attention of a text run."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import deepzen
from deepzen.cli import load_recipes, main
from deepzen.data.text import Vocab, WordTokenizer
from deepzen.runs import Run
from deepzen.text.classification import BiLSTMAttentionClassifier, TextCNN

pytestmark = pytest.mark.usefixtures("one_thread")

IMAGE_PNGS = {"saliency.png", "grad_cam.png", "occlusion.png", "filters.png", "feature_maps.png"}
TEST_SET_PNGS = {"top_losses.png", "confusion_matrix.png"}


def _pngs(folder):
    names = {path.name for path in folder.glob("*.png")}
    for name in names:
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return names


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    load_recipes()
    folder = tmp_path_factory.mktemp("digits") / "run"
    Run.create("digits-cnn", {"epochs": 2, "verbose": 0}, folder).execute()
    return folder


def test_interpret_writes_the_pngs_of_the_run_test_set(digits_run, capsys):
    assert main(["interpret", str(digits_run)]) == 0
    assert _pngs(digits_run / "interpret") == IMAGE_PNGS | TEST_SET_PNGS
    assert "grad_cam.png" in capsys.readouterr().out


def test_interpret_explains_image_files(digits_run, tmp_path):
    from deepzen.data.images import load_digits

    x, _ = load_digits()
    picture = tmp_path / "digit.png"
    Image.fromarray((x[0, 0] * 255).astype(np.uint8)).save(picture)
    np.save(tmp_path / "two.npy", x[1:3])
    out = tmp_path / "out"
    assert main(["interpret", str(digits_run), str(picture), str(tmp_path / "two.npy"), "--output", str(out),
                 "--layer", "conv2d", "--top-losses", "3"]) == 0
    assert _pngs(out) == IMAGE_PNGS | TEST_SET_PNGS


def test_interpret_refuses_bad_arguments(digits_run, tmp_path, capsys):
    assert main(["interpret", str(digits_run), "--layer", "nope", "--output", str(tmp_path)]) == 2
    assert "layer='nope'" in capsys.readouterr().err
    assert main(["interpret", str(digits_run), "--data", "x.npy"]) == 2
    assert "--data and --labels" in capsys.readouterr().err
    assert main(["interpret", str(digits_run), "--top-losses", "0"]) == 2
    assert "--top-losses" in capsys.readouterr().err


def test_interpret_needs_images_when_the_test_set_is_unknown(digits_run, tmp_path, capsys):
    run = tmp_path / "other"
    run.mkdir()
    (run / "model.dz").write_bytes((digits_run / "model.dz").read_bytes())
    (run / "config.json").write_text(json.dumps({"recipe": "mnist-transfer", "config": {}}))
    assert main(["interpret", str(run)]) == 2
    assert "give images to explain" in capsys.readouterr().err
    x = np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(20) % 10)
    assert main(["interpret", str(run), str(tmp_path / "x.npy"), "--data", str(tmp_path / "x.npy"),
                 "--labels", str(tmp_path / "y.npy")]) == 0
    assert _pngs(run / "interpret") == IMAGE_PNGS | TEST_SET_PNGS


def test_interpret_rebuilds_the_test_set_of_an_mnist_run(real_dataset, tmp_path):
    """The confusion matrix is drawn on the run's own test subset, normalized as in training: the accuracy
    found again equals the one the run reported."""
    from deepzen.vision import interpret

    real_dataset("mnist")
    load_recipes()
    run = tmp_path / "lenet"
    metrics = Run.create("mnist-lenet5", {"epochs": 1, "train_samples": 600, "test_samples": 150, "verbose": 0},
                         run).execute()
    assert main(["interpret", str(run), "--top-losses", "4"]) == 0
    assert _pngs(run / "interpret") == IMAGE_PNGS | TEST_SET_PNGS
    x, y = interpret.run_test_set(run)
    assert x.shape == (150, 1, 28, 28)
    predicted = interpret.predict_logits(deepzen.load_model(run / "model.dz"), x).argmax(-1).numpy()
    assert (predicted == y).mean() == pytest.approx(metrics["test_accuracy"])


def _text_run(folder, network):
    folder.mkdir()
    vocab = Vocab(["<pad>", "<unk>", "a", "fine", "film", "bad", "plot"], specials=["<pad>", "<unk>"])
    model = deepzen.Model(network)
    model.predict(torch.tensor([[2, 3, 4]]))  # builds the lazy layers
    model.save(folder / "model.dz")
    tokenize = WordTokenizer()
    (folder / "vocabulary.json").write_text(json.dumps({
        "vocab": vocab.get_config(), "lower": tokenize.lower, "split_punctuation": tokenize.split_punctuation,
        "classes": ["negative", "positive"]}))
    (folder / "config.json").write_text(json.dumps({"recipe": "sst2-bilstm-attention", "config": {}}))
    return folder


def test_interpret_draws_the_attention_of_a_text_run(tmp_path, capsys):
    torch.manual_seed(0)
    run = _text_run(tmp_path / "text", BiLSTMAttentionClassifier(7, 2, embedding_dim=8, units=4, dropout=0.0))
    assert main(["interpret", str(run), "a fine film", "a bad unseen plot"]) == 0
    assert _pngs(run / "interpret") == {"attention.png"}
    assert main(["interpret", str(run)]) == 2
    assert "give the texts" in capsys.readouterr().err
    textcnn = _text_run(tmp_path / "cnn", TextCNN(7, 2, embedding_dim=8, num_filters=2))
    assert main(["interpret", str(textcnn), "a fine film"]) == 2
    assert "return_attention_scores" in capsys.readouterr().err
