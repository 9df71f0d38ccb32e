"""Fuzzing model and checkpoint files: truncations, bit flips, splices and JSON edits.

Each mutated file either loads exactly as the original (the mutation changed nothing) or is refused with
``ModelFileError``; a JSON edit whose hash was recomputed (as anyone can) either loads or is refused
cleanly - never another exception. ``DEEPZEN_FUZZ_EXAMPLES`` sets the cases per mutation (CI: 40);
``DEEPZEN_FUZZ_REPORT=file.json`` makes the tests record what happened, for benchmarks/reliability.py.
"""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import deepzen
from deepzen.callbacks import EarlyStopping, WeightAverage
from deepzen.layers import BatchNormalization, Conv2D, Dense, Flatten
from deepzen.models import Sequential, load_model
from deepzen.serializable import ModelFileError
from deepzen.training.checkpoint import CheckpointError, TrainingCheckpoint
from deepzen.training.serialization import read_header, write_tensors

EXAMPLES = int(os.environ.get("DEEPZEN_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
OUTCOMES: collections.Counter = collections.Counter()  # (file kind, mutation, outcome) -> cases

rng = np.random.default_rng(0)
X = rng.normal(size=(32, 1, 6, 6)).astype(np.float32)
Y = rng.integers(0, 3, size=32)


def network() -> Sequential:
    deepzen.seed(0)
    model = Sequential([Conv2D(4, 3, input_shape=(1, 6, 6), activation="relu", kernel_regularizer="l2"),
                        BatchNormalization(), Flatten(), Dense(3)])
    model.compile(optimizer="adam", loss=deepzen.losses.get("sparse_categorical_crossentropy", from_logits=True),
                  metrics=["accuracy"])
    return model


def fit(model: Sequential, checkpoint: Path, epochs: int = 2):
    return model.fit(X, Y, batch_size=8, epochs=epochs, verbose=0, validation_split=0.25,
                     callbacks=[EarlyStopping("val_loss", patience=5), WeightAverage(0.5),
                                TrainingCheckpoint(checkpoint, catch_interrupt=False)])


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    folder = tmp_path_factory.mktemp("originals")
    model = network()
    fit(model, folder / "checkpoint.ckpt")
    model.save(folder / "model.dz")
    other = network()  # a second model's bytes, spliced into the first
    other.fit(X[::-1].copy(), Y, epochs=1, verbose=0)
    other.save(folder / "other.dz")
    return {"model": (folder / "model.dz").read_bytes(), "other": (folder / "other.dz").read_bytes(),
            "checkpoint": (folder / "checkpoint.ckpt").read_bytes(),
            "predictions": load_model(folder / "model.dz").predict(X),  # the trained model runs channels-last
            "weights": {k: v.clone() for k, v in model.state_dict().items()}}


# -- mutations ------------------------------------------------------------------------------------------------
@st.composite
def raw_mutations(draw, size: int):
    """(kind, function blob -> blob) for truncations, bit flips, overwrites and splices."""
    kind = draw(st.sampled_from(["truncate", "bit flips", "overwrite", "splice"]))
    if kind == "truncate":
        end = draw(st.integers(0, size - 1))
        return kind, lambda blob, other: blob[:end]
    if kind == "bit flips":
        flips = draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, 7)), min_size=1, max_size=8))

        def flip(blob, other):
            blob = bytearray(blob)
            for position, bit in flips:
                blob[position] ^= 1 << bit
            return bytes(blob)
        return kind, flip
    if kind == "overwrite":
        start = draw(st.integers(0, size - 1))
        data = draw(st.binary(min_size=1, max_size=64))
        return kind, lambda blob, other: blob[:start] + data + blob[start + len(data):]
    start, length, source = draw(st.integers(0, size - 1)), draw(st.integers(1, 256)), draw(st.integers(0, size - 1))
    return kind, lambda blob, other: blob[:start] + other[source:source + length] + blob[start + length:]


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10, 10 ** 6) | st.floats(allow_nan=True)
                           | st.sampled_from(["relu", "tanh", "Dense", "L2", "os", "system", "__import__", "",
                                              "deepzen.layers", "float32", "load", "__tensor__", "model/0.weight"]),
                           lambda children: st.lists(children, max_size=3) | st.dictionaries(
                               st.sampled_from(["class", "module", "config", "__spec__", "dtype", "units", "x"]),
                               children, max_size=3), max_leaves=6)


@st.composite
def json_edits(draw):
    """A function that edits one node of a JSON tree: replace it, delete it, or nudge a number."""
    choices = draw(st.lists(st.integers(0, 1000), min_size=1, max_size=12))
    operation = draw(st.sampled_from(["replace", "delete", "nudge"]))
    value = draw(JSON_VALUES)

    def edit(tree):
        parent, key = None, None
        node = tree
        for choice in choices:  # walk down a path picked by the draws
            children = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) \
                if isinstance(node, list) else []
            if not children:
                break
            key, child = children[choice % len(children)]
            parent, node = node, child
        if parent is None:
            return
        if operation == "delete" and isinstance(parent, dict):
            del parent[key]
        elif operation == "nudge" and isinstance(node, (int, float)) and not isinstance(node, bool):
            parent[key] = node + 1
        else:
            parent[key] = value
    return edit


# -- loading a mutated file -----------------------------------------------------------------------------------
def load_and_predict(path: Path) -> np.ndarray:
    return load_model(path).predict(X)


def resume_weights(path: Path) -> dict[str, torch.Tensor]:
    model = network()
    fit(model, path)  # the checkpoint is of a finished 2-epoch fit: restoring it trains nothing
    return model.state_dict()


def same(kind: str, path: Path, originals) -> bool:
    if kind == "model":
        return np.array_equal(load_and_predict(path), originals["predictions"])
    weights = resume_weights(path)
    return all(torch.equal(weights[k], originals["weights"][k]) for k in originals["weights"])


def record(kind: str, mutation: str, outcome: str) -> None:
    OUTCOMES[(kind, mutation, outcome)] += 1


@pytest.mark.parametrize("kind", ["model", "checkpoint"])
def test_a_mutated_file_loads_unchanged_or_is_refused(kind, originals, tmp_path):
    blob, other = originals[kind], originals["other"]
    path = tmp_path / ("mutated.dz" if kind == "model" else "mutated.ckpt")

    @FUZZ
    @given(raw_mutations(len(blob)))
    def check(mutation):
        name, mutate = mutation
        mutated = mutate(blob, other)
        path.write_bytes(mutated)
        try:
            unchanged = same(kind, path, originals)
        except ModelFileError as error:
            assert mutated != blob, f"an unchanged file was refused: {error}"
            assert str(path) in str(error)
            record(kind, name, "refused")
            return
        assert mutated == blob and unchanged, f"a {name} mutation loaded"
        record(kind, name, "unchanged")

    check()


@pytest.mark.parametrize("kind", ["model", "checkpoint"])
def test_a_rehashed_json_edit_loads_or_is_refused_cleanly(kind, originals, tmp_path):
    source = tmp_path / "source"
    source.write_bytes(originals[kind])
    header = read_header(source)
    tensors = header.read_tensors()
    path = tmp_path / ("edited.dz" if kind == "model" else "edited.ckpt")

    @FUZZ
    @given(json_edits())
    def check(edit):
        metadata = json.loads(json.dumps(header.metadata))
        edit(metadata)
        try:
            write_tensors(path, tensors, metadata)
        except ValueError:  # json.dumps refuses some values (nan is allowed, recursion is not produced)
            return
        try:
            load_and_predict(path) if kind == "model" else resume_weights(path)
        except (ModelFileError, CheckpointError) as error:
            assert str(path) in str(error), error
            record(kind, "rehashed JSON edit", "refused")
            return
        record(kind, "rehashed JSON edit", "loaded")

    check()


def test_write_report():
    """Writes the counts for benchmarks/reliability.py (last in this file, so it sees every case)."""
    report = os.environ.get("DEEPZEN_FUZZ_REPORT")
    assert sum(OUTCOMES.values()) > 0 or not report
    if report:
        rows = [{"file": kind, "mutation": mutation, "outcome": outcome, "cases": count}
                for (kind, mutation, outcome), count in sorted(OUTCOMES.items())]
        Path(report).write_text(json.dumps({"examples_per_test": EXAMPLES, "rows": rows}, indent=2))
