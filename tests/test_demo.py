"""`deepzen demo`: the README's first command, end to end on the embedded 8x8 digits."""

import json

import numpy as np

from deepzen.cli import main
from deepzen.data.images import load_digits_split
from deepzen.models import load_model


def test_demo_trains_saves_and_reaches_95_percent(tmp_path, capsys):
    assert main(["demo", "--run-dir", str(tmp_path), "--set", "verbose=0"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.95
    assert "Test accuracy" in capsys.readouterr().out
    png = (tmp_path / "training_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    _, _, x_test, y_test = load_digits_split(test_fraction=0.2, seed=0)
    model = load_model(tmp_path / "model.dz")
    accuracy = float((model.predict(x_test).argmax(1) == y_test).mean())
    assert abs(accuracy - metrics["test_accuracy"]) < 1e-6
