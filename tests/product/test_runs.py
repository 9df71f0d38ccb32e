"""``deepzen train`` in real subprocesses: run folders, kill -9 inside an epoch and --resume, Ctrl-C."""

from __future__ import annotations

import csv
import json
import shutil
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

    before = {name: (folder / name).read_bytes() for name in ("config.json", "config.toml")}
    assert cli.main(["train", "--resume", str(folder), "--set", "batch_size=8"]) == 2  # inside an epoch of 16s
    error = capsys.readouterr().err
    assert error.startswith("deepzen: ") and error.count("\n") == 1 and "Resume with the same batch size" in error
    assert {name: (folder / name).read_bytes() for name in before} == before  # the refused override changed nothing
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "running" and info["sessions"][1]["status"] == "refused"  # the status it had before
    assert "changed" not in info["sessions"][1]

    resumed = run_deepzen("train", "--resume", str(folder))
    assert resumed.returncode == 0, resumed.stderr
    assert f"from epoch 2, step {position['step']}" in resumed.stdout
    assert_same_training(folder, reference_run)
    sessions = json.loads((folder / "run.json").read_text())["sessions"]
    assert "status" not in sessions[0] and sessions[2]["status"] == "completed"  # the killed session never ended


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


def copy_of(run, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(run, folder)
    return folder


def test_epochs_beyond_the_finished_ones_continue_training_to_the_uninterrupted_weights(reference_run, tmp_path,
                                                                                      capsys):
    from deepzen import cli

    folder = tmp_path / "two-then-three"
    assert cli.main(["train", "tiny-mlp", "--run-dir", str(folder), "--set", "epochs=2"]) == 0
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(folder), "--set", "epochs=3"]) == 0
    assert "after epoch 2: continuing to epoch 3" in capsys.readouterr().out
    assert_same_training(folder, reference_run)  # epoch 3 trained as if the run had never stopped
    assert json.loads((folder / "config.json").read_text())["config"]["epochs"] == 3
    assert json.loads((folder / "run.json").read_text())["sessions"][1]["changed"] == {"epochs": 3}
    assert cli.main(["train", "--resume", str(folder)]) == 0
    assert "finished training (3 epochs): only the recipe's steps after training run again" in capsys.readouterr().out


def test_a_deleted_checkpoint_is_named_and_restart_trains_the_run_again(reference_run, tmp_path, capsys):
    from deepzen import cli

    folder = copy_of(reference_run, tmp_path)
    (folder / "checkpoint.ckpt").unlink()
    status = (folder / "run.json").read_bytes()
    assert cli.main(["train", "--resume", str(folder)]) == 2
    error = capsys.readouterr().err
    assert "has no checkpoint to continue from: checkpoint.ckpt is missing" in error
    assert f"deepzen train --resume {folder} --restart" in error
    assert (folder / "run.json").read_bytes() == status  # nothing trained, nothing recorded

    assert cli.main(["train", "tiny-mlp", "--restart"]) == 2
    assert "--restart starts over the run named by --resume" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(folder), "--restart"]) == 0
    assert "from the start (--restart" in capsys.readouterr().out
    assert_same_training(folder, reference_run)  # the same config, trained again from the start
    sessions = json.loads((folder / "run.json").read_text())["sessions"]
    assert sessions[-1]["restart"] is True and sessions[-1]["status"] == "completed"


def test_a_damaged_checkpoint_or_one_never_written_needs_restart(reference_run, tmp_path, capsys):
    from deepzen import cli

    folder = copy_of(reference_run, tmp_path)
    checkpoint = folder / "checkpoint.ckpt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:-100])
    assert cli.main(["train", "--resume", str(folder)]) == 2
    error = capsys.readouterr().err
    assert f"{checkpoint} cannot be resumed from" in error and "--restart" in error and error.count("\n") == 1

    checkpoint.unlink()
    (folder / "history.csv").unlink()  # as a run killed inside its first epoch leaves it
    assert cli.main(["train", "--resume", str(folder)]) == 2
    assert "stopped (completed) before its first checkpoint" in capsys.readouterr().err


BROKEN_FILES = [
    ("config.json", "[]", "is not a run config"),
    ("config.json", '{"recipe": 3, "config": {}}', "is not a run config"),
    ("config.json", "[" * 100_000, "nested too deeply"),
    ("config.json", "\udcff", "is not valid JSON"),
    ("config.json", '{"recipe": "no-such-recipe", "config": {}}', "Unknown recipe 'no-such-recipe'"),
    ("config.json", '{"recipe": "tiny-mlp", "config": {"epochs": [3]}}', "setting epochs expects a value like 3"),
    ("config.json", '{"recipe": "tiny-mlp", "config": {"colour": 1}}', "has no setting 'colour'"),
    ("run.json", '{"status": "completed", "sessions": {}}', "is not a run status"),
    ("run.json", "[" * 100_000, "nested too deeply"),
    ("environment.json", '{"sessions": 1}', "is not an environment record"),
]


@pytest.mark.parametrize("name, text, message", BROKEN_FILES)
def test_a_broken_run_file_gets_one_line_naming_it(reference_run, tmp_path, capsys, name, text, message):
    from deepzen import cli

    folder = copy_of(reference_run, tmp_path)
    (folder / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    verbs = [["train", "--resume", str(folder)]]
    if name == "config.json":
        verbs.append(["evaluate", str(folder)])
    if name == "config.json" and '"recipe": "' not in text:  # predict reads the recipe's name only
        verbs.append(["predict", str(folder), "x.npy"])
    for verb in verbs:
        assert cli.main(verb) == 2, verb
        error = capsys.readouterr().err
        assert error.startswith(f"deepzen: {folder / name}") or f"deepzen: {folder} " in error, error
        assert message in error and error.count("\n") == 1, error


def test_a_run_of_a_recipe_with_its_own_loop_is_not_resumed_but_restarted(tmp_path, capsys):
    from deepzen import cli

    folder = tmp_path / "dqn"  # what a finished cartpole-dqn run leaves, less its training outputs
    folder.mkdir()
    (folder / "config.json").write_text('{"recipe": "cartpole-dqn", "config": {}}')
    (folder / "run.json").write_text('{"recipe": "cartpole-dqn", "status": "completed", "sessions": [{}]}')
    (folder / "agent.dz").write_bytes(b"")
    assert cli.main(["train", "--resume", str(folder)]) == 2
    error = capsys.readouterr().err
    assert "cartpole-dqn trains with its own loop, which saves no checkpoint" in error
    assert f"deepzen train --resume {folder} --restart" in error
    assert (folder / "agent.dz").exists()  # nothing was deleted without --restart
