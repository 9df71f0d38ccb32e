"""The recommender recipes on your own ratings files: CSV/TSV, header or not, string or integer ids, hold-outs.

The files are drawn from a small low-rank rating matrix (user and item biases plus two factors; users
rate the items they like more often), so a model has something to learn, both ratings and what a user
rates; each recipe runs through ``deepzen train`` with tiny settings.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import deepzen.recommend.recipes  # noqa: F401  (registers the movielens-* recipes, as the CLI does)
from deepzen import cli
from deepzen.data.paths import DatasetCorruptedError
from deepzen.data.ratings import holdout_split, load_ratings_table
from deepzen.recipes import run_recipe
from deepzen.recommend import Recommender

pytestmark = pytest.mark.usefixtures("one_thread")

USERS, ITEMS = 40, 60
TINY = {"movielens-knn": {"k": 10, "similarity": "msd", "centering": "mean"},
        "movielens-mf": {"factors": 4, "epochs": 40, "learning_rate": 0.03, "lr_decay": 1.0, "regularization": 0.02,
                         "batch_size": 32},
        "movielens-ncf": {"factors": 4, "layers": "8,4", "epochs": 3, "batch_size": 64, "learning_rate": 0.01,
                          "verbose": 0}}


def low_rank_ratings(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(user, item, rating)`` rows (shuffled) of about a third of a USERS x ITEMS matrix rated 1..5."""
    rng = np.random.default_rng(seed)
    affinity = rng.normal(size=(USERS, 2)) @ rng.normal(size=(2, ITEMS))  # (USERS, ITEMS), rank 2
    bias = rng.normal(0, 0.6, (USERS, 1)) + rng.normal(0, 0.6, (1, ITEMS))
    matrix = np.clip(np.rint(3 + bias + 0.7 * affinity), 1, 5)
    observed = rng.random((USERS, ITEMS)) < 1 / (1 + np.exp(1 - 2 * affinity))  # liked items are rated more often
    observed[np.arange(USERS), affinity.argmax(1)] = True  # every user has ratings
    user, item = np.nonzero(observed)
    order = rng.permutation(len(user))
    return user[order], item[order], matrix[user, item][order]


def user_name(row: int) -> str:
    return f"u{row + 1}"  # u1 .. u40: ids of different lengths, "u100" would be cut to "u10" by a <U3 cast


def item_name(row: int) -> str:
    return f"film {chr(ord('A') + row % 26)}{row // 26}"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A CSV with a header and string ids, and a TSV without a header with integer ids and timestamps."""
    folder = tmp_path_factory.mktemp("tables")
    user, item, rating = low_rank_ratings()
    csv = folder / "ratings.csv"
    csv.write_text("user_id,item_id,rating\n" + "".join(
        f"{user_name(u)},{item_name(i)},{r:g}\n" for u, i, r in zip(user, item, rating)))
    tsv = folder / "ratings.tsv"
    tsv.write_text("".join(f"{1001 + u}\t{501 + i}\t{r:g}\t{1_600_000_000 + n}\n"
                           for n, (u, i, r) in enumerate(zip(user, item, rating))))
    return {"csv": csv, "tsv": tsv, "rows": len(user)}


def train(recipe: str, folder, **settings) -> dict:
    """``deepzen train RECIPE --run-dir folder --set key=value ...`` -> its metrics."""
    arguments = ["train", recipe, "--run-dir", str(folder)]
    for key, value in {**TINY[recipe], **settings}.items():
        arguments += ["--set", f"{key}={value}"]
    assert cli.main(arguments) == 0
    return json.loads((folder / "metrics.json").read_text())


def predict(capsys, run, *inputs: str):
    """``deepzen predict RUN INPUT... --json`` -> (exit code, parsed results or None, stderr)."""
    capsys.readouterr()
    code = cli.main(["predict", str(run), *inputs, "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def split_of(path, holdout: str, test_fraction: float = 0.2, seed: int = 0):
    """The recipe's split, by the library functions it uses: (train, test, user_ids, item_ids)."""
    table, user_ids, item_ids = load_ratings_table(path)
    return (*holdout_split(table, test_fraction, per_user=holdout == "per_user", seed=seed), user_ids, item_ids)


def rmse(predicted, actual) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted, np.float64) - actual) ** 2)))


@pytest.fixture(scope="module")
def mf_run(files, tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "mf"
    return folder, train("movielens-mf", folder, data=files["csv"], ranking="false")


def test_random_holdout_sizes_and_mf_beats_the_global_mean(files, mf_run):
    folder, metrics = mf_run
    n = files["rows"]
    assert (metrics["train_ratings"], metrics["test_ratings"]) == (n - int(0.2 * n + 0.5), int(0.2 * n + 0.5))
    train_part, test, user_ids, item_ids = split_of(files["csv"], "random")
    model = Recommender.load(folder / "recommender.dz")
    # the saved model was fitted on exactly that train part, and speaks the file's ids
    assert model.user_ids.dtype.kind == "U" and set(model.user_ids) == set(user_ids[train_part.user])
    fitted_pairs = {(user, item) for user in model.user_ids.tolist() for item in model.seen_items(user).tolist()}
    assert fitted_pairs == set(zip(user_ids[train_part.user].tolist(), item_ids[train_part.item].tolist()))
    assert metrics["rmse"] == pytest.approx(rmse(model.predict(user_ids[test.user], item_ids[test.item]),
                                                 test.rating), rel=1e-5)
    baseline = rmse(np.full(len(test), train_part.rating.mean()), test.rating)
    assert metrics["rmse"] < 0.7 * baseline, (metrics["rmse"], baseline)  # measured 0.59 vs 1.01
    assert 0 < metrics["mae"] < metrics["rmse"] and "hr@10" not in metrics
    report = json.loads((folder / "results.json").read_text())
    assert report["metrics"] == metrics and report["config"]["holdout"] == "random"


def test_predict_by_string_user_id_lists_unrated_items_by_their_ids(files, mf_run, capsys):
    folder, _ = mf_run
    train_part, _, user_ids, item_ids = split_of(files["csv"], "random")
    code, results, _ = predict(capsys, folder, "u7", "u12", "--top", "4")
    assert code == 0 and [result["input"] for result in results] == ["u7", "u12"]
    all_items = {item_name(row) for row in range(ITEMS)}
    for result in results:
        trained = set(item_ids[train_part.item[user_ids[train_part.user] == result["input"]]].tolist())
        items = [entry["item"] for entry in result["recommendations"]]
        assert len(items) == 4 and set(items) <= all_items and not set(items) & trained
        assert all(entry["title"] is None for entry in result["recommendations"])
        scores = [entry["score"] for entry in result["recommendations"]]
        assert scores == sorted(scores, reverse=True)
    code, _, err = predict(capsys, folder, "u100")  # not cut to "u10"
    assert code == 2 and "unknown user 'u100'" in err


def test_per_user_holdout_on_a_headerless_tsv_keeps_every_user_in_training(files, tmp_path, capsys):
    metrics = train("movielens-knn", tmp_path, data=files["tsv"], holdout="per_user", test_fraction=0.3, seed=4)
    table, user_ids, _ = load_ratings_table(files["tsv"])
    assert user_ids.dtype == np.int64 and len(user_ids) == USERS  # integer ids, no header row taken as data
    counts = np.bincount(table.user)
    held_out = np.minimum((0.3 * counts + 0.5).astype(int), counts - 1)
    assert (metrics["train_ratings"], metrics["test_ratings"]) == (len(table) - held_out.sum(), held_out.sum())
    model = Recommender.load(tmp_path / "recommender.dz")
    assert model.user_ids.tolist() == user_ids.tolist()  # every user kept training ratings ...
    assert [len(model.seen_items(user)) for user in user_ids.tolist()] == (counts - held_out).tolist()  # ... the rest
    train_part, test, _, _ = split_of(files["tsv"], "per_user", 0.3, seed=4)
    assert metrics["rmse"] < rmse(np.full(len(test), train_part.rating.mean()), test.rating)
    assert metrics["negatives"] == min(100, ITEMS - counts.max()) and metrics["users"] == USERS
    code, results, _ = predict(capsys, tmp_path, "1003")
    assert code == 0 and all(isinstance(entry["item"], int) and 501 <= entry["item"] <= 500 + ITEMS
                             for entry in results[0]["recommendations"])


def test_ncf_ranks_one_held_out_item_per_user(files, tmp_path, capsys):
    metrics = train("movielens-ncf", tmp_path, data=files["csv"], holdout="per_user")
    _, test, user_ids, _ = split_of(files["csv"], "per_user")
    assert metrics["users"] == len(np.unique(test.user)) and metrics["test_ratings"] == len(test)
    negatives = metrics["negatives"]
    assert 0 < negatives < ITEMS and 0 < metrics["ndcg@10"] < metrics["hr@10"]
    assert metrics["hr@10"] > 2 * 10 / (negatives + 1)  # twice a random ranking's; measured 0.82 vs 0.32
    assert "rmse" not in metrics
    code, results, _ = predict(capsys, tmp_path, "u3", "--top", "3")
    assert code == 0 and all(entry["item"].startswith("film ") for entry in results[0]["recommendations"])


def test_a_separate_test_file_shares_the_ids_of_the_training_file(files, tmp_path):
    lines = files["csv"].read_text().splitlines()
    train_file, test_file = tmp_path / "train.csv", tmp_path / "test.tsv"
    train_file.write_text("\n".join(lines[:-30]) + "\n")
    test_file.write_text("".join(line.replace(",", "\t") + "\n" for line in lines[-30:]))  # no header, tabs
    metrics = run_recipe("movielens-mf", {**TINY["movielens-mf"], "data": str(train_file),
                                          "test_data": str(test_file), "ranking": False}, run_dir=tmp_path / "run")
    assert (metrics["train_ratings"], metrics["test_ratings"]) == (files["rows"] - 30, 30)
    train_table, train_users, train_items = load_ratings_table(train_file)
    test_table, test_users, test_items = load_ratings_table(test_file)
    model = Recommender.load(tmp_path / "run" / "recommender.dz")
    predicted = model.predict(test_users[test_table.user], test_items[test_table.item])
    assert metrics["rmse"] == pytest.approx(rmse(predicted, test_table.rating), rel=1e-5)
    assert set(model.user_ids.tolist()) == set(train_users.tolist())


@pytest.mark.parametrize("settings, error, message", [
    ({"holdout": "last"}, ValueError, "expected holdout to be one of 'random', 'per_user'. Received: holdout='last'"),
    ({"test_fraction": 1.5}, ValueError, "Expected 0 < test_fraction < 1. Received: test_fraction=1.5"),
    ({"test_fraction": 0.01, "holdout": "per_user"}, ValueError, "leaves no test ratings"),
    ({"data": "missing.csv"}, FileNotFoundError, "no ratings file at missing.csv"),
])
def test_bad_settings_are_refused_with_the_value_and_what_was_expected(files, tmp_path, settings, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(".", r"\.")):
        run_recipe("movielens-mf", {"data": str(files["csv"]), **settings}, run_dir=tmp_path)


def test_test_data_needs_a_ratings_file_as_data(files, tmp_path):
    with pytest.raises(ValueError, match="test_data is read with a ratings file as data"):
        run_recipe("movielens-knn", {"data": str(tmp_path), "test_data": str(files["csv"])}, run_dir=tmp_path)


@pytest.mark.parametrize("text, error, message", [
    ("user,item,clicks\nu1,a,1\nu2,b,2\n", ValueError, r"bad\.csv: expected columns for user, item and rating; "
                                                        r"could not find \['rating'\]"),
    ("u1,a,4\nu2,b,five\n", DatasetCorruptedError, r"bad\.csv, line 2: expected a number for rating\. "
                                                   r"Received: 'five'"),
])
def test_a_bad_file_is_named_with_what_was_expected(tmp_path, text, error, message):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(error, match=message):
        run_recipe("movielens-mf", {"data": str(tmp_path / "bad.csv")}, run_dir=tmp_path / "run")
