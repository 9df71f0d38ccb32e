"""``deepzen train`` in real subprocesses: run folders, kill -9 inside an epoch and --resume, Ctrl-C."""

from __future__ import annotations

import csv
import json
import signal
import time

import pytest
import torch

from subprocesses import run_deepzen, start_deepzen
from deepzen.training.checkpoint import checkpoint_position
from deepzen.training.serialization import ModelFileError, read_tensors

SLOW = ["--set", "step_delay=0.08"]  # 9 steps per epoch: about 0.7 s per epoch, time to stop it inside one


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted run of the tiny recipe (3 epochs, seed 0), in this process."""
    import product_recipes  # noqa: F401  (registers tiny-mlp)
    from deepzen import cli

    folder = tmp_path_factory.mktemp("runs") / "reference"
    assert cli.main(["train", "tiny-mlp", "--run-dir", str(folder)]) == 0
    return folder


def wait_for_checkpoint(process, path, condition, timeout=90.0):
    """Polls the checkpoint until ``condition(position)`` holds; returns that position."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"training ended before the test could stop it: {process.communicate()}"
        try:
            position = checkpoint_position(path)
        except (ModelFileError, FileNotFoundError):
            position = None
        if position is not None and condition(position):
            return position
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint satisfying the condition at {path}")


def final_weights(folder):
    tensors, _ = read_tensors(folder / "model.dz")
    return tensors


def assert_same_training(folder, reference):
    mine, theirs = final_weights(folder), final_weights(reference)
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert torch.allclose(mine[key], theirs[key], rtol=0, atol=1e-6), key
    rows = [list(csv.DictReader(open(f / "history.csv"))) for f in (folder, reference)]
    assert [r["epoch"] for r in rows[0]] == ["1", "2", "3"]
    for a, b in zip(*rows):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), abs=1e-6)
        assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), abs=1e-6)


def test_the_run_folder_holds_config_metrics_curves_models_checkpoint_evaluation_environment(reference_run):
    names = {p.name for p in reference_run.iterdir()}
    assert {"run.json", "config.json", "config.toml", "environment.json", "history.csv", "history.json",
            "training_curves.png", "best.dz", "last.dz", "model.dz", "checkpoint.ckpt", "metrics.json"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    config = json.loads((reference_run / "config.json").read_text())
    assert config["recipe"] == "tiny-mlp" and config["config"]["epochs"] == 3 and config["config"]["seed"] == 0
    import tomllib

    assert tomllib.loads((reference_run / "config.toml").read_text()) == config["config"]
    metrics = json.loads((reference_run / "history.json").read_text())
    assert metrics["epoch"] == [1, 2, 3] and len(metrics["val_accuracy"]) == 3
    environment = json.loads((reference_run / "environment.json").read_text())["sessions"][0]
    assert environment["torch"] == torch.__version__ and environment["seed"] == 0
    assert environment["device"] == "cpu" and environment["processes"] == 1
    status = json.loads((reference_run / "run.json").read_text())
    assert status["status"] == "completed" and status["sessions"][0]["status"] == "completed"
    evaluation = json.loads((reference_run / "metrics.json").read_text())
    assert set(evaluation) == {"loss", "accuracy"}
    assert (reference_run / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    last = read_tensors(reference_run / "last.dz")[0]
    final = final_weights(reference_run)
    assert all(torch.equal(last[key], final[key]) for key in final)  # the recipe saved the last epoch's model
    assert checkpoint_position(reference_run / "checkpoint.ckpt")["finished"]


def test_a_run_killed_with_sigkill_inside_an_epoch_resumes_to_the_same_weights(reference_run, tmp_path, tiny_recipe,
                                                                                capsys):
    folder = tmp_path / "killed"
    process = start_deepzen("train", "tiny-mlp", "--run-dir", str(folder), "--checkpoint-every", "2", *SLOW)
    try:
        wait_for_checkpoint(process, folder / "checkpoint.ckpt", lambda p: p["epoch"] == 1 and p["step"] > 0)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    position = checkpoint_position(folder / "checkpoint.ckpt")
    assert position["epoch"] == 1 and position["step"] > 0  # killed inside epoch 2: the resume starts mid-epoch
    assert json.loads((folder / "run.json").read_text())["status"] == "running"  # what a crash leaves

    from deepzen import cli

    assert cli.main(["evaluate", str(folder)]) == 2  # a run that did not finish cannot be evaluated
    assert "did not finish" in capsys.readouterr().err

    resumed = run_deepzen("train", "--resume", str(folder))
    assert resumed.returncode == 0, resumed.stderr
    assert f"from epoch 2, step {position['step']}" in resumed.stdout
    assert_same_training(folder, reference_run)
    sessions = json.loads((folder / "run.json").read_text())["sessions"]
    assert "status" not in sessions[0] and sessions[1]["status"] == "completed"  # the killed session never ended


def test_ctrl_c_stops_after_saving_and_the_run_resumes_to_the_same_weights(reference_run, tmp_path):
    folder = tmp_path / "interrupted"
    process = start_deepzen("train", "tiny-mlp", "--run-dir", str(folder), *SLOW)
    try:
        wait_for_checkpoint(process, folder / "checkpoint.ckpt", lambda p: p["epoch"] >= 1)
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, errors
    assert "checkpoint saved" in errors and f"deepzen train --resume {folder}" in errors
    assert "Traceback" not in errors
    status = json.loads((folder / "run.json").read_text())
    assert status["status"] == "interrupted"
    assert not checkpoint_position(folder / "checkpoint.ckpt")["finished"]
    resumed = run_deepzen("train", "--resume", str(folder))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_training(folder, reference_run)
    sessions = json.loads((folder / "run.json").read_text())["sessions"]
    assert [s["status"] for s in sessions] == ["interrupted", "completed"]


def test_a_folder_holding_a_run_is_not_reused(reference_run, tiny_recipe, capsys):
    from deepzen import cli

    assert cli.main(["train", "tiny-mlp", "--run-dir", str(reference_run)]) == 2
    error = capsys.readouterr().err
    assert "already holds a run" in error and f"--resume {reference_run}" in error
