"""MovieLens 100K recipes: kNN CF, matrix factorization and neural CF, registered by name.

``movielens-knn`` and ``movielens-mf`` report RMSE/MAE over the u1..u5 folds (mean and std) and,
with ``ranking=True``, HR@10 / NDCG@10 under leave-one-out; ``movielens-ncf`` reports HR@10 /
NDCG@10 (see :mod:`deepzen.recommend.evaluation` for both protocols). Each writes
``results.json`` (config, metrics, per-fold numbers) in its run directory, and ``recommender.dz``:
the model of the recipe's last fit -- the leave-one-out ranking model (fitted on all ratings but each
user's latest) when ranking is scored, else the last cross-validation fold's. That file answers
``deepzen predict``, which lists the best unrated movies for user ids (:func:`predict_recommendations`)::

    deepzen train movielens-mf --set epochs=30 --run-dir runs/mf
    deepzen predict runs/mf 196 --top 5
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from deepzen.recipes import register_recipe, run_file, write_text
from deepzen.recommend.base import Recommender
from deepzen.recommend.evaluation import CV_FOLDS, cross_validate, leave_one_out_ranking, movielens_folds


@dataclass
class KNNConfig:
    k: int = 40
    similarity: str = "pearson_baseline"
    user_based: bool = False
    centering: str = "baseline"
    min_support: int = 1
    folds: tuple = CV_FOLDS
    ranking: bool = True
    data: str | None = None  # the ml-100k folder; default $DEEPZEN_DATA/ml-100k


@dataclass
class MFConfig:
    factors: int = 32
    epochs: int = 6
    learning_rate: float = 0.09
    lr_decay: float = 0.65
    regularization: float = 0.08
    batch_size: int = 0  # 0: MatrixFactorization's default (from the busiest user or item)
    seed: int = 0
    folds: tuple = CV_FOLDS
    ranking: bool = True
    data: str | None = None


@dataclass
class NCFConfig:
    model: str = "neumf"
    factors: int = 8
    layers: tuple = (64, 32, 16, 8)
    negatives: int = 4
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    seed: int = 0
    verbose: int = 1
    data: str | None = None


RECOMMENDER_FILE = "recommender.dz"
PREDICT_TOP = 10  # recommendations per user when `deepzen predict` is not given --top


def _evaluate(name: str, config, make_model: Callable[[], Recommender], run_dir: Path, *, rating: bool,
              ranking: bool) -> dict:
    """Runs the chosen protocols, writes ``results.json`` and the last fitted model, returns the flat metrics."""
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
    report = {"recipe": name, "config": asdict(config), "metrics": metrics, **details}
    write_text(run_dir / "results.json", json.dumps(report, indent=2))
    made[0].save(run_dir / RECOMMENDER_FILE)
    return metrics


def predict_recommendations(run_dir: Path, users: list[str], top: int | None = None) -> list[dict]:
    """The ``top`` (default 10) best-scored items each user has not rated, by the run's saved recommender.

    Users are given as their ids (text, converted to the ids' type); an id the model was not
    fitted on raises a ValueError naming it and the known ids. Items carry their MovieLens titles
    when ``u.item`` is found in the run's ``data`` folder (default ``$DEEPZEN_DATA/ml-100k``).

    Returns:
        ``[{"input": user, "recommendations": [{"item": id, "title": str or None, "score": float}, ...]}]``,
        best first; scores are predicted ratings (NeuralCF: logits of an interaction).
    """
    from deepzen.recipes import run_config

    model = Recommender.load(run_file(run_dir, RECOMMENDER_FILE, "the fitted recommender"))
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
    try:
        return np.asarray(text.strip()).astype(known.dtype).item()
    except ValueError:
        raise ValueError(f"{text!r} is not a {what} id: expected one like {known[0].item()!r} "
                         f"({len(known)} {what} ids, from {known[0].item()!r} to {known[-1].item()!r})") from None


def _movie_titles(data: str | None) -> dict:
    """``{movie id: title}`` from ml-100k's ``u.item``, or ``{}`` when the dataset is not there."""
    from deepzen.data.paths import DatasetNotFoundError
    from deepzen.data.ratings import load_movielens_100k

    try:
        return load_movielens_100k(data, fold=None)[2]
    except DatasetNotFoundError:
        return {}


@register_recipe("movielens-knn", KNNConfig,
                 "k-nearest-neighbour CF on MovieLens 100K: RMSE/MAE over u1..u5, HR@10/NDCG@10 leave-one-out",
                 predict_recommendations)
def movielens_knn(config: KNNConfig, run_dir: Path) -> dict:
    from deepzen.recommend.knn import KNN

    def make_model():
        return KNN(config.k, config.similarity, user_based=config.user_based, centering=config.centering,
                   min_support=config.min_support)

    return _evaluate("movielens-knn", config, make_model, run_dir, rating=True, ranking=config.ranking)


@register_recipe("movielens-mf", MFConfig,
                 "Biased matrix factorization (SVD-style) on MovieLens 100K: RMSE/MAE over u1..u5, HR@10/NDCG@10",
                 predict_recommendations)
def movielens_mf(config: MFConfig, run_dir: Path) -> dict:
    from deepzen.recommend.factorization import MatrixFactorization

    def make_model():
        return MatrixFactorization(config.factors, config.epochs, config.learning_rate, config.lr_decay,
                                   config.regularization, config.batch_size or None, seed=config.seed)

    return _evaluate("movielens-mf", config, make_model, run_dir, rating=True, ranking=config.ranking)


@register_recipe("movielens-ncf", NCFConfig,
                 "Neural CF (NeuMF = GMF + MLP) on MovieLens 100K implicit feedback: HR@10/NDCG@10 leave-one-out",
                 predict_recommendations)
def movielens_ncf(config: NCFConfig, run_dir: Path) -> dict:
    from deepzen.recommend.neural import NeuralCF

    def make_model():
        return NeuralCF(config.model, config.factors, tuple(int(size) for size in config.layers), config.negatives,
                        config.epochs, config.batch_size, config.learning_rate, seed=config.seed,
                        verbose=config.verbose)

    return _evaluate("movielens-ncf", config, make_model, run_dir, rating=False, ranking=True)
