"""The text recipes on your own data from another domain: given only a training file and a test file, they
hold out a seeded validation split, stop on a validation plateau and reach a stated floor.

The datasets are built here: support tickets to route (3 classes) and flight-booking requests to tag
(origin, destination, day). Neither is trivial: every sentence is mostly shared filler, a third of the
tickets also name another class's word, labels are 5% noisy, and the tagger must tell origin from
destination by context ("from X to Y", "to Y from X", "leaving X for Y"), over multi-word cities, some of
which appear only in the test file.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import deepzen.text.recipes  # noqa: F401  (registers the text recipes)
from deepzen.recipes import run_recipe

pytestmark = pytest.mark.usefixtures("one_thread")

TOPICS = {
    "billing": "invoice refund charge charged payment card subscription price bill receipt overcharged".split(),
    "technical": "crash error login password bug freezes update app screen loading install".split(),
    "shipping": "parcel delivery courier tracking package shipped arrived address delayed box".split(),
}
FILLER = ("hello hi i we my our the a an please help need want with about since yesterday today this that it "
          "is was has been still again can you could would thanks thank regards urgent asap issue problem "
          "question account order support team week month after before when why how").split()


def support_tickets(path, n, seed):
    """``label<TAB>text`` tickets: 6-12 filler words, two words of the label's topic, sometimes a distractor."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    lines = []
    for _ in range(n):
        label = names[rng.integers(3)]
        words = list(rng.choice(FILLER, rng.integers(6, 13)))
        words += list(rng.choice(TOPICS[label], 2, replace=False))
        if rng.random() < 0.33:  # a word of another topic
            other = names[(names.index(label) + rng.integers(1, 3)) % 3]
            words.append(rng.choice(TOPICS[other]))
        rng.shuffle(words)
        if rng.random() < 0.05:  # label noise
            label = names[rng.integers(3)]
        lines.append(f"{label}\t{' '.join(words)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


CITIES = ["boston", "denver", "new york", "san francisco", "los angeles", "chicago", "salt lake city", "miami",
          "seattle", "las vegas", "atlanta", "st louis"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "tomorrow"]
TEMPLATES = ["i want to fly from {a} to {b} on {d}", "book a flight to {b} from {a} {d}",
             "leaving {a} for {b} on {d} please", "any flights {d} from {a} to {b}",
             "show me fares to {b} on {d} departing {a}", "i need to get from {a} to {b}",
             "cheapest ticket {a} to {b} next {d}", "going to {b} {d} from {a} with my family"]


UNSEEN_CITIES = ["portland", "kansas city", "el paso"]  # only in the test file: tagged by their context


def flight_requests(path, n, seed, cities=CITIES):
    """CoNLL lines (token, BIO tag): B-/I-FROM, B-/I-TO, B-DATE."""
    rng = np.random.default_rng(seed)
    blocks = []
    for _ in range(n):
        a, b = rng.choice(len(cities), 2, replace=False)
        slots = {"a": (cities[a], "FROM"), "b": (cities[b], "TO"), "d": (DAYS[rng.integers(len(DAYS))], "DATE")}
        rows = []
        for word in TEMPLATES[rng.integers(len(TEMPLATES))].split():
            if word.startswith("{"):
                text, kind = slots[word[1]]
                rows += [f"{token} {'B' if i == 0 else 'I'}-{kind}" for i, token in enumerate(text.split())]
            else:
                rows.append(f"{word} O")
        blocks.append("\n".join(rows))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("recipe, settings", [
    ("sst2-textcnn", {"embedding_dim": 32, "num_filters": 16, "learning_rate": 0.005}),
    ("sst2-bilstm-attention", {"embedding_dim": 32, "units": 24, "learning_rate": 0.005}),
])
def test_text_classifiers_train_on_a_training_and_a_test_file_only(recipe, settings, tmp_path):
    train = support_tickets(tmp_path / "train.tsv", 700, seed=0)
    test = support_tickets(tmp_path / "test.tsv", 300, seed=1)
    metrics = run_recipe(recipe, {"data": str(train), "test_data": str(test), "batch_size": 32, **settings},
                         run_dir=tmp_path / "run")
    assert metrics["validation_samples"] == 70 and metrics["train_samples"] == 630  # validation_split=0.1
    assert metrics["test_accuracy"] >= 0.85  # the floor; the labels' 5% noise caps it near 0.97
    assert metrics["stopped_early"] and metrics["epochs_run"] < 30  # a plateau, not the cap, ended training
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] - 3  # patience 3 after the best epoch


def test_the_validation_split_is_seeded(tmp_path):
    from deepzen.text.recipes import split_off

    kept, held = split_off(100, 0.1, seed=3, name="validation_split")
    again = split_off(100, 0.1, seed=3, name="validation_split")
    assert len(held) == 10 and sorted([*kept, *held]) == list(range(100))
    assert held.tolist() == again[1].tolist() and held.tolist() != split_off(100, 0.1, 4, "x")[1].tolist()
    with pytest.raises(ValueError, match="validation_split"):
        split_off(100, 1.5, seed=0, name="validation_split")


def test_tagger_trains_on_a_training_and_a_test_file_only(tmp_path):
    train = flight_requests(tmp_path / "train.conll", 400, seed=0)
    test = flight_requests(tmp_path / "test.conll", 150, seed=1, cities=CITIES[:6] + UNSEEN_CITIES)
    settings = {"data": str(train), "test_data": str(test), "word_dim": 32, "char_dim": 8, "char_units": 8,
                "units": 32, "batch_size": 16, "weight_average": 0.0, "learning_rate": 0.01, "patience": 3,
                "verbose": 0}
    metrics = run_recipe("conll-bilstm-crf", settings, run_dir=tmp_path / "run")
    assert metrics["train_sentences"] == 360  # 10% held out for validation
    assert metrics["test_f1"] >= 0.9, metrics
    assert metrics["stopped_early"] and metrics["best_epoch"] <= metrics["epochs_run"] - 3
    assert set(metrics["test_per_type_f1"]) == {"FROM", "TO", "DATE"}
    assert json.loads((tmp_path / "run" / "vocabulary.json").read_text())
