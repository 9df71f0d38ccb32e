"""Model files from outside: nothing named in them is imported, every byte is hashed, hostile files fail cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import deepzen
from deepzen.cli import main as cli_main
from deepzen.layers import Conv2D, Dense, Flatten, MaxPooling2D
from deepzen.models import Sequential, load_model
from deepzen.serializable import ModelFileError, custom_object_scope, register_serializable
from deepzen.training.serialization import read_header, write_tensors

X = np.random.default_rng(0).normal(size=(8, 1, 8, 8)).astype(np.float32)


def small_cnn() -> Sequential:
    deepzen.seed(0)
    model = Sequential([Conv2D(4, 3, input_shape=(1, 8, 8), activation="relu", kernel_regularizer="l2"),
                        MaxPooling2D(2), Flatten(), Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    model.build()
    return model


@pytest.fixture
def saved(tmp_path) -> tuple[Path, np.ndarray]:
    model = small_cnn()
    path = tmp_path / "model.dz"
    model.save(path)
    return path, model.predict(X)


def rewrite(path: Path, edit) -> None:
    """Edits a file's config and writes it back with a valid hash, as an attacker could."""
    header = read_header(path)
    metadata = json.loads(json.dumps(header.metadata))
    edit(metadata)
    write_tensors(path, header.read_tensors(), metadata)


def first_layer(metadata: dict) -> dict:
    return metadata["model"]["config"]["layers"][0]["config"]


# -- nothing named in a file is imported ------------------------------------------------------------------
@pytest.mark.parametrize("module", ["planted_module", "deepzen_planted"])
def test_a_config_naming_any_module_imports_nothing(saved, tmp_path, monkeypatch, module):
    path, _ = saved
    marker = tmp_path / "imported"
    (tmp_path / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nclass X:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def plant(metadata):
        first_layer(metadata)["kernel_regularizer"] = {"class": "X", "module": module, "config": {}}

    rewrite(path, plant)
    with pytest.raises(ModelFileError, match="'X'.*not registered") as error:
        load_model(path)
    assert str(path) in str(error.value)
    assert not marker.exists() and module not in sys.modules


def test_the_command_line_refuses_a_hostile_file_in_one_line(saved, tmp_path, monkeypatch, capsys):
    path, _ = saved
    marker = tmp_path / "imported"
    (tmp_path / "planted_cli.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rewrite(path, lambda m: first_layer(m).update(activation={"class": "X", "module": "planted_cli", "config": {}}))
    np.save(tmp_path / "x.npy", X[:1])
    for verb in (["predict", str(tmp_path), str(tmp_path / "x.npy")], ["serve", str(tmp_path), "--port", "0"],
                 ["export", str(tmp_path)]):
        assert cli_main(verb) == 2, verb
        error = capsys.readouterr().err.strip()
        assert error.startswith("deepzen: ") and "\n" not in error and "planted_cli" in error, error
    assert not marker.exists()


def test_custom_objects_and_registered_classes_are_built(tmp_path):
    class Scale(deepzen.layers.Layer):
        def __init__(self, factor: float = 2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def forward(self, x):
            return x * self.factor

    model = Sequential([Dense(2, input_dim=3), Scale(3.0)])
    model.build()
    path = tmp_path / "custom.dz"
    model.save(path)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(load_model(path).predict(x), model.predict(x))  # a Layer subclass registers itself

    class Offset(torch.nn.Module):  # a plain torch module: registered by decorator or passed as custom_objects
        def __init__(self, shift: float):
            super().__init__()
            self.shift = shift

        def forward(self, x):
            return x + self.shift

        def get_config(self):
            return {"shift": self.shift}

        @classmethod
        def from_config(cls, config):
            return cls(**config)

    wrapped = deepzen.Model(Offset(1.5))
    wrapped.build((3,))
    path = tmp_path / "offset.dz"
    register_serializable(Offset)
    wrapped.save(path)
    np.testing.assert_array_equal(load_model(path, custom_objects={"Offset": Offset}).predict(x), x + 1.5)
    with custom_object_scope({"Offset": Offset}):
        np.testing.assert_array_equal(load_model(path).predict(x), x + 1.5)


def test_an_optimizer_with_a_schedule_saves_and_loads_it(tmp_path):
    from deepzen.optimizers.schedules import CosineDecay

    model = small_cnn()
    schedule = CosineDecay(3e-3, decay_steps=100, alpha=0.1)
    model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=schedule, beta_1=0.8), loss="mse")
    path = tmp_path / "m.dz"
    model.save(path)  # the schedule used to break the file's JSON
    optimizer = load_model(path).compile_config["optimizer"]
    assert isinstance(optimizer.learning_rate, CosineDecay) and optimizer.beta_1 == 0.8
    assert optimizer.learning_rate.get_config() == schedule.get_config()
    assert [optimizer.learning_rate(step) for step in (0, 50, 100)] == [schedule(step) for step in (0, 50, 100)]


def test_classes_that_share_a_name_are_told_apart_by_module(tmp_path):
    model = small_cnn()
    model.compile(optimizer="adam", loss=deepzen.losses.MeanSquaredError(), metrics=[deepzen.metrics.MeanSquaredError()])
    path = tmp_path / "m.dz"
    model.save(path)
    restored = load_model(path)
    assert isinstance(restored.compile_config["loss"], deepzen.losses.MeanSquaredError)
    assert isinstance(restored.compile_config["metrics"][0], deepzen.metrics.MeanSquaredError)


# -- one hash over every byte, and signatures ----------------------------------------------------------------
@pytest.mark.parametrize("old, new", [(b'\\"activation\\": \\"relu\\"', b'\\"activation\\": \\"tanh\\"'),
                                      (b"MaxPooling2D", b"AvePooling2D"), (b'\\"filters\\": 4', b'\\"filters\\": 5')])
def test_an_edited_config_is_refused_by_name(saved, old, new):
    path, _ = saved
    blob = path.read_bytes()
    assert blob.count(old) == 1
    path.write_bytes(blob.replace(old, new.ljust(len(old)) if len(new) < len(old) else new))
    with pytest.raises(ModelFileError, match="altered or damaged") as error:
        load_model(path)
    assert str(path) in str(error.value)


def test_every_byte_is_covered_by_the_hash(saved):
    path, _ = saved
    blob = path.read_bytes()
    for position in range(0, len(blob), max(1, len(blob) // 97)):  # ~100 positions over header and data
        path.write_bytes(blob[:position] + bytes([blob[position] ^ 0x01]) + blob[position + 1:])
        with pytest.raises(ModelFileError):
            load_model(path)


def test_signed_files_load_only_with_their_key(tmp_path):
    model = small_cnn()
    signed, unsigned = tmp_path / "signed.dz", tmp_path / "unsigned.dz"
    model.save(signed, signing_key=b"release key")
    model.save(unsigned)
    np.testing.assert_array_equal(load_model(signed, verify_key=b"release key").predict(X), model.predict(X))
    np.testing.assert_array_equal(load_model(signed).predict(X), model.predict(X))  # signing is opt-in on load
    with pytest.raises(ModelFileError, match="not signed with this key"):
        load_model(signed, verify_key=b"another key")
    with pytest.raises(ModelFileError, match="not signed"):
        load_model(unsigned, verify_key=b"release key")
    # Re-hashing an edited file is easy; forging the HMAC without the key is not.
    rewrite(signed, lambda m: first_layer(m).update(activation="tanh"))
    with pytest.raises(ModelFileError, match="not signed"):
        load_model(signed, verify_key=b"release key")
    with pytest.raises(ValueError, match="non-empty"):
        model.save(signed, signing_key="")


# -- hostile and broken configs ------------------------------------------------------------------------------
HOSTILE_EDITS = {
    "unknown layer class": lambda m: m["model"]["config"]["layers"][0].update({"class": "os.system"}),
    "a non-module class": lambda m: m["model"]["config"]["layers"][0].update({"class": "L2"}),
    "wrong argument type": lambda m: first_layer(m).update(filters="four"),
    "unknown argument": lambda m: first_layer(m).update(explode=True),
    "config not a dict": lambda m: m["model"].update(config=[1, 2]),
    "layers not a list": lambda m: m["model"]["config"].update(layers=7),
    "input spec dtype": lambda m: m["input_spec"].update(dtype="load"),
    "input spec negative": lambda m: m["input_spec"].update(__spec__=[1, -8, 8]),
    "input spec wrong rank": lambda m: m["input_spec"].update(__spec__=[8, 8]),
    "compile unknown loss": lambda m: m["compile"].update(loss="no_such_loss"),
    "compile unknown key": lambda m: m["compile"].update(explode=1),
}


@pytest.mark.parametrize("edit", HOSTILE_EDITS, ids=list(HOSTILE_EDITS))
def test_a_broken_config_is_a_model_file_error(saved, edit):
    path, _ = saved
    rewrite(path, HOSTILE_EDITS[edit])
    with pytest.raises(ModelFileError) as error:
        load_model(path)
    assert str(path) in str(error.value)


RAW_CONFIGS = {  # texts json.dumps would not write, as an attacker writes them
    "nested 100000 deep": lambda text: text.replace('"compile": ', '"compile": ' + "[" * 100_000 + "]" * 100_000
                                                    + ', "x": ', 1),
    "nested 70 deep": lambda text: text.replace('"compile": ', '"compile": ' + "[" * 70 + "]" * 70 + ', "x": ', 1),
    "a 5000-digit integer": lambda text: text.replace('"filters": 4', '"filters": ' + "9" * 5000, 1),
    "not JSON": lambda text: text[:-3],
    "not an object": lambda text: "[" + text + "]",
}


@pytest.mark.parametrize("edit", RAW_CONFIGS, ids=list(RAW_CONFIGS))
def test_an_unparsable_config_is_a_model_file_error(saved, monkeypatch, edit):
    import types

    import deepzen.training.serialization as serialization

    path, _ = saved
    header = read_header(path)
    text = RAW_CONFIGS[edit](json.dumps(header.metadata))
    monkeypatch.setattr(serialization, "json", types.SimpleNamespace(dumps=lambda _value: text, loads=json.loads))
    write_tensors(path, header.read_tensors(), {})
    monkeypatch.undo()
    with pytest.raises(ModelFileError) as error:
        load_model(path)
    assert str(path) in str(error.value)


MEMORY_PROBE = textwrap.dedent("""
    import json, resource, sys
    from deepzen.models import load_model
    from deepzen.serializable import ModelFileError
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        load_model(sys.argv[1])
        outcome = "loaded"
    except ModelFileError as error:
        outcome = "refused: " + str(error)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"outcome": outcome, "grown_kb": grown}))
""")


def _load_in_fresh_process(path: Path) -> dict:
    import deepzen.models  # noqa: F401 - warms nothing; the child imports on its own

    done = subprocess.run([sys.executable, "-c", "import deepzen.models, deepzen.layers\n" + MEMORY_PROBE, str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_huge_input_spec_is_refused_before_allocating(saved):
    path, _ = saved
    rewrite(path, lambda m: m["input_spec"].update(__spec__=[1, 100_000, 100_000]))
    result = _load_in_fresh_process(path)
    assert result["outcome"].startswith("refused") and str(path) in result["outcome"], result
    assert result["grown_kb"] < 200_000, result  # an 80 GB example was never allocated


def test_a_sparse_file_declaring_a_huge_tensor_is_refused_before_reading(saved, tmp_path):
    """A few KB on disk declare a 400 MB tensor; the config needs a few hundred bytes: nothing is read."""
    path, _ = saved
    header = read_header(path)
    tensors = header.read_tensors()
    key = next(k for k in tensors if k.endswith("kernel") or k.endswith("weight"))
    huge = tmp_path / "huge.dz"
    sparse = torch.empty(0)
    tensors = {**tensors, key: sparse}
    write_tensors(huge, tensors, header.metadata)  # a valid file, then grown into a sparse one by hand
    _declare_sparse(huge, key, shape=[100_000_000])
    assert huge.stat().st_size > 400_000_000 and _disk_bytes(huge) < 50_000_000
    result = _load_in_fresh_process(huge)
    assert result["outcome"].startswith("refused") and "do not fit" in result["outcome"], result
    assert result["grown_kb"] < 200_000, result


def _declare_sparse(path: Path, key: str, shape: list[int]) -> None:
    """Rewrites ``key``'s header entry to ``shape`` (float32) and extends the file sparsely, re-hashing it."""
    import hashlib

    import deepzen.training.serialization as serialization

    blob = path.read_bytes()
    length = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + length])
    extra = 4 * int(np.prod(shape))
    entries = sorted((v["data_offsets"][0], k) for k, v in header.items() if k != "__metadata__")
    position = 0
    for _, name in entries:
        entry = header[name]
        size = extra if name == key else entry["data_offsets"][1] - entry["data_offsets"][0]
        if name == key:
            entry["shape"] = shape
        entry["data_offsets"] = [position, position + size]
        position += size
    data = {name: blob[8 + length + header_offsets[0]:8 + length + header_offsets[1]]
            for name, header_offsets in ((k, json.loads(blob[8:8 + length])[k]["data_offsets"])
                                         for _, k in entries)}
    header["__metadata__"]["sha256"] = serialization._PLACEHOLDER
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as file:
        file.write(len(text).to_bytes(8, "little") + text)
        for _, name in entries:
            if name == key:
                file.seek(extra, 1)  # a hole: no disk, reads as zeros
            else:
                file.write(data[name])
        file.truncate()
    hasher = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 24):
            hasher.update(chunk)
    digest = hasher.hexdigest()
    with open(path, "r+b") as file:
        start = text.index(serialization._field("sha256", serialization._PLACEHOLDER))
        file.seek(8 + start)
        file.write(serialization._field("sha256", digest))


def _disk_bytes(path: Path) -> int:
    return path.stat().st_blocks * 512


def test_a_checkpoint_declaring_more_than_its_model_can_need_is_refused_before_reading(tmp_path):
    from deepzen.training.checkpoint import TrainingCheckpoint, read_checkpoint

    model = small_cnn()
    y = np.zeros((8, 3), np.float32)
    path = tmp_path / "checkpoint.ckpt"
    model.fit(X, y, epochs=1, batch_size=4, verbose=0, callbacks=[TrainingCheckpoint(path)])
    header = read_header(path)
    tensors = header.read_tensors()
    write_tensors(path, {**tensors, "callbacks/huge": torch.zeros(1_000_000)}, header.metadata)
    with pytest.raises(ModelFileError, match="more than this model's state can need"):
        read_checkpoint(path, model)
    weight = next(key for key in tensors if key.startswith("model/") and key.endswith("weight"))
    write_tensors(path, {**tensors, weight: torch.zeros(3, 3)}, header.metadata)
    with pytest.raises(ModelFileError, match="do not fit this model"):
        read_checkpoint(path, model)
