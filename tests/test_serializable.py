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


def test_a_fresh_process_loads_a_model_file_with_only_load_model_imported(tmp_path):
    """deepzen's own classes register when their modules load: load_model imports those (a fixed list)."""
    import subprocess
    import sys

    import numpy as np

    from deepzen.layers import Dense
    from deepzen.models import Sequential

    model = Sequential([Dense(3, input_dim=2)])
    model.build()
    model.save(tmp_path / "m.dz")
    code = ("import sys; from deepzen.training.serialization import load_model; "
            "print(type(load_model(sys.argv[1])).__name__)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.dz")], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "Sequential", done.stderr
    assert np.isfinite(model.predict(np.ones((1, 2), np.float32))).all()


def test_the_fixed_list_registers_every_class_deepzen_defines():
    """Each serializable class in the package is registered once the fixed list of modules is imported, so a
    file naming it (a TextCNN, an SSD) loads in a fresh process whatever that process imported before."""
    import json
    import subprocess
    import sys

    listing = ("import json, sys, importlib, pkgutil, deepzen; from deepzen import serializable as s\n"
               "if sys.argv[1] == 'all':\n"
               "    for info in pkgutil.walk_packages(deepzen.__path__, 'deepzen.'):\n"
               "        importlib.import_module(info.name)\n"
               "else:\n"
               "    s._import_builtin_classes()\n"
               "print(json.dumps(sorted({c.__module__ + '.' + c.__qualname__ for v in s._CLASSES.values() for c in v})))")
    registered = {}
    for mode in ("all", "fixed list"):
        done = subprocess.run([sys.executable, "-c", listing, mode], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        registered[mode] = set(json.loads(done.stdout.splitlines()[-1]))
    assert "deepzen.text.classification.TextCNN" in registered["all"]
    missing = registered["all"] - registered["fixed list"]
    assert not missing, f"add their modules to serializable.BUILTIN_MODULES: {sorted(missing)}"
