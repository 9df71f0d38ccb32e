"""Writes the kNN files of the earlier dense format (``knn_dense_format_*.dz``) that
``tests/recommend/test_recommender_files.py`` loads.

They were written by deepzen at commit c2aeccb, the last one whose KNN stored the dense ``(n, n)``
similarity (``sim``) and the dense ratings (``_values``, ``_mask``):

    git archive c2aeccb src | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/src python tests/recommend/data/make_dense_format_files.py tests/recommend/data
"""

import sys

import numpy as np

from deepzen.data.ratings import Ratings
from deepzen.recommend.knn import KNN


def table() -> Ratings:
    """About half of a 9 users x 11 items table rated 1..5 (the test rebuilds it to fit the same models)."""
    rng = np.random.default_rng(0)
    rated = rng.random((9, 11)) < 0.5
    rated[:, 0] = True
    user, item = np.nonzero(rated)
    return Ratings(user + 101, item + 7, rng.integers(1, 6, len(user)).astype(np.float32))


MODELS = {  # file name -> the model, as built then and now
    "knn_dense_format_user_msd.dz": lambda: KNN(3, "msd", user_based=True, centering="mean", device="cpu"),
    "knn_dense_format_item_pearson_baseline.dz": lambda: KNN(3, "pearson_baseline", user_based=False,
                                                             centering="baseline", device="cpu"),
}

if __name__ == "__main__":
    for name, make in MODELS.items():
        make().fit(table()).save(f"{sys.argv[1]}/{name}")
