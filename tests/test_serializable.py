"""The registry of classes files may name: registration, custom objects, and the module's examples."""

from __future__ import annotations

import doctest

import pytest

from deepzen import losses, metrics, serializable
from deepzen.serializable import (ModelFileError, check_depth, custom_object_scope, register_serializable,
                                  serializable_class, value_from_config)


def test_the_examples_in_the_docstring_run():
    result = doctest.testmod(serializable)
    assert result.attempted > 0 and result.failed == 0


def test_deepzen_classes_register_themselves_and_share_names_by_module():
    assert serializable_class("MeanSquaredError", "deepzen.losses") is losses.MeanSquaredError
    assert serializable_class("MeanSquaredError", "deepzen.metrics") is metrics.MeanSquaredError
    with pytest.raises(ModelFileError, match="several registered classes"):
        serializable_class("MeanSquaredError")


def test_custom_objects_win_and_last_only_inside_their_scope():
    class Mine:
        @classmethod
        def from_config(cls, config):
            return cls()

    config = {"class": "Mine", "module": "anywhere", "config": {}}
    with pytest.raises(ModelFileError, match="not registered"):
        value_from_config(config)
    with custom_object_scope({"Mine": Mine}):
        assert isinstance(value_from_config(config), Mine)
    with pytest.raises(ModelFileError):
        value_from_config(config)


def test_a_redefined_class_replaces_the_earlier_one():
    for value in (1, 2):
        @register_serializable(name="Redefined")
        class Redefined:
            number = value
    assert serializable_class("Redefined").number == 2


def test_depth_is_bounded_without_recursion():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ModelFileError, match="nested more than 64"):
        check_depth(deep, "a config")
    check_depth([[[]]], "a config")
