"""The ``deepzen`` verbs (in-process): help, list, train with TOML configs, predict, evaluate, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepzen import cli
from deepzen.training.serialization import load_model

VERBS = ("list", "train", "demo", "evaluate", "predict", "serve", "export", "interpret", "experiment")


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([verb, "--help"])
    assert exit_.value.code == 0
    assert f"usage: deepzen {verb}" in capsys.readouterr().out


def test_list_shows_recipes(tiny_recipe, capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "digits-cnn" in out and "tiny-mlp" in out and "Datasets" in out
    assert "lenet5" in out and "resnext50_32x4d" in out  # the image model zoo


def test_a_toml_config_sets_the_recipe_and_set_wins(tiny_recipe, tmp_path):
    config = tmp_path / "my.toml"
    config.write_text("epochs = 1\nsamples = 64\ndropout = 0.0\n")
    folder = tmp_path / "run"
    assert cli.main(["train", "tiny-mlp", "--config", str(config), "--set", "samples=96", "--run-dir", str(folder)]) == 0
    saved = json.loads((folder / "config.json").read_text())["config"]
    assert (saved["epochs"], saved["samples"], saved["dropout"]) == (1, 96, 0.0)
    assert len(json.loads((folder / "history.json").read_text())["loss"]) == 1


@pytest.mark.parametrize("args, message", [
    (["train", "no-such-recipe"], "no-such-recipe"),
    (["train", "tiny-mlp", "--set", "colour=red"], "has no setting 'colour'"),
    (["train", "tiny-mlp", "--set", "epochs"], "--set expects key=value"),
    (["train"], "train needs a RECIPE"),
    (["train", "--resume", "/nonexistent/run"], "not a deepzen run folder"),
    (["predict", "/nonexistent/run", "x.npy"], "has no model file"),
    (["evaluate", "/nonexistent/run"], "not a deepzen run folder"),
])
def test_mistakes_get_a_message_and_exit_code_2(args, message, tiny_recipe, capsys):
    assert cli.main(args) == 2
    assert message in capsys.readouterr().err


def test_a_toml_file_with_tables_or_bad_syntax_is_refused(tiny_recipe, tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text("[model]\nepochs = 1\n")
    assert cli.main(["train", "tiny-mlp", "--config", str(config)]) == 2
    assert "Received tables: model" in capsys.readouterr().err
    config.write_text("epochs = \n")
    assert cli.main(["train", "tiny-mlp", "--config", str(config)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_predict_reads_npy_and_png_inputs(digits_run, tmp_path, capsys):
    from PIL import Image

    from deepzen.data.images import load_digits_split

    _, _, x_test, _ = load_digits_split()
    np.save(tmp_path / "two.npy", x_test[:2])
    pixels = np.round(x_test[2, 0] * 255).astype(np.uint8)  # (8, 8) grey
    Image.fromarray(pixels, mode="L").save(tmp_path / "digit.png")
    capsys.readouterr()
    assert cli.main(["predict", str(digits_run), str(tmp_path / "two.npy"), str(tmp_path / "digit.png"), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    model = load_model(digits_run / "model.dz", compile=False)
    expected = model.predict(np.concatenate([x_test[:2], (pixels / 255.0).astype(np.float32)[None, None]]))
    assert [r["input"] for r in results] == [f"{tmp_path / 'two.npy'}[0]", f"{tmp_path / 'two.npy'}[1]",
                                             str(tmp_path / "digit.png")]
    for result, row in zip(results, expected):
        assert np.allclose(result["output"], row, atol=1e-5)
        assert result["top"][0]["class"] == int(row.argmax())
        probabilities = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
        assert result["top"][0]["probability"] == pytest.approx(float(probabilities.max()), abs=1e-5)
    assert cli.main(["predict", str(digits_run), str(tmp_path / "digit.png"), "--top", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(tmp_path / "digit.png")) and line.count("%") == 2


def test_predict_refuses_inputs_of_the_wrong_shape(digits_run, tmp_path, capsys):
    np.save(tmp_path / "wrong.npy", np.zeros((3, 8, 8), dtype=np.float32))
    (tmp_path / "notes.txt").write_text("seven")
    assert cli.main(["predict", str(digits_run), str(tmp_path / "wrong.npy")]) == 2
    assert "expected one sample of shape (1, 8, 8) or a batch (n, 1, 8, 8). Received: (3, 8, 8)" in \
        capsys.readouterr().err
    assert cli.main(["predict", str(digits_run), str(tmp_path / "notes.txt")]) == 2
    assert "expected a .npy array or an image" in capsys.readouterr().err


def test_evaluate_replays_the_recipe_evaluation_with_the_trained_weights(digits_run, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in digits_run.iterdir()}
    capsys.readouterr()
    assert cli.main(["evaluate", str(digits_run)]) == 0
    out = capsys.readouterr().out
    replayed = json.loads(out[out.index("{"):])
    assert replayed == json.loads((digits_run / "metrics.json").read_text())
    assert {p.name: p.stat().st_mtime_ns for p in digits_run.iterdir()} == before  # nothing was written


def test_resume_with_more_epochs_trains_the_digits_cnn_on_to_them(digits_run, tmp_path, capsys):
    import csv
    import shutil

    from deepzen.training.checkpoint import checkpoint_position
    from deepzen.training.serialization import read_tensors

    folder = tmp_path / "digits"
    shutil.copytree(digits_run, folder)
    after_one = read_tensors(folder / "model.dz")[0]
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(folder), "--set", "epochs=2"]) == 0
    assert "after epoch 1: continuing to epoch 2" in capsys.readouterr().out
    assert [row["epoch"] for row in csv.DictReader(open(folder / "history.csv"))] == ["1", "2"]
    position = checkpoint_position(folder / "checkpoint.ckpt")
    assert position["finished"] and position["epoch"] == 2 and position["epochs"] == 2
    after_two = read_tensors(folder / "model.dz")[0]
    assert any(not after_two[key].equal(after_one[key]) for key in after_one)  # the second epoch trained
    assert json.loads((folder / "config.json").read_text())["config"]["epochs"] == 2


def test_predict_and_serve_normalize_pixels_as_the_run_trained(tmp_path, capsys):
    """An MNIST run trained on normalized pixels (its preprocessing.json): `deepzen predict` on a PNG and the
    server's image endpoint give the class of the *normalized* image, as the recipe's own evaluation does."""
    import torch
    from PIL import Image

    from deepzen.runs import Run
    from deepzen.vision.interpret import run_test_set
    from deepzen.vision.tasks import run_images

    cli.load_recipes()
    run = tmp_path / "lenet"
    Run.create("mnist-lenet5", {"epochs": 1, "train_samples": 600, "test_samples": 150, "verbose": 0}, run).execute()
    prepared, _ = run_test_set(run)
    preprocessing = run_images(run)
    pixels = preprocessing.show(prepared[:8])  # back to pixels in [0, 1]
    model = load_model(run / "model.dz", compile=False)
    with torch.no_grad():
        expected = model(torch.as_tensor(prepared[:8])).argmax(-1).tolist()
        unnormalized = model(torch.as_tensor(pixels, dtype=torch.float32)).argmax(-1).tolist()
    assert expected != unnormalized  # the check can fail: skipping the normalization changes the answers
    files = []
    for index, image in enumerate(pixels):
        path = tmp_path / f"digit{index}.png"
        Image.fromarray(np.round(image[0] * 255).astype(np.uint8)).save(path)
        files.append(str(path))
    capsys.readouterr()
    assert cli.main(["predict", str(run), *files, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["top"][0]["class"] for r in results] == expected

    from deepzen.serving.servables import load_servable
    from deepzen.serving.settings import ServeSettings

    servable = load_servable(run, ServeSettings())
    outputs = servable.run_batch(None, [pixels.astype(np.float32)])[0]
    assert outputs[0].argmax(-1).tolist() == expected and servable.metadata["normalized_by_server"]
