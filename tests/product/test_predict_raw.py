"""``deepzen predict`` on raw inputs: text lines for the text recipes, user ids for the recommenders.

Each recipe trains on a tiny budget through ``deepzen train`` (in-process); the predictions must be
those of the model the recipe trained: the saved model reproduces the recipe's own metrics or
outputs (fold accuracy, entity F1, the generated sample, the test translations, the fitted fold).
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch

from deepzen import cli

GOOD, BAD = ["great", "superb", "fine", "lovely"], ["awful", "dull", "poor", "bad"]
FILLER = ["movie", "plot", "the", "a"]
SHAKESPEARE = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"


pytestmark = pytest.mark.usefixtures("one_thread")


def train(recipe: str, folder, **settings) -> dict:
    """Runs ``deepzen train RECIPE --run-dir folder --set key=value ...`` and returns its metrics."""
    arguments = ["train", recipe, "--run-dir", str(folder)]
    for key, value in settings.items():
        arguments += ["--set", f"{key}={value}"]
    assert cli.main(arguments) == 0
    return json.loads((folder / "metrics.json").read_text())


def predict(capsys, run, *inputs: str, json_output: bool = True):
    """``deepzen predict RUN INPUT... [--json]`` -> (exit code, parsed JSON or text, stderr)."""
    capsys.readouterr()
    code = cli.main(["predict", str(run), *inputs, *(["--json"] if json_output else [])])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 and json_output else out), err


# -- text classification ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    """A separable label<TAB>text file (label 1: a good word), its texts and labels."""
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for i in range(150):
        label = i % 2
        words = list(rng.choice(GOOD if label else BAD, 2)) + list(rng.choice(FILLER, 3))
        texts.append(" ".join(rng.permutation(words)))
        labels.append(label)
    path = tmp_path_factory.mktemp("reviews") / "reviews.tsv"
    path.write_text("".join(f"{label}\t{text}\n" for label, text in zip(labels, texts)))
    return path, texts, np.array(labels)


@pytest.fixture(scope="module")
def classifier_run(reviews, tmp_path_factory):
    path, _, _ = reviews
    folder = tmp_path_factory.mktemp("runs") / "mr"
    metrics = train("mr-textcnn", folder, data=path, folds=3, max_folds=2, epochs=4, learning_rate=0.01,
                    embedding_dim=16, num_filters=8, batch_size=20, seed=3)
    return folder, metrics


def reference_probabilities(folder, texts: list[str]) -> np.ndarray:
    """(N, C) class probabilities by hand: the saved vocabulary's tokens -> ids -> the saved network."""
    from deepzen.training.serialization import load_model

    encoding = json.loads((folder / "vocabulary.json").read_text())
    index = {token: i for i, token in enumerate(encoding["vocab"]["tokens"])}
    unknown = index[encoding["vocab"]["unk_token"]]
    assert encoding["lower"] is True and encoding["split_punctuation"] is False  # MR's published tokenization
    rows = [[index.get(word, unknown) for word in text.lower().split()] for text in texts]
    ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
    network = load_model(folder / "model.dz", compile=False).eval()
    with torch.no_grad():
        return torch.softmax(network(ids), dim=-1).numpy()


def test_text_classification_predicts_with_the_last_folds_model(classifier_run, reviews, tmp_path, capsys):
    folder, metrics = classifier_run
    _, texts, labels = reviews
    # The recipe's split: folds of a seeded permutation; the second (last run) fold is the test part.
    test_index = np.array_split(np.random.default_rng(3).permutation(len(texts)), 3)[1]
    lines = tmp_path / "fold.txt"
    lines.write_text("".join(texts[i] + "\n" for i in test_index))
    code, results, _ = predict(capsys, folder, f"@{lines}")
    assert code == 0 and [r["input"] for r in results] == [texts[i] for i in test_index]
    classes = json.loads((folder / "vocabulary.json").read_text())["classes"]
    predicted = np.array([classes.index(r["label"]) for r in results])
    assert np.mean(predicted == labels[test_index]) == pytest.approx(metrics["fold_accuracies"][-1], abs=1e-4)
    expected = reference_probabilities(folder, [texts[i] for i in test_index])
    np.testing.assert_allclose([[e["probability"] for e in r["top"]] for r in results],
                               -np.sort(-expected, axis=1), rtol=1e-5, atol=1e-6)
    assert [r["label"] for r in results] == [classes[c] for c in expected.argmax(1)]
    assert all(r["probability"] == r["top"][0]["probability"] for r in results)


def test_text_classification_reads_stdin_and_prints_ranked_classes(classifier_run, capsys, monkeypatch):
    folder, _ = classifier_run
    texts = ["a superb lovely movie", "the plot is dull and poor", "an awful film"]
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{texts[0]}\n{texts[1]}\n"))
    code, out, _ = predict(capsys, folder, "-", texts[2], json_output=False)
    assert code == 0
    classes = json.loads((folder / "vocabulary.json").read_text())["classes"]
    assert classes == ["0", "1"]  # the labels of the file, in numeric order
    expected = [", ".join(f"{classes[c]} ({p[c]:.1%})" for c in np.argsort(-p))
                for p in reference_probabilities(folder, texts)]
    assert out.splitlines() == [f"{text}: {ranked}" for text, ranked in zip(texts, expected)]


@pytest.mark.parametrize("inputs, message", [
    ([""], "input 1 is empty"),
    (["fine", "   "], "input 2 is empty"),
])
def test_empty_inputs_are_refused(classifier_run, inputs, message, capsys):
    code, _, err = predict(capsys, classifier_run[0], *inputs)
    assert code == 2 and message in err and "expected one text line or id per input" in err


def test_an_empty_line_in_an_input_file_is_refused_with_its_line_number(classifier_run, tmp_path, capsys):
    lines = tmp_path / "lines.txt"
    lines.write_text("a fine movie\n\nthe plot\n")
    code, _, err = predict(capsys, classifier_run[0], f"@{lines}")
    assert code == 2 and f"line 2 of {lines} is empty" in err


# -- sequence labeling ------------------------------------------------------------------------------------
def test_tagger_predicts_tags_and_entities(real_dataset, tmp_path, capsys):
    from deepzen.data.text_datasets import conll_entities, load_conll
    from deepzen.text.tagging import TaggingVocabulary, evaluate_entities, predict_tags
    from deepzen.training.serialization import load_model

    real_dataset("conll2003")
    folder = tmp_path / "conll"
    metrics = train("conll-bilstm-crf", folder, max_train_sentences=300, max_eval_sentences=40, epochs=2,
                    word_dim=16, char_dim=8, char_units=8, units=16, learning_rate=0.01, verbose=0)
    tagger = load_model(folder / "tagger.dz", compile=False)
    vocabulary = TaggingVocabulary.from_config(json.loads((folder / "vocabulary.json").read_text()))
    test_sentences, test_tags = load_conll(None, "test")
    assert evaluate_entities(tagger, vocabulary, test_sentences[:40], test_tags[:40])["f1"] == \
        pytest.approx(metrics["test_f1"])  # the saved tagger is the trained one

    sentences = [" ".join(tokens) for tokens in test_sentences[:40]]
    code, results, _ = predict(capsys, folder, *sentences)
    assert code == 0 and [r["input"] for r in results] == sentences
    expected_tags = predict_tags(tagger, vocabulary, test_sentences[:40])
    assert [r["tags"] for r in results] == expected_tags
    for result, tokens, tags in zip(results, test_sentences[:40], expected_tags):
        assert result["tokens"] == tokens
        assert result["entities"] == [[kind, start, end, " ".join(tokens[start:end])]
                                      for kind, start, end in conll_entities(tags)]


# -- generation ----------------------------------------------------------------------------------------------
def test_language_model_continues_the_prompt_as_the_recipe_sampled(tmp_path, capsys):
    from deepzen.text.generation_recipes import PREDICT_LENGTH

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(SHAKESPEARE * 40, encoding="utf-8")
    folder = tmp_path / "lm"
    train("shakespeare-char-lstm", folder, data=corpus, max_steps=4, eval_every=2, seq_len=16, batch_size=8,
          embedding_dim=8, units=16, num_layers=1, prompt="All", sample_length=PREDICT_LENGTH, seed=4)
    code, results, _ = predict(capsys, folder, "All", "Speak")
    assert code == 0 and [r["input"] for r in results] == ["All", "Speak"]
    # The recipe sampled its prompt with its seed before saving: the saved model must write the same text.
    assert results[0]["text"] == (folder / "sample.txt").read_text(encoding="utf-8")
    assert results[1]["text"].startswith("Speak") and len(results[1]["text"]) == len("Speak") + PREDICT_LENGTH
    assert set(results[1]["text"]) <= set(SHAKESPEARE)

    code, _, err = predict(capsys, folder, "Zebra")
    assert code == 2 and "characters the model's vocabulary lacks: ['Z', 'b']" in err


def test_translator_translates_as_the_recipe_did(translator_run, capsys):
    from deepzen.data.text_datasets import load_multi30k

    english = load_multi30k(None, "test")[0][:6]
    code, results, _ = predict(capsys, translator_run, *english)
    assert code == 0 and [r["input"] for r in results] == english
    recipe_output = (translator_run / "test_beam.de").read_text(encoding="utf-8").split("\n")[:-1]
    assert [r["translation"] for r in results] == recipe_output  # beam search, the run's beam size


# -- recommenders ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def movielens_run(real_dataset, tmp_path_factory):
    data = real_dataset("ml-100k")
    folder = tmp_path_factory.mktemp("runs") / "mf"
    train("movielens-mf", folder, folds="u1", ranking="false", factors=4, epochs=2, data=data)
    return folder, data


def test_recommender_lists_unrated_items_of_the_last_fit_with_titles(movielens_run, capsys):
    from deepzen.data.ratings import load_movielens_100k
    from deepzen.recommend import MatrixFactorization

    folder, data = movielens_run
    code, results, _ = predict(capsys, folder, "196", "1", "--top", "5")
    assert code == 0 and [r["input"] for r in results] == ["196", "1"]
    train_u1, _, titles = load_movielens_100k(data, "u1")
    model = MatrixFactorization.load(folder / "recommender.dz")
    for result, user in zip(results, (196, 1)):
        # the model of the last (here: the only) fit, on u1.base
        assert sorted(model.seen_items(user).tolist()) == sorted(train_u1.item[train_u1.user == user].tolist())
        items = [entry["item"] for entry in result["recommendations"]]
        assert len(items) == 5 and not set(items) & set(train_u1.item[train_u1.user == user].tolist())
        assert [entry["title"] for entry in result["recommendations"]] == [titles[item] for item in items]
        scores = model.score(np.full(model.n_items, user), model.item_ids).numpy()  # every item, by brute force
        scores[np.isin(model.item_ids, train_u1.item[train_u1.user == user])] = -np.inf
        best = np.argsort(-scores, kind="stable")[:5]
        np.testing.assert_allclose([entry["score"] for entry in result["recommendations"]], scores[best], rtol=1e-6)


def test_recommender_prints_ten_by_default(movielens_run, capsys):
    code, out, _ = predict(capsys, movielens_run[0], "196", json_output=False)
    lines = out.splitlines()
    assert code == 0 and lines[0] == "196:" and len(lines) == 11 and lines[1].startswith("  1. ")


@pytest.mark.parametrize("user, message", [
    ("99999", "unknown user 99999; expected one of the 943 user ids seen by fit(), from 1 to 943"),
    ("Bob", "'Bob' is not a user id: expected one like 1"),
])
def test_recommender_refuses_bad_user_ids(movielens_run, user, message, capsys):
    code, _, err = predict(capsys, movielens_run[0], "196", user)
    assert code == 2 and message in err


# -- runs without a predictor ----------------------------------------------------------------------------------
def test_text_for_a_run_without_a_predictor_says_what_was_expected(tiny_recipe, tmp_path, capsys):
    folder = tmp_path / "tiny"
    assert cli.main(["train", "tiny-mlp", "--run-dir", str(folder), "--set", "epochs=1"]) == 0
    code, _, err = predict(capsys, folder, "a fine film")
    assert code == 2
    assert "No input file at a fine film" in err and "(tiny-mlp) predicts on .npy arrays and images" in err
    assert "mr-textcnn" in err and "movielens-mf" in err  # the recipes whose runs read text and ids
    np.save(tmp_path / "x.npy", np.zeros((2, 6), np.float32))
    code, results, _ = predict(capsys, folder, str(tmp_path / "x.npy"))
    assert code == 0 and len(results) == 2 and len(results[0]["top"]) == 3  # arrays: as before, top 3
    assert math.isclose(sum(p["probability"] for p in results[0]["top"]), 1.0, rel_tol=1e-5)


# -- loading once ------------------------------------------------------------------------------------------
def test_a_predictor_loads_its_model_once_while_the_file_is_unchanged(classifier_run, monkeypatch):
    from deepzen.text.recipes import predict_text_classes
    from deepzen.training import serialization

    folder, _ = classifier_run
    loads = []
    real_load = serialization.load_model
    monkeypatch.setattr(serialization, "load_model", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    model_file = folder / "model.dz"
    model_file.touch()  # a new modification time: whatever an earlier test loaded is stale
    first = predict_text_classes(folder, ["a great movie"])
    assert predict_text_classes(folder, ["a great movie"]) == first and len(loads) == 1
    data = model_file.read_bytes()
    model_file.unlink()
    model_file.write_bytes(data)  # rewritten (a retrained run): loaded again
    assert predict_text_classes(folder, ["a great movie"]) == first and len(loads) == 2


def test_cached_load_keeps_the_last_few_loads_per_loader_and_files(tmp_path):
    from deepzen.recipes import cached_load

    calls = []

    def read(*paths):
        calls.append(paths)
        return [path.read_text() for path in paths]

    files = [tmp_path / f"{i}.txt" for i in range(6)]
    for number, path in enumerate(files):
        path.write_text(str(number))
    assert cached_load(read, files[0], files[1]) == ["0", "1"] and cached_load(read, files[0], files[1]) == ["0", "1"]
    assert len(calls) == 1
    assert cached_load(read, files[0]) == ["0"] and len(calls) == 2  # other files: another entry
    for path in files[2:]:  # four more entries push the first two out
        cached_load(read, path)
    assert cached_load(read, files[0], files[1]) == ["0", "1"] and len(calls) == 7
    with pytest.raises(FileNotFoundError):
        cached_load(read, tmp_path / "missing.txt")
