"""The experiments on a tiny budget (the embedded 8x8 digits, a few hundred images, one epoch):
the run folder's structure, finite numbers, a finding that names the variants, determinism under
a seed; and the shared pieces (data split, step recorder, smoothing, layer statistics, report)
against reference computations."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepzen import optimizers
from deepzen.callbacks import Callback
from deepzen.cli import main
from deepzen.experiments import EXPERIMENTS, experiment_options, parse_option, run_experiment
from deepzen.experiments.common import (CosineDecay, check_variants, first_below, load_data, mlp, smooth,
                                       smoothing_window, train)
from deepzen.experiments.initialization import layer_statistics
from deepzen.experiments.report import Column, markdown_table, points

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = {
    "initialization": dict(train_samples=200, epochs=1, width=16, probe_samples=64),
    "activations": dict(train_samples=200, epochs=1, width=16, depths=(3, 6), every=2),
    "optimizers": dict(train_samples=200, epochs=1, width=16, batch_size=32),
    "regularization": dict(train_samples=200, validation_samples=100, epochs=3, width=32, patience=0),
    "batchnorm": dict(train_samples=200, epochs=1, widths=(4, 8), batch_size=32),
    "residual": dict(train_samples=200, epochs=1, depths=(8, 14), width=4, batch_size=32),
    "augmentation": dict(train_samples=200, epochs=1, widths=(4, 8), grid_images=4),
}


# The determinism rerun: two variants each (randomness from weights, shuffling, dropout and
# augmentation included). Each variant is seeded on its own, so its numbers must equal those it
# had in the full run.
TWO_VARIANTS = {
    "initialization": dict(initializers=("zeros", "he_normal")),
    "activations": dict(activations=("sigmoid", "relu"), depths=(3,)),
    "optimizers": dict(optimizers=("sgd", "adam")),
    "regularization": dict(variants=("dropout", "augmentation")),
    "batchnorm": dict(learning_rates=(0.5,)),
    "residual": dict(depths=(8,)),
    "augmentation": dict(variants=("none", "combined")),
}


def _terms(name: str, row: dict) -> list[str]:
    """Words the finding must contain for a variant (its label, or the parts the finding names)."""
    if name == "augmentation" and row["variant"] == "none":
        return ["Without augmentation"]
    if name == "activations":
        return [row["activation"], f"{row['depth']}-layer"]
    if name == "residual":
        return [row["kind"], f"{row['depth']} layers"]
    if name == "batchnorm":
        return [f"learning rate {row['learning_rate']:g}", "with batch normalization" if row["batchnorm"] == "yes"
                else "without batch normalization"]
    return [row["variant"]]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return {name: run_experiment(name, tmp_path_factory.mktemp(name), dataset="digits", seed=3, verbose=0, **options)
            for name, options in TINY.items()}


def test_the_seven_experiments_are_registered():
    assert EXPERIMENTS.names() == sorted(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_run_folder_has_report_table_figures_and_finite_numbers(results, name):
    result = results[name]
    report = result.report_path.read_text()
    for heading in ("## Measurements", "## Finding", "## Figures"):
        assert heading in report
    assert result.finding in report
    for row in result.rows:
        assert f"| {row['variant']} |" in report
        for column in result.columns:
            value = row.get(column.key)
            if value is not None and column.kind != "text":
                assert math.isfinite(value), (row["variant"], column.key, value)
    assert len(result.rows) == len({row["variant"] for row in result.rows}) >= 2
    for file, caption in result.figures:
        path = result.run_dir / file
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({file})" in report and caption in report
    assert result.figures[0][0] == f"{name}.png"  # the summary picture the README shows
    saved = json.loads((result.run_dir / "results.json").read_text())
    assert [row["variant"] for row in saved["rows"]] == result.variants
    assert saved["finding"] == result.finding
    for row in result.rows:
        for term in _terms(name, row):
            assert term in result.finding, (term, result.finding)


@pytest.mark.parametrize("name", sorted(TINY))
def test_same_seed_gives_the_same_numbers(results, tmp_path, name):
    again = run_experiment(name, tmp_path, dataset="digits", seed=3, verbose=0, **{**TINY[name], **TWO_VARIANTS[name]})
    assert len(again.rows) == 2
    first = results[name].measurements()
    assert again.measurements() == {variant: first[variant] for variant in again.variants}


def test_another_seed_gives_other_numbers(results, tmp_path):
    other = run_experiment("optimizers", tmp_path, dataset="digits", seed=4, verbose=0,
                           **{**TINY["optimizers"], **TWO_VARIANTS["optimizers"]})
    first = results["optimizers"].measurements()
    assert other.measurements() != {variant: first[variant] for variant in other.variants}


def test_zero_initialization_keeps_units_identical(results):
    rows = {row["variant"]: row for row in results["initialization"].rows}
    assert rows["zeros"]["unit_difference"] == 0.0
    assert rows["He normal"]["unit_difference"] > 0.0


def test_unknown_option_names_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        run_experiment("optimizers", tmp_path, epoch=2)
    with pytest.raises(ValueError, match="Expected one of"):
        run_experiment("dropout", tmp_path)


def test_command_line_runs_an_experiment_and_prints_the_finding(tmp_path, capsys):
    status = main(["experiment", "optimizers", "--run-dir", str(tmp_path), "--set", "dataset=digits",
                   "--set", "optimizers=sgd,adam", "--set", "train_samples=100", "--set", "epochs=1",
                   "--set", "verbose=0"])
    assert status == 0
    output = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [row["variant"] for row in saved["rows"]] == ["sgd", "adam"]
    assert saved["settings"]["epochs"] == 1 and saved["data"].startswith("digits (8x8): 100 training")
    assert str(tmp_path / "report.md") in output and saved["finding"] in output
    assert (tmp_path / "report.md").read_text().startswith("# Optimizers")
    assert main(["experiment", "residual", "--options"]) == 0
    assert "depths = (8, 20, 56)" in capsys.readouterr().out
    assert experiment_options("residual")["depths"] == (8, 20, 56)
    assert main(["experiment", "optimizers", "--set", "epoch=1", "--run-dir", str(tmp_path / "unused")]) == 2
    assert "no option 'epoch'" in capsys.readouterr().err and not (tmp_path / "unused").exists()


@pytest.mark.parametrize("text, default, expected", [
    ("3", 20000, 3), ("None", 20000, None), ("1e-3", 0.01, 0.001), ("(8, 20)", (8, 20, 56), (8, 20)),
    ("8", (8, 20, 56), (8,)), ("sgd,adam", ("sgd", "momentum"), ("sgd", "adam")), ("none", ("none", "l1"), ("none",)),
    ("false", True, False), ("True", False, True), ("0", True, False), ("mnist", "auto", "mnist"),
    ("{'sgd': 0.1}", None, {"sgd": 0.1}),
])
def test_set_values_are_parsed_by_the_option_default(text, default, expected):
    value = parse_option(text, default)
    assert value == expected and type(value) is type(expected)


def test_set_rejects_text_that_is_no_number_for_a_number_option():
    with pytest.raises(ValueError):
        parse_option("many", 3)


# -- the shared pieces ---------------------------------------------------------------------------------
def test_load_data_draws_disjoint_normalized_subsets():
    data = load_data("digits", train_samples=300, validation_samples=100, test_samples=50, seed=1)
    assert data.x_train.shape == (300, 1, 8, 8) and data.x_valid.shape == (100, 1, 8, 8)
    assert data.x_test.shape == (50, 1, 8, 8) and data.name == "digits"
    assert abs(float(data.x_train.mean())) < 1e-5 and abs(float(data.x_train.std()) - 1) < 1e-4
    train_rows = {row.tobytes() for row in data.x_train}
    assert not any(row.tobytes() in train_rows for row in data.x_valid)
    again = load_data("digits", train_samples=300, validation_samples=100, test_samples=50, seed=1)
    assert np.array_equal(again.x_train, data.x_train) and np.array_equal(again.y_valid, data.y_valid)
    with pytest.raises(ValueError, match="train_samples"):
        load_data("digits", train_samples=5000)


def test_missing_mnist_falls_back_to_digits_with_sizes_that_fit(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPZEN_DATA", str(tmp_path))  # no mnist/ folder here
    data = load_data("auto", train_samples=20000, validation_samples=1000, seed=0)
    assert data.name == "digits" and "MNIST was not found" in data.note
    assert len(data.y_train) + len(data.y_valid) == 1438 and len(data.y_valid) == 1438 // 4
    with pytest.raises(FileNotFoundError, match="mnist"):
        load_data("mnist")


def test_step_recorder_losses_average_to_the_epoch_loss():
    data = load_data("digits", train_samples=100, seed=0)
    trained = train(lambda: mlp(data, depth=3, width=8), data, optimizer="sgd", epochs=2, batch_size=32, seed=0)
    steps = trained.steps
    assert steps.epoch_ends == [4, 8] and len(steps.losses) == len(steps.seconds) == 8
    sizes = np.array([32, 32, 32, 4] * 2)
    for epoch, (begin, end) in enumerate([(0, 4), (4, 8)]):
        mean = np.average(steps.losses[begin:end], weights=sizes[begin:end])
        assert mean == pytest.approx(trained.history["loss"][epoch], rel=1e-5)
    assert all(b >= a for a, b in zip(steps.seconds, steps.seconds[1:]))


class _PoisonAt(Callback):
    """Puts NaN into the first weight after step ``step`` (1-based)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, step, logs=None):
        if step == self.step - 1:
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))


def test_divergence_is_reported_not_raised():
    data = load_data("digits", train_samples=100, seed=0)
    trained = train(lambda: mlp(data, depth=3, width=8), data, optimizer="sgd", epochs=1, batch_size=10, seed=0,
                    callbacks=[_PoisonAt(step=3)])
    assert trained.diverged_at == 4  # the step after the weights became NaN
    assert all(math.isfinite(loss) for loss in trained.steps.losses[:3])


def test_cosine_decay_follows_a_half_cosine_to_zero():
    data = load_data("digits", train_samples=64, seed=0)
    seen = []

    class ReadLearningRate(Callback):
        def on_train_batch_begin(self, step, logs=None):
            seen.append(self.model.optimizer.param_groups[0]["lr"])

    train(lambda: mlp(data, depth=2, width=4), data, optimizer=optimizers.get("sgd", learning_rate=0.4), epochs=2,
          batch_size=16, seed=0, callbacks=[CosineDecay(), ReadLearningRate()])
    assert seen == pytest.approx([0.4 * (1 + math.cos(math.pi * t / 8)) / 2 for t in range(8)])


def test_smooth_and_first_below_match_brute_force():
    values = np.random.default_rng(0).random(23)
    expected = [values[max(0, i - 4):i + 1].mean() for i in range(len(values))]
    assert np.allclose(smooth(values, 5), expected)
    assert np.array_equal(smooth(values, 1), values)
    assert first_below([3.0, 2.0, 0.5, 0.1], 0.5) == 3
    assert first_below([3.0, 2.0], 0.5) is None


def test_layer_statistics_match_a_manual_forward_and_autograd():
    data = load_data("digits", train_samples=50, seed=0)
    torch.manual_seed(0)
    model = mlp(data, depth=3, width=5, activation="tanh")
    x, y = torch.as_tensor(data.x_train[:20]), torch.as_tensor(data.y_train[:20])
    model.build_for(x)
    stats = layer_statistics(model, x, y)
    first, second, output = [m for m in model.modules() if type(m).__name__ == "Dense"]
    h1 = torch.tanh(x.flatten(1) @ first.weight.T + first.bias)
    h2 = torch.tanh(h1 @ second.weight.T + second.bias)
    loss = F.cross_entropy(h2 @ output.weight.T + output.bias, y)
    grads = torch.autograd.grad(loss, [first.weight, second.weight, output.weight])
    assert stats["activation_std"] == pytest.approx([h1.std().item(), h2.std().item()], rel=1e-5)
    assert stats["gradient_norm"] == pytest.approx([g.norm().item() for g in grads], rel=1e-5)
    spread = [max(abs(h[:, j] - h[:, 0]).max().item() for j in range(5)) for h in (h1, h2)]
    assert stats["unit_difference"] == pytest.approx(spread, rel=1e-5)


def test_markdown_table_formats_each_kind():
    columns = [Column("accuracy", "accuracy", "percent"), Column("loss", "loss"), Column("steps", "steps", "integer"),
               Column("bn", "bn", "text")]
    table = markdown_table(columns, [{"variant": "a", "accuracy": 0.9712, "loss": 0.000123, "steps": 1234, "bn": "yes"},
                                     {"variant": "b", "accuracy": 0.5, "loss": None, "steps": None, "bn": "no"}])
    assert table.splitlines() == ["| variant | accuracy | loss | steps | bn |", "|:--|--:|--:|--:|:--|",
                                  "| a | 97.1% | 0.000123 | 1,234 | yes |", "| b | 50.0% | — | — | no |"]


def test_points_and_the_helpers_of_the_run_functions():
    assert points(0.081) == "8.1 points" and points(-0.048, signed=True) == "-4.8 points"
    assert points(0.0004, signed=True) == "+0.0 points" and points(-0.0004, signed=True) == "+0.0 points"
    data = load_data("digits", train_samples=1000, seed=0)
    assert smoothing_window(data, 32) == 3  # ceil(1000 / 32) = 32 steps an epoch, a tenth of it
    assert smoothing_window(data, 1000) == 1
    check_variants(("none", "flip"), ("none", "flip", "zoom"))
    with pytest.raises(ValueError, match="Expected variants among none, flip. Received: mirror"):
        check_variants(("none", "mirror"), ("none", "flip"))
