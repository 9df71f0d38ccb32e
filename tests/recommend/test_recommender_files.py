"""Recommender files: ``save`` / ``load`` round trips predict, rank and compare items exactly as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deepzen.data.ratings import Ratings
from deepzen.recommend import (KNN, KNNBaseline, KNNBasic, MatrixFactorization, NeuralCF, Recommender)
from deepzen.training.serialization import ModelFileError
from tests.recommend.data.make_dense_format_files import MODELS as DENSE_FORMAT_MODELS
from tests.recommend.data.make_dense_format_files import table as dense_format_table

MODELS = {
    "user-knn-mean": lambda: KNN(5, "msd", user_based=True, centering="mean", device="cpu"),
    "item-knn-pearson-baseline": lambda: KNN(5, "pearson_baseline", user_based=False, centering="baseline",
                                             device="cpu"),
    "knn-basic": lambda: KNNBasic(4, "cosine", device="cpu"),
    "item-knn-baseline": lambda: KNNBaseline(3, "pearson", user_based=False, min_k=2, device="cpu"),
    "mf": lambda: MatrixFactorization(factors=3, epochs=3, batch_size=16, seed=2, device="cpu"),
    "neumf": lambda: NeuralCF("neumf", factors=4, layers=(8, 4), epochs=1, batch_size=64, device="cpu"),
}


def random_ratings(seed: int = 0, users: int = 30, items: int = 25) -> Ratings:
    """About 40% of a users x items table rated 1..5 (users 101.., items 7.., so ids are not rows)."""
    rng = np.random.default_rng(seed)
    rated = rng.random((users, items)) < 0.4
    rated[:, 0] = True  # every user has a rating
    user, item = np.nonzero(rated)
    return Ratings(user + 101, item + 7, rng.integers(1, 6, len(user)).astype(np.float32))


@pytest.fixture(scope="module")
def ratings():
    return random_ratings()


@pytest.mark.parametrize("name", list(MODELS))
def test_a_loaded_recommender_predicts_ranks_and_compares_as_the_saved_one(name, ratings, tmp_path):
    model = MODELS[name]().fit(ratings)
    model.save(tmp_path / "model.dz")
    loaded = Recommender.load(tmp_path / "model.dz", device="cpu")
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.user_ids, model.user_ids)
    np.testing.assert_array_equal(loaded.item_ids, model.item_ids)
    users, items = np.meshgrid(np.arange(99, 133), np.arange(5, 34), indexing="ij")  # unknown ids around the edges
    np.testing.assert_array_equal(loaded.predict(users.ravel(), items.ravel()), model.predict(users.ravel(),
                                                                                                items.ravel()))
    for user in (101, 117, 130):
        assert loaded.recommend(user, 6) == model.recommend(user, 6)
        assert loaded.recommend(user, 6, exclude_seen=False) == model.recommend(user, 6, exclude_seen=False)
        np.testing.assert_array_equal(loaded.seen_items(user), model.seen_items(user))
    assert loaded.similar_items(9, 5) == model.similar_items(9, 5)


def test_string_ids_survive_the_round_trip(tmp_path):
    ratings = random_ratings(1, users=12, items=10)
    names = np.array([f"user-{i:02d}" for i in range(101, 113)])
    titles = np.array([f"film {chr(ord('A') + i)}" for i in range(17)])  # item ids 7..16 index this table
    model = MatrixFactorization(factors=2, epochs=2, device="cpu").fit(ratings, user_ids=np.concatenate(
        [np.full(101, ""), names]), item_ids=titles)
    model.save(tmp_path / "mf.dz")
    loaded = MatrixFactorization.load(tmp_path / "mf.dz")
    assert loaded.user_ids.dtype.kind == "U" and loaded.user_ids.tolist() == names.tolist()
    assert loaded.recommend("user-105", 3) == model.recommend("user-105", 3)
    with pytest.raises(ValueError, match=r"unknown user 'user-99'; expected one of the 12 user ids seen by "
                                         r"fit\(\), from 'user-101' to 'user-112' \(e.g. 'user-101', 'user-102'"):
        loaded.recommend("user-99")


def test_loading_refuses_other_files_and_other_classes(ratings, tmp_path):
    from deepzen.layers import Dense
    from deepzen.models import Sequential

    KNN(3, device="cpu").fit(ratings).save(tmp_path / "knn.dz")
    with pytest.raises(ModelFileError, match="holds a KNN, not a MatrixFactorization"):
        MatrixFactorization.load(tmp_path / "knn.dz")
    network = Sequential([Dense(2, input_dim=3)])
    network.build()
    network.save(tmp_path / "network.dz")
    with pytest.raises(ModelFileError, match="holds no recommender"):
        Recommender.load(tmp_path / "network.dz")
    with pytest.raises(RuntimeError, match="not fitted"):
        KNN(3).save(tmp_path / "unfitted.dz")


@pytest.mark.parametrize("edit", [{"config": {"k": "five", "explode": 1}}, {"item_ids": {"dtype": "nonsense"}},
                                  {"rating_range": 3}, {"recommender": ["KNN"]}])
def test_a_broken_recommender_config_is_a_model_file_error(ratings, tmp_path, edit):
    from deepzen.training.serialization import read_tensors, write_tensors

    MODELS["user-knn-mean"]().fit(ratings).save(tmp_path / "model.dz")
    tensors, metadata = read_tensors(tmp_path / "model.dz")
    write_tensors(tmp_path / "model.dz", tensors, {**metadata, **edit})
    with pytest.raises(ModelFileError, match="model.dz"):
        Recommender.load(tmp_path / "model.dz")


DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", list(DENSE_FORMAT_MODELS))
def test_files_of_the_earlier_dense_format_load_and_predict_as_a_fresh_fit(name):
    """Files written by the KNN that stored the dense (n, n) similarity (see data/make_dense_format_files.py)
    are converted on load: same predictions, rankings and similarities as the same model fitted now."""
    from deepzen.training.serialization import read_tensors

    loaded = Recommender.load(DATA / name, device="cpu")
    fresh = DENSE_FORMAT_MODELS[name]().fit(dense_format_table())
    assert loaded.get_config() == fresh.get_config()
    users, items = np.meshgrid(np.arange(100, 111), np.arange(6, 19), indexing="ij")  # unknown ids around the edges
    np.testing.assert_allclose(loaded.predict(users.ravel(), items.ravel()), fresh.predict(users.ravel(), items.ravel()),
                               rtol=1e-6)
    for user in (101, 105):
        assert loaded.recommend(user, 4) == fresh.recommend(user, 4)
    rows = len(loaded.x_mean)
    stored = read_tensors(DATA / name)[0]["model.sim"]  # the file's own dense similarity
    recomputed = loaded.similarity_block(torch.arange(rows), torch.arange(rows))
    np.testing.assert_allclose(recomputed.numpy(), stored.numpy(), rtol=1e-6, atol=1e-7)


def test_a_knn_file_in_an_unknown_format_names_the_file_the_tensors_and_the_fix(ratings, tmp_path):
    from deepzen.training.serialization import read_tensors, write_tensors

    KNN(3, device="cpu").fit(ratings).save(tmp_path / "model.dz")
    tensors, metadata = read_tensors(tmp_path / "model.dz")
    del tensors["model.row_values"]
    write_tensors(tmp_path / "model.dz", tensors, metadata)
    with pytest.raises(ModelFileError, match=r"model\.dz: KNN file in an unknown format: it holds the tensors "
                                             r"\[.*'row_start'.*\].*missing: \['row_values'\]\. Fit the model on its "
                                             r"ratings again and save it"):
        Recommender.load(tmp_path / "model.dz")
