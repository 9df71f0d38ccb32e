"""Fixtures of the product tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def tiny_recipe():
    """Registers the tiny recipe in this process (for in-process ``cli.main`` calls)."""
    import product_recipes

    return product_recipes


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A one-epoch run of the digits CNN (the vision demo recipe), trained in this process."""
    from deepzen import cli

    folder = tmp_path_factory.mktemp("runs") / "digits"
    code = cli.main(["train", "digits-cnn", "--run-dir", str(folder), "--set", "epochs=1", "--set", "filters=4",
                     "--set", "verbose=0"])
    assert code == 0
    return folder
