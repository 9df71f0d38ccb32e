"""The examples in the recommend package's docstrings run and print what they show."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["deepzen.recommend", "deepzen.recommend.knn", "deepzen.recommend.factorization",
                                    "deepzen.recommend.baseline"])
def test_docstring_examples(module, monkeypatch):
    monkeypatch.setenv("DEEPZEN_DEVICE", "cpu")
    results = doctest.testmod(importlib.import_module(module))
    assert results.attempted > 0 and results.failed == 0
