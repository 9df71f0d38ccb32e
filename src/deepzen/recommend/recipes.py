"""MovieLens 100K recipes: kNN CF, matrix factorization and neural CF, registered by name.

``movielens-knn`` and ``movielens-mf`` report RMSE/MAE over the u1..u5 folds (mean and std) and,
with ``ranking=True``, HR@10 / NDCG@10 under leave-one-out; ``movielens-ncf`` reports HR@10 /
NDCG@10 (see :mod:`deepzen.recommend.evaluation` for both protocols). Each writes
``results.json`` (config, metrics, per-fold numbers) in its run directory::

    deepzen train movielens-mf --set epochs=30
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from deepzen.recipes import register_recipe
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
    epochs: int = 8
    learning_rate: float = 0.06
    lr_decay: float = 0.8
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


def _evaluate(name: str, config, make_model: Callable[[], Recommender], run_dir: Path, *, rating: bool,
              ranking: bool) -> dict:
    """Runs the chosen protocols, writes ``results.json`` and returns the flat metrics."""
    from deepzen.data.ratings import load_movielens_100k

    metrics, details = {}, {}
    if rating:
        result = cross_validate(make_model, movielens_folds(config.data, config.folds))
        details["folds"] = result.pop("folds")
        metrics.update(result)
    if ranking:
        everything, _, _ = load_movielens_100k(config.data, fold=None)
        result = leave_one_out_ranking(make_model, everything)
        metrics.update({"ranking_seconds" if key == "seconds" else key: value for key, value in result.items()})
    report = {"recipe": name, "config": asdict(config), "metrics": metrics, **details}
    (run_dir / "results.json").write_text(json.dumps(report, indent=2))
    return metrics


@register_recipe("movielens-knn", KNNConfig,
                 "k-nearest-neighbour CF on MovieLens 100K: RMSE/MAE over u1..u5, HR@10/NDCG@10 leave-one-out")
def movielens_knn(config: KNNConfig, run_dir: Path) -> dict:
    from deepzen.recommend.knn import KNN

    def make_model():
        return KNN(config.k, config.similarity, user_based=config.user_based, centering=config.centering,
                   min_support=config.min_support)

    return _evaluate("movielens-knn", config, make_model, run_dir, rating=True, ranking=config.ranking)


@register_recipe("movielens-mf", MFConfig,
                 "Biased matrix factorization (SVD-style) on MovieLens 100K: RMSE/MAE over u1..u5, HR@10/NDCG@10")
def movielens_mf(config: MFConfig, run_dir: Path) -> dict:
    from deepzen.recommend.factorization import MatrixFactorization

    def make_model():
        return MatrixFactorization(config.factors, config.epochs, config.learning_rate, config.lr_decay,
                                   config.regularization, config.batch_size or None, seed=config.seed)

    return _evaluate("movielens-mf", config, make_model, run_dir, rating=True, ranking=config.ranking)


@register_recipe("movielens-ncf", NCFConfig,
                 "Neural CF (NeuMF = GMF + MLP) on MovieLens 100K implicit feedback: HR@10/NDCG@10 leave-one-out")
def movielens_ncf(config: NCFConfig, run_dir: Path) -> dict:
    from deepzen.recommend.neural import NeuralCF

    def make_model():
        return NeuralCF(config.model, config.factors, tuple(int(size) for size in config.layers), config.negatives,
                        config.epochs, config.batch_size, config.learning_rate, seed=config.seed,
                        verbose=config.verbose)

    return _evaluate("movielens-ncf", config, make_model, run_dir, rating=False, ranking=True)
