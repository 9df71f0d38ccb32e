"""Recommenders: user-based and item-based CF, matrix factorization and neural CF, one API.

Every recommender has ``fit(ratings)``, ``predict(users, items)``, ``recommend(user, n)`` (the
user's rated items excluded) and ``similar_items(item, n)``, speaking the ids of the ratings it was
fitted on (see :mod:`deepzen.recommend.base`).

Only neural CF trains with ``Model.fit``; the others keep their own ``fit`` because they take no
gradient steps through autograd: kNN stores the ratings (no training), the baseline solves for its
biases (ALS) or follows Surprise's per-rating SGD, and matrix factorization runs Surprise's
vectorised SGD update, which beat minibatch Adam under ``fit`` (see each module).

Example:
    >>> from deepzen.data.ratings import Ratings
    >>> from deepzen.recommend import KNNWithMeans
    >>> table = Ratings(user=[1, 1, 2, 2, 3], item=[7, 8, 7, 8, 7], rating=[5, 1, 4, 2, 5])
    >>> model = KNNWithMeans(k=2).fit(table)
    >>> [item for item, score in model.recommend(3)]  # user 3 has not rated item 8
    [8]
"""

from deepzen.recommend.base import Recommender
from deepzen.recommend.baseline import BaselineOnly
from deepzen.recommend.evaluation import (cross_validate, full_ranking_metrics, leave_one_out_ranking, movielens_folds,
                                          rating_metrics)
from deepzen.recommend.factorization import BiasedMF, MatrixFactorization
from deepzen.recommend.knn import KNN, SIMILARITIES, KNNBaseline, KNNBasic, KNNWithMeans, similarity_matrix
from deepzen.recommend.neural import NeuMF, NeuralCF

__all__ = ["Recommender", "BaselineOnly", "KNN", "KNNBasic", "KNNWithMeans", "KNNBaseline", "SIMILARITIES",
           "similarity_matrix", "BiasedMF", "MatrixFactorization", "NeuMF", "NeuralCF", "cross_validate",
           "movielens_folds", "rating_metrics", "leave_one_out_ranking", "full_ranking_metrics"]
