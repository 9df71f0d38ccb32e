"""The image-classification recipes end to end on real MNIST subsets and a generated CIFAR-format folder.

The full runs (LeNet-5 >= 99.0%, ResNet-20 >= 99.5%, the transfer comparison) are the benchmarks in
``benchmarks/``; here each recipe runs on a small subset, checks its outputs and, for LeNet-5, an
accuracy floor measured on this subset (96.0-96.7% over seeds 0-2).
"""

from __future__ import annotations

import json

import pytest

from deepzen.data.images import write_cifar10_like
from deepzen.models import load_model
from deepzen.recipes import RECIPES, run_recipe
from deepzen.vision import models
from deepzen.vision import recipes  # noqa: F401  (registers the recipes)
from deepzen.vision.tasks import load_image_data

REPORT_FILES = ("model.dz", "preprocessing.json", "training_curves.png", "confusion_matrix.png",
                "misclassified.png", "feature_maps.png")


def check_report(run_dir, metrics, dataset="mnist", data=None, **subset):
    for name in REPORT_FILES:
        assert (run_dir / name).is_file(), name
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["test_error"] == pytest.approx(1 - metrics["test_accuracy"])
    # The saved network, fed the data normalized as preprocessing.json says, gives the reported accuracy.
    preprocessing = json.loads((run_dir / "preprocessing.json").read_text())
    test = load_image_data(dataset, data, statistics=(preprocessing["mean"], preprocessing["std"]), **subset)
    model = load_model(run_dir / "model.dz", compile=False)
    accuracy = (model.predict(test.x_test).argmax(-1) == test.y_test).mean()
    assert accuracy == pytest.approx(metrics["test_accuracy"])


def test_recipes_are_registered():
    for name in ("digits-cnn", "mnist-lenet5", "mnist-resnet", "mnist-transfer"):
        assert name in RECIPES


def test_lenet5_recipe_on_a_subset_beats_its_floor(real_dataset, tmp_path):
    real_dataset("mnist")
    subset = {"train_samples": 6000, "test_samples": 2000, "seed": 0}
    metrics = run_recipe("mnist-lenet5", {**subset, "epochs": 2, "batch_size": 32, "verbose": 0}, tmp_path)
    assert metrics["test_accuracy"] >= 0.95
    assert metrics["train_samples"] == 6000 and metrics["test_samples"] == 2000
    assert metrics["parameters"] == 61706
    check_report(tmp_path, metrics, **subset)


def test_resnet_recipe_pipeline_on_mnist(real_dataset, tmp_path):
    real_dataset("mnist")
    subset = {"train_samples": 192, "test_samples": 64, "seed": 0}
    metrics = run_recipe("mnist-resnet", {**subset, "epochs": 2, "batch_size": 64, "verbose": 0}, tmp_path)
    assert metrics["augment"] == "digits"
    assert metrics["final_learning_rate"] == pytest.approx(0.1)  # warm-up epoch at 0.05, then the cosine's start
    assert metrics["parameters"] == sum(p.numel() for p in models.create("resnet20", in_channels=1).parameters())
    check_report(tmp_path, metrics, **subset)


def test_resnet_recipe_reads_cifar10_with_the_documented_settings(tmp_path):
    folder = tmp_path / "cifar"
    write_cifar10_like(folder, 16, seed=1)
    # As the command line passes them: strings, converted to the config's types.
    overrides = {"dataset": "cifar10", "data": str(folder), "epochs": "1", "schedule": "step",
                 "milestones": "82,123", "weight_decay": "1e-4", "nesterov": "false", "warmup_epochs": "0",
                 "batch_size": "32", "verbose": "0"}
    metrics = run_recipe("mnist-resnet", overrides, tmp_path / "run")
    assert metrics["augment"] == "cifar"
    assert metrics["train_samples"] == 5 * 16 and metrics["test_samples"] == 16
    assert metrics["parameters"] == sum(p.numel() for p in models.create("resnet20", in_channels=3).parameters())
    check_report(tmp_path / "run", metrics, dataset="cifar10", data=folder)


def test_transfer_recipe_reports_three_accuracies(real_dataset, tmp_path):
    real_dataset("mnist")
    overrides = {"source_samples": 3000, "source_epochs": 1, "per_class": 20, "target_epochs": 3, "verbose": 0}
    metrics = run_recipe("mnist-transfer", overrides, tmp_path)
    assert (tmp_path / "source_model.dz").is_file()
    assert metrics["train_samples"] == 100 and metrics["parameters"] == 61706 - 5 * 85
    assert metrics["fine_tuning_accuracy"] == metrics["test_accuracy"]
    assert metrics["source_test_accuracy"] > 0.9
    for key in ("scratch_accuracy", "feature_extraction_accuracy", "fine_tuning_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0
    check_report(tmp_path, metrics, classes=(5, 6, 7, 8, 9))


def test_bad_settings_are_reported(tmp_path):
    with pytest.raises(ValueError, match="schedule='linear'"):
        run_recipe("mnist-resnet", {"schedule": "linear"}, tmp_path)
    with pytest.raises(ValueError, match="no setting 'lr'"):
        run_recipe("mnist-lenet5", {"lr": "0.1"}, tmp_path)
