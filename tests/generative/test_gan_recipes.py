"""The mnist-dcgan recipe end to end on a small subset: metrics, files, and the classifier cache."""

import json

import pytest

import deepzen
from deepzen.generative import GAN

SMALL = {"train_images": 1024, "epochs": 1, "batch_size": 64, "latent_dim": 16, "base_filters": 8,
         "num_generated": 500, "classifier_epochs": 1}


def test_the_command_line_finds_the_recipe():
    from deepzen.cli import load_recipes
    from deepzen.recipes import RECIPES

    load_recipes()
    assert RECIPES.get("mnist-dcgan").config().num_generated == 10000


@pytest.mark.slow
def test_mnist_dcgan_recipe_reports_and_reuses_its_classifier(real_dataset, tmp_path):
    import deepzen.generative.recipes  # noqa: F401 - registers mnist-dcgan (also when run alone)
    from deepzen.recipes import run_recipe

    real_dataset("mnist")
    cache = tmp_path / "cache"
    metrics = run_recipe("mnist-dcgan", {**SMALL, "cache_dir": str(cache), "verbose": 0}, tmp_path / "run1")
    json.dumps(metrics)  # the command line writes them as JSON

    fractions = metrics["class_fractions"]
    assert len(fractions) == 10 and sum(fractions) == pytest.approx(1.0)
    assert metrics["classes_covered"] == sum(f > 0 for f in fractions)
    assert metrics["min_class_fraction"] == min(fractions)
    # Real training digits are far closer to the test digits than an untrained generator's output.
    assert metrics["fd_real_train"] < 0.1 * metrics["fd_untrained_generator"]
    assert metrics["epochs"] == 1 and metrics["train_images"] == 1024

    run = tmp_path / "run1"
    assert (run / "samples" / "epoch_001.png").is_file() and (run / "training_curves.png").is_file()
    assert isinstance(deepzen.load_model(run / "gan.dz"), GAN)
    [classifier_file] = cache.iterdir()
    written = classifier_file.stat().st_mtime_ns

    again = run_recipe("mnist-dcgan", {**SMALL, "cache_dir": str(cache), "verbose": 0}, tmp_path / "run2")
    assert classifier_file.stat().st_mtime_ns == written  # loaded, not retrained
    assert again["classifier_test_accuracy"] == metrics["classifier_test_accuracy"]
    assert again["fd_real_train"] == pytest.approx(metrics["fd_real_train"])
    assert again["fd_generated"] == pytest.approx(metrics["fd_generated"], rel=1e-4)  # same seed, same run
