"""Recommender recipes: kNN CF, matrix factorization and neural CF on MovieLens 100K or your ratings file.

``movielens-knn`` and ``movielens-mf`` report RMSE/MAE over the u1..u5 folds (mean and std) and,
with ``ranking=True``, HR@10 / NDCG@10 under leave-one-out; ``movielens-ncf`` reports HR@10 /
NDCG@10 (see :mod:`deepzen.recommend.evaluation` for both protocols). Each writes
``results.json`` (config, metrics, per-fold numbers) in its run directory, and ``recommender.dz``:
the model of the recipe's last fit -- the leave-one-out ranking model (fitted on all ratings but each
user's latest) when ranking is scored, else the last cross-validation fold's. That file answers
``deepzen predict``, which lists the best unrated movies for user ids (:func:`predict_recommendations`)::

    deepzen train movielens-mf --set epochs=30 --run-dir runs/mf
    deepzen predict runs/mf 196 --top 5

Your own data: ``data`` may instead be a (user, item, rating[, timestamp]) file -- CSV, TSV, ...,
with or without a header, ids of any kind (see :func:`deepzen.data.ratings.load_ratings_table`).
The model is fitted once, on a hold-out split of it (``holdout="random"``, or ``"per_user"``: that
share of each user's ratings, every user keeping one in training; ``test_fraction`` of 0.2 and
``seed`` by default), or on the whole file with ``test_data`` as the test ratings. The metrics
are RMSE/MAE on the test ratings and HR@10/NDCG@10 with one test item per user
(:func:`deepzen.recommend.evaluation.holdout_ranking`); the saved model and ``deepzen predict``
speak the file's own ids::

    deepzen train movielens-mf --set data=my_ratings.csv --set holdout=per_user --run-dir runs/mine
    deepzen predict runs/mine alice --top 5
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from deepzen.recipes import cached_load, register_recipe, run_file, write_text
from deepzen.recommend.base import Recommender
from deepzen.recommend.evaluation import (CV_FOLDS, cross_validate, holdout_ranking, leave_one_out_ranking,
                                          movielens_folds, rating_metrics)

HOLDOUTS = ("random", "per_user")
RATINGS_FILE_SUFFIXES = (".csv", ".tsv", ".txt", ".dat")  # only for the message when such a `data` is missing


@dataclass
class RatingsData:
    """Where a recommender recipe's ratings come from (the settings all three recipes share)."""

    data: str | None = None  # the ml-100k folder (default $DEEPZEN_DATA/ml-100k), or your ratings file (CSV/TSV)
    test_data: str | None = None  # with a ratings file: the test ratings (default: a hold-out split of data)
    holdout: str = "random"  # with a ratings file and no test_data: "random" or "per_user" (each user's share)
    test_fraction: float = 0.2  # the hold-out share of the ratings


@dataclass
class KNNConfig(RatingsData):
    k: int = 40  # neighbours per prediction
    similarity: str = "pearson_baseline"  # "cosine", "msd", "pearson" or "pearson_baseline"
    user_based: bool = False  # neighbours are users (false: items)
    centering: str = "baseline"  # "none", "mean" or "baseline" (KNNBasic, KNNWithMeans, KNNBaseline)
    min_support: int = 1  # common ratings a neighbour needs
    folds: tuple = CV_FOLDS  # MovieLens only
    ranking: bool = True  # also measure HR@10 and NDCG@10 (leave-one-out)
    seed: int = 0  # the hold-out split's and the ranking's negatives'


@dataclass
class MFConfig(RatingsData):
    factors: int = 32  # size of the user and item vectors
    epochs: int = 6
    learning_rate: float = 0.09
    lr_decay: float = 0.65  # the learning rate's factor per epoch
    regularization: float = 0.08  # L2 penalty on the vectors and biases
    batch_size: int = 0  # 0: MatrixFactorization's default (from the busiest user or item)
    seed: int = 0
    folds: tuple = CV_FOLDS  # MovieLens only
    ranking: bool = True  # also measure HR@10 and NDCG@10 (leave-one-out)


@dataclass
class NCFConfig(RatingsData):
    model: str = "neumf"
    factors: int = 8  # size of the user and item vectors
    layers: tuple = (64, 32, 16, 8)  # MLP tower sizes
    negatives: int = 4  # unrated items sampled per rating in training
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    seed: int = 0
    verbose: int = 1


RECOMMENDER_FILE = "recommender.dz"
PREDICT_TOP = 10  # recommendations per user when `deepzen predict` is not given --top


def _evaluate(name: str, config, make_model: Callable[[], Recommender], run_dir: Path, *, rating: bool,
              ranking: bool) -> dict:
    """Runs the chosen protocols, writes ``results.json`` and the last fitted model, returns the flat metrics."""
    if _reads_a_file(name, config):
        model, metrics, details = _evaluate_on_file(config, make_model, rating=rating, ranking=ranking)
    else:
        model, metrics, details = _evaluate_on_movielens(config, make_model, rating=rating, ranking=ranking)
    report = {"recipe": name, "config": asdict(config), "metrics": metrics, **details}
    write_text(run_dir / "results.json", json.dumps(report, indent=2))
    model.save(run_dir / RECOMMENDER_FILE)
    return metrics


def _reads_a_file(name: str, config: RatingsData) -> bool:
    """Whether ``config.data`` is a ratings file (else the ml-100k folder), after checking the data settings."""
    if config.holdout not in HOLDOUTS:
        raise ValueError(f"{name}: expected holdout to be one of {', '.join(map(repr, HOLDOUTS))}. "
                         f"Received: holdout={config.holdout!r}")
    data = Path(config.data) if config.data else None
    if data is not None and not data.exists() and data.suffix.lower() in RATINGS_FILE_SUFFIXES:
        raise FileNotFoundError(f"{name}: no ratings file at {data} (the data setting): expected a "
                                "(user, item, rating[, timestamp]) CSV/TSV file or the ml-100k folder")
    is_file = data is not None and data.is_file()
    if config.test_data and not is_file:
        raise ValueError(f"{name}: test_data is read with a ratings file as data, not with the MovieLens folder "
                         f"(which has its folds). Received: data={config.data!r}, test_data={config.test_data!r}")
    return is_file


def _evaluate_on_movielens(config, make_model: Callable[[], Recommender], *, rating: bool, ranking: bool):
    """Cross-validation over ml-100k's folds and leave-one-out ranking; the model of the last fit."""
    from deepzen.data.ratings import load_movielens_100k

    made: list[Recommender] = []

    def make_and_keep() -> Recommender:
        made[:] = [make_model()]  # only the latest model is kept (and saved)
        return made[0]

    metrics, details = {}, {}
    if rating:
        result = cross_validate(make_and_keep, movielens_folds(config.data, config.folds))
        details["folds"] = result.pop("folds")
        metrics.update(result)
    if ranking:
        everything, _, _ = load_movielens_100k(config.data, fold=None)
        result = leave_one_out_ranking(make_and_keep, everything)
        metrics.update({"ranking_seconds" if key == "seconds" else key: value for key, value in result.items()})
    return made[0], metrics, details


def _evaluate_on_file(config, make_model: Callable[[], Recommender], *, rating: bool, ranking: bool):
    """One fit on the train part of the ratings file(s), scored on the test part; the model speaks the file's ids."""
    everything, train, test, user_ids, item_ids = _file_split(config)
    ids = {"user_ids": user_ids, "item_ids": item_ids}
    start = time.perf_counter()
    model = make_model().fit(train, **ids)
    metrics = {"train_ratings": len(train), "test_ratings": len(test)}
    if rating:
        metrics.update(rating_metrics(model, test, **ids))
    if ranking:
        metrics.update(holdout_ranking(model, everything, test, seed=config.seed, **ids))
    metrics["seconds"] = time.perf_counter() - start  # the metrics end with host copies: the timing is complete
    return model, metrics, {}


def _file_split(config: RatingsData):
    """``(everything, train, test, user_ids, item_ids)``: ``data`` and its hold-out split, or ``data`` as train
    and ``test_data`` as test, with the ids of both files in one id space (rows index ``user_ids`` / ``item_ids``)."""
    from deepzen.data.ratings import Ratings, holdout_split, load_ratings_table

    table, user_ids, item_ids = load_ratings_table(config.data)
    if not config.test_data:
        train, test = holdout_split(table, config.test_fraction, per_user=config.holdout == "per_user",
                                    seed=config.seed)
        if len(test) == 0:
            raise ValueError(f"{config.data}: the {config.holdout} hold-out of test_fraction={config.test_fraction} "
                             f"leaves no test ratings among its {len(table)}; expected a larger test_fraction")
        return table, train, test, user_ids, item_ids
    other, other_user_ids, other_item_ids = load_ratings_table(config.test_data)
    user, user_ids = _shared_ids(user_ids[table.user], other_user_ids[other.user])
    item, item_ids = _shared_ids(item_ids[table.item], other_item_ids[other.item])
    timestamp = None if table.timestamp is None or other.timestamp is None else \
        np.concatenate([table.timestamp, other.timestamp])
    everything = Ratings(user, item, np.concatenate([table.rating, other.rating]), timestamp)
    is_test = np.arange(len(everything)) >= len(table)
    return everything, everything.take(~is_test), everything.take(is_test), user_ids, item_ids


def _shared_ids(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ids of two files' rows as (row index per id, sorted distinct ids); integer ids in one file and text in
    the other are all compared as text."""
    if first.dtype.kind != second.dtype.kind:
        first, second = first.astype(str), second.astype(str)
    ids, rows = np.unique(np.concatenate([first, second]), return_inverse=True)
    return rows.reshape(-1), ids


def predict_recommendations(run_dir: Path, users: list[str], top: int | None = None) -> list[dict]:
    """The ``top`` (default 10) best-scored items each user has not rated, by the run's saved recommender.

    Users are given as their ids (text, converted to the ids' type: MovieLens' numbers, or a ratings
    file's own ids); an id the model was not fitted on raises a ValueError naming it and the known
    ids. Items carry their MovieLens titles when ``u.item`` is found in the run's ``data`` folder
    (default ``$DEEPZEN_DATA/ml-100k``); items of a ratings file have the title None.

    Returns:
        ``[{"input": user, "recommendations": [{"item": id, "title": str or None, "score": float}, ...]}]``,
        best first; scores are predicted ratings (NeuralCF: logits of an interaction).
    """
    from deepzen.recipes import run_config

    model = cached_load(Recommender.load, run_file(run_dir, RECOMMENDER_FILE, "the fitted recommender"))
    titles = _movie_titles(run_config(run_dir)[1].data)
    results = []
    for text in users:
        user = _parse_id(text, model.user_ids, "user")
        ranked = model.recommend(user, top or PREDICT_TOP)
        results.append({"input": text, "recommendations": [{"item": item, "title": titles.get(item), "score": score}
                                                           for item, score in ranked]})
    return results


def _parse_id(text: str, known, what: str):
    """``text`` as a value of the ids' type (the model then checks that it knows it)."""
    if known.dtype.kind == "U":
        return text.strip()  # not astype(known.dtype): that would cut a longer id to the longest known one's length
    try:
        return np.asarray(text.strip()).astype(known.dtype).item()
    except ValueError:
        raise ValueError(f"{text!r} is not a {what} id: expected one like {known[0].item()!r} "
                         f"({len(known)} {what} ids, from {known[0].item()!r} to {known[-1].item()!r})") from None


def _movie_titles(data: str | None) -> dict:
    """``{movie id: title}`` from ml-100k's ``u.item``, or ``{}`` when the dataset is not there (or ``data`` is
    a ratings file)."""
    from deepzen.data.paths import DatasetNotFoundError
    from deepzen.data.ratings import load_movielens_100k

    if data and Path(data).is_file():
        return {}
    try:
        return load_movielens_100k(data, fold=None)[2]
    except DatasetNotFoundError:
        return {}


@register_recipe("movielens-knn", KNNConfig,
                 "k-nearest-neighbour CF on MovieLens 100K (RMSE/MAE over u1..u5, HR@10/NDCG@10 leave-one-out) "
                 "or a ratings file (hold-out)",
                 predict_recommendations,
                 dataset="MovieLens 100K (u1..u5 folds)",
                 target="RMSE at or below scikit-surprise's on the same folds")
def movielens_knn(config: KNNConfig, run_dir: Path) -> dict:
    from deepzen.recommend.knn import KNN

    def make_model():
        return KNN(config.k, config.similarity, user_based=config.user_based, centering=config.centering,
                   min_support=config.min_support)

    return _evaluate("movielens-knn", config, make_model, run_dir, rating=True, ranking=config.ranking)


@register_recipe("movielens-mf", MFConfig,
                 "Biased matrix factorization (SVD-style) on MovieLens 100K (RMSE/MAE over u1..u5, HR@10/NDCG@10) "
                 "or a ratings file (hold-out)",
                 predict_recommendations,
                 dataset="MovieLens 100K (u1..u5 folds)",
                 target="RMSE at or below scikit-surprise's SVD on the same folds")
def movielens_mf(config: MFConfig, run_dir: Path) -> dict:
    from deepzen.recommend.factorization import MatrixFactorization

    def make_model():
        return MatrixFactorization(config.factors, config.epochs, config.learning_rate, config.lr_decay,
                                   config.regularization, config.batch_size or None, seed=config.seed)

    return _evaluate("movielens-mf", config, make_model, run_dir, rating=True, ranking=config.ranking)


@register_recipe("movielens-ncf", NCFConfig,
                 "Neural CF (NeuMF = GMF + MLP) on MovieLens 100K implicit feedback (HR@10/NDCG@10 leave-one-out) "
                 "or a ratings file (hold-out)",
                 predict_recommendations,
                 dataset="MovieLens 100K implicit feedback (leave-one-out)", target="HR@10 and NDCG@10")
def movielens_ncf(config: NCFConfig, run_dir: Path) -> dict:
    from deepzen.recommend.neural import NeuralCF

    def make_model():
        return NeuralCF(config.model, config.factors, tuple(int(size) for size in config.layers), config.negatives,
                        config.epochs, config.batch_size, config.learning_rate, seed=config.seed,
                        verbose=config.verbose)

    return _evaluate("movielens-ncf", config, make_model, run_dir, rating=False, ranking=True)
