"""Every recipe that trains through ``Model.fit`` resumes bit-exactly from its run folder's checkpoints.

For each registered recipe (the registry drives the parametrization, so a new recipe is covered the day it
is registered) the recipe runs twice on the tiniest real-data settings that still train:

- straight for 2 epochs;
- for 1 epoch, then resumed in its folder with ``Run.open(path, {"epochs": 2}).execute()`` (what
  ``deepzen train --resume RUN --set epochs=2`` does).

Where a shorter first run would train something else, the shorter run is instead interrupted as by Ctrl-C at
the end of its first epoch and resumed with the same settings: recipes whose learning-rate schedule spans the
configured epochs, recipes whose later fits start from an earlier fit's network, and recipes whose training
length is a step budget (``epochs`` is not a setting: the language models and translators stop by
``TrainingBudget``).

Every checkpoint the run wrote (``checkpoint.ckpt``, ``checkpoint-2.ckpt``... one per fit) must then hold
bit-identical tensors (model weights, optimizer states, callback states, RNG states) and the same history.

A recipe missing from :data:`TINY` fails with a request for tiny settings; recipes that train with their own
loop, so that no checkpoint exists, are listed in :data:`OWN_LOOP` with the reason.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from deepzen.cli import load_recipes
from deepzen.data.paths import data_home
from deepzen.recipes import RECIPES
from deepzen.runs import Run
from deepzen.training.checkpoint import TrainingCheckpoint, checkpoint_position, read_checkpoint

import product_recipes  # noqa: F401,I001  (registers tiny-mlp, the product tests' recipe, whatever ran before)

pytestmark = pytest.mark.usefixtures("one_thread")

load_recipes()


@dataclasses.dataclass(frozen=True)
class Tiny:
    """How a recipe runs cheaply: its settings (values that are callables get the test's tmp_path and
    make a data slice there), the settings that count its epochs, and how the shorter run is cut."""

    settings: dict
    epoch_keys: tuple = ("epochs",)
    interrupt: bool = False  # True: Ctrl-C after epoch 1 and resume with the same settings


def _head(dataset: str, file: str, lines: int) -> callable:
    """A callable writing the first ``lines`` lines of a real dataset file to tmp_path (a real-data slice)."""

    def write(tmp_path: Path, home: Path) -> str:
        source = home / dataset / file
        if not source.is_file():
            pytest.fail(f"{source} is missing: the recipe resume tests need the real datasets (set DEEPZEN_DATA)")
        target = tmp_path / f"{dataset}-{lines}.{file.rsplit('.', 1)[-1]}"
        with open(source, encoding="utf-8", errors="replace") as file_in:
            target.write_text("".join(line for _, line in zip(range(lines), file_in)), encoding="utf-8")
        return str(target)

    return write


TEXT_CLASSIFIER = {"max_train_samples": 96, "embedding_dim": 8, "num_filters": 4, "units": 4, "batch_size": 32,
                   "verbose": 0}
LANGUAGE_MODEL = {"data": _head("tinyshakespeare", "input.txt", 300), "max_steps": 4, "eval_every": 2, "minutes": 0,
                  "seq_len": 16, "eval_len": 16, "batch_size": 8, "warmup_steps": 1, "sample_length": 8,
                  "embedding_dim": 8, "units": 16, "d_model": 16, "num_heads": 2, "num_layers": 1, "verbose": 0}
TRANSLATOR = {"max_train_pairs": 200, "max_eval_pairs": 4, "max_steps": 4, "minutes": 0, "warmup_steps": 1,
              "vocab_size": 200, "d_model": 16, "units": 16, "num_heads": 2, "num_layers": 1, "intermediate_dim": 32,
              "batch_size": 100, "beam_size": 2, "verbose": 0}

TINY: dict[str, Tiny] = {
    "tiny-mlp": Tiny({"samples": 96, "verbose": 0}),
    "digits-cnn": Tiny({"filters": 4, "batch_size": 128, "verbose": 0}),
    "mnist-lenet5": Tiny({"train_samples": 256, "test_samples": 128, "batch_size": 64, "verbose": 0}),
    # its cosine schedule spans the configured epochs, so 1 epoch + --set epochs=2 is another schedule
    "mnist-resnet": Tiny({"model": "resnet20", "train_samples": 128, "test_samples": 64, "batch_size": 64,
                          "verbose": 0}, interrupt=True),
    # its later fits start from the source network, so a shorter source fit gives them other data
    "mnist-transfer": Tiny({"source_samples": 256, "per_class": 4, "batch_size": 16, "feature_hidden": 0,
                            "verbose": 0}, epoch_keys=("source_epochs", "target_epochs"), interrupt=True),
    "mnist-dcgan": Tiny({"train_images": 128, "batch_size": 64, "latent_dim": 8, "base_filters": 4,
                         "num_generated": 128, "classifier_epochs": 1, "verbose": 0}),
    "mr-textcnn": Tiny({**TEXT_CLASSIFIER, "max_folds": 1}),
    "mr-bilstm-attention": Tiny({**TEXT_CLASSIFIER, "max_folds": 1}),
    "sst2-textcnn": Tiny(TEXT_CLASSIFIER),
    "sst2-bilstm-attention": Tiny(TEXT_CLASSIFIER),
    "conll-bilstm-crf": Tiny({"max_train_sentences": 48, "max_eval_sentences": 16, "batch_size": 16, "word_dim": 8,
                              "char_dim": 4, "char_units": 4, "units": 8, "verbose": 0}),
    "movielens-ncf": Tiny({"data": _head("ml-100k", "u.data", 3000), "factors": 4, "layers": (8, 4), "negatives": 1,
                           "batch_size": 512, "verbose": 0}),
    "shakespeare-char-lstm": Tiny(LANGUAGE_MODEL, epoch_keys=(), interrupt=True),
    "shakespeare-char-transformer": Tiny(LANGUAGE_MODEL, epoch_keys=(), interrupt=True),
    "multi30k-transformer": Tiny(TRANSLATOR, epoch_keys=(), interrupt=True),
    "multi30k-gru-attention": Tiny(TRANSLATOR, epoch_keys=(), interrupt=True),
    # its cosine schedule spans the configured epochs
    "mnist-segmentation": Tiny({"train_scenes": 32, "test_scenes": 8, "filters": 2, "depth": 2, "batch_size": 16,
                                "verbose": 0}, interrupt=True),
    "moving-mnist-video": Tiny({"train_clips": 16, "test_clips": 8, "frames": 8, "filters": 2, "batch_size": 8,
                                "verbose": 0}, interrupt=True),  # its cosine schedule spans the configured epochs
    # the detectors' cosine schedule spans the configured epochs
    "mnist-detection": Tiny({"train_scenes": 16, "test_scenes": 4, "batch_size": 8, "width": 2, "pyramid_channels": 4,
                             "verbose": 0}, interrupt=True),
    "raccoon-detection": Tiny({"image_size": 64, "batch_size": 80, "width": 2, "pyramid_channels": 4, "verbose": 0},
                              interrupt=True),
}

OWN_LOOP = {
    "cartpole-dqn": "DQN trains with its own environment-step loop (no Model.fit, so no checkpoint.ckpt)",
    "cartpole-a2c": "A2C trains with its own environment-step loop (no Model.fit, so no checkpoint.ckpt)",
    "movielens-knn": "k-NN has no training loop: fitting computes similarities in one pass",
    "movielens-mf": "matrix factorization keeps its own SGD epoch loop (recommend/factorization.py), not Model.fit",
}

XFAIL: dict[str, str] = {}  # recipe -> why it does not resume exactly (strict: fixing it fails the test)


def _settings(tiny: Tiny, tmp_path: Path, home: Path, epochs: int) -> dict:
    settings = {key: value(tmp_path, home) if callable(value) else value for key, value in tiny.settings.items()}
    return {**settings, **{key: epochs for key in tiny.epoch_keys}}


def _interrupt_after_first_epoch(monkeypatch) -> None:
    """The next fit's TrainingCheckpoint sees a Ctrl-C in the last step of epoch 1: it saves and stops there."""
    original = TrainingCheckpoint.on_epoch_end

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            self.interrupted = True
            monkeypatch.setattr(TrainingCheckpoint, "on_epoch_end", original)
        original(self, epoch, logs)

    monkeypatch.setattr(TrainingCheckpoint, "on_epoch_end", on_epoch_end)


def _checkpoints(folder: Path) -> dict[str, tuple[dict, dict[str, torch.Tensor]]]:
    return {file.name: read_checkpoint(file) for file in sorted(folder.glob("checkpoint*.ckpt"))}


def _assert_same_training(resumed: Path, straight: Path) -> None:
    mine, theirs = _checkpoints(resumed), _checkpoints(straight)
    assert mine.keys() == theirs.keys() and mine, f"checkpoints {sorted(mine)} vs {sorted(theirs)}"
    for name, ((metadata, tensors), (reference_metadata, reference_tensors)) in zip(
            mine, zip(mine.values(), theirs.values())):
        assert tensors.keys() == reference_tensors.keys(), name
        different = [key for key, value in tensors.items() if not torch.equal(value, reference_tensors[key])]
        assert not different, f"{name}: {len(different)} tensors differ, e.g. {different[:5]}"
        for key in ("epoch", "step", "finished", "stopped", "history"):
            assert metadata[key] == reference_metadata[key], f"{name}: {key}"
    for history in sorted(straight.glob("history*.json")):
        assert json.loads((resumed / history.name).read_text()) == json.loads(history.read_text()), history.name


def _cases() -> list:
    return [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=XFAIL[name])) if name in XFAIL else name
            for name in sorted(RECIPES.names())]


@pytest.mark.parametrize("name", _cases())
def test_recipe_resumes_bit_exactly(name, tmp_path, monkeypatch):
    if name in OWN_LOOP:
        pytest.skip(f"{name}: {OWN_LOOP[name]}")
    if name not in TINY:
        pytest.fail(f"recipe {name!r} has no tiny settings: add it to TINY in {Path(__file__).name} (settings that "
                    f"train it for 2 epochs in seconds), or to OWN_LOOP with the reason if it does not train "
                    f"through Model.fit")
    tiny = TINY[name]
    home = data_home()
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    Run.create(name, _settings(tiny, tmp_path, home, 2), straight).execute()
    if tiny.interrupt:
        _interrupt_after_first_epoch(monkeypatch)
        with pytest.raises(KeyboardInterrupt):
            Run.create(name, _settings(tiny, tmp_path, home, 2), resumed).execute()
        overrides = {}
    else:
        Run.create(name, _settings(tiny, tmp_path, home, 1), resumed).execute()
        overrides = {key: 2 for key in tiny.epoch_keys}
    assert checkpoint_position(resumed / "checkpoint.ckpt")["epoch"] == 1  # the shorter run stopped after epoch 1
    Run.open(resumed, overrides).execute()
    _assert_same_training(resumed, straight)


def test_the_tables_name_only_registered_recipes():
    stale = (TINY.keys() | OWN_LOOP.keys() | XFAIL.keys()) - set(RECIPES.names())
    assert not stale, f"no recipe is registered under {sorted(stale)}: remove them from {Path(__file__).name}"
    assert not TINY.keys() & OWN_LOOP.keys()
