"""The examples in the detection modules' docstrings run and give what they show."""

import doctest
import importlib

import pytest

MODULES = ("anchors", "augment", "boxes", "loss", "metrics", "model", "nms", "readers", "scenes", "train")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    # import_module: the package exports a function named nms, which hides the submodule as an attribute
    module = importlib.import_module(f"deepzen.vision.detection.{name}")
    result = doctest.testmod(module)
    assert result.failed == 0
    if name != "boxes":  # boxes.py documents formulas, not examples
        assert result.attempted > 0
