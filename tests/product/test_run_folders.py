"""Run folders: a run that failed before training does not block its folder; one that trained does, and the
message says how to reuse it."""

from __future__ import annotations

import json


def test_a_run_that_failed_before_training_gives_its_folder_to_the_next(tiny_recipe, tmp_path, capsys):
    from deepzen import cli

    folder = tmp_path / "run"
    # samples=-1 fails while the recipe builds its data, before any fit
    assert cli.main(["train", "tiny-mlp", "--run-dir", str(folder), "--set", "samples=-1"]) == 2
    status = json.loads((folder / "run.json").read_text())
    assert status["status"] == "failed" and not (folder / "checkpoint.ckpt").exists()
    capsys.readouterr()
    assert cli.main(["train", "tiny-mlp", "--run-dir", str(folder), "--set", "epochs=1"]) == 0
    status = json.loads((folder / "run.json").read_text())
    assert status["status"] == "completed"
    assert [s["status"] for s in status["sessions"]] == ["failed", "completed"]
    assert json.loads((folder / "config.json").read_text())["config"]["samples"] == 192
    # a run that trained keeps its folder, and the message says how to continue or restart it
    capsys.readouterr()
    assert cli.main(["train", "tiny-mlp", "--run-dir", str(folder)]) == 2
    error = capsys.readouterr().err
    assert "already holds a run" in error and "it trained" in error
    assert f"deepzen train --resume {folder}" in error and f"--resume {folder} --restart" in error
    assert "--run-dir" in error
