"""Evaluation protocols: RMSE/MAE over folds, negatives sampling, HR@k / NDCG@k by hand."""

import math

import numpy as np
import pytest
import torch

from deepzen.data.ratings import Ratings, leave_one_out
from deepzen.recommend import KNNWithMeans
from deepzen.recommend.base import Recommender
from deepzen.recommend.evaluation import (cross_validate, full_ranking_metrics, hit_ratio_and_ndcg, holdout_ranking,
                                          leave_one_out_ranking, ranking_metrics, rating_metrics, sample_negatives)


class ItemIdScore(Recommender):
    """A stub whose score of (user, item) is the item's id (unknown items: -1), to rank by hand."""

    def __init__(self):
        super().__init__("cpu")

    def _fit(self, user, item, rating):
        pass

    def _estimate(self, user, item):
        return torch.where(item >= 0, torch.as_tensor(self.item_ids, dtype=torch.float32)[item.clamp(min=0)], -1.0)


def test_hit_ratio_and_ndcg_by_hand():
    hit_ratio, ndcg = hit_ratio_and_ndcg(torch.tensor([0, 3, 10, 12]), k=10)
    assert hit_ratio == 0.5
    assert ndcg == pytest.approx((1 / math.log2(2) + 1 / math.log2(5)) / 4)


def test_ranking_metrics_rank_the_held_out_item_and_count_ties_against_it():
    model = ItemIdScore().fit(Ratings([1, 1, 2, 3], [10, 20, 50, 60], [1.0, 1.0, 1.0, 1.0]))
    test = Ratings([1, 2, 3], [20, 60, 99], [5.0, 5.0, 5.0])
    negatives = np.array([[10, 60, 50], [20, 10, 60], [10, 20, 50]])  # scores = ids; 99 is unknown (-1)
    # ranks: user 1: 60 and 50 beat 20 -> 2; user 2: the tie with 60 counts -> 1; user 3: all beat -1 -> 3
    metrics = ranking_metrics(model, test, negatives, k=2)
    assert metrics["hr@2"] == pytest.approx(1 / 3)
    assert metrics["ndcg@2"] == pytest.approx((1 / math.log2(3)) / 3)


def test_rating_metrics_are_rmse_and_mae_of_the_clipped_predictions():
    model = ItemIdScore().fit(Ratings([1, 1], [2, 4], [1.0, 5.0]))  # rating range [1, 5]
    test = Ratings([1, 1, 1], [2, 4, 9], [1.5, 3.0, 2.0])  # predictions 2, 4, clip(-1) = 1
    error = np.array([2 - 1.5, 4 - 3.0, 1 - 2.0])
    metrics = rating_metrics(model, test)
    assert metrics["rmse"] == pytest.approx(np.sqrt(np.mean(error ** 2)))
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(error)))


def test_cross_validate_summarises_the_folds():
    train = Ratings([1, 1], [2, 4], [1.0, 5.0])
    splits = [("a", train, Ratings([1], [2], [1.0])), ("b", train, Ratings([1], [4], [3.0])),
              ("c", train, Ratings([1, 1], [2, 4], [2.0, 5.0]))]
    result = cross_validate(ItemIdScore, splits)
    rmse = [1.0, 1.0, np.sqrt(0.5)]
    mae = [1.0, 1.0, 0.5]
    assert [result["folds"][name]["rmse"] for name in "abc"] == pytest.approx(rmse)
    assert result["rmse_mean"] == pytest.approx(np.mean(rmse)) and result["rmse_std"] == pytest.approx(np.std(rmse))
    assert result["mae_mean"] == pytest.approx(np.mean(mae)) and result["mae_std"] == pytest.approx(np.std(mae))
    assert result["seconds"] == pytest.approx(sum(fold["seconds"] for fold in result["folds"].values()))


def test_sample_negatives_are_distinct_unrated_and_uniform():
    rng = np.random.default_rng(0)
    users, items = np.nonzero(rng.random((5, 30)) < 0.4)
    ratings = Ratings(users + 1, items * 10, np.ones(len(users)))
    negatives = sample_negatives(ratings, np.array([3, 1, 3]), n=8, seed=1)
    assert negatives.shape == (3, 8)
    for user, row in zip([3, 1, 3], negatives):
        assert len(set(row.tolist())) == 8
        assert not set(row.tolist()) & set(ratings.item[ratings.user == user].tolist())
        assert set(row.tolist()) <= set(ratings.item.tolist())
    np.testing.assert_array_equal(negatives, sample_negatives(ratings, np.array([3, 1, 3]), n=8, seed=1))
    counts = np.zeros(30)  # over many seeds every unrated item of user 2 is drawn about equally often
    for seed in range(300):
        np.add.at(counts, sample_negatives(ratings, np.array([2]), n=5, seed=seed)[0] // 10, 1)
    catalogue = np.isin(np.arange(30), ratings.item // 10)
    unrated = counts[catalogue & ~np.isin(np.arange(30), ratings.item[ratings.user == 2] // 10)]
    assert unrated.min() > 0.6 * unrated.mean() and counts[~catalogue].sum() == 0
    with pytest.raises(ValueError, match="fewer than n=100"):
        sample_negatives(ratings, np.array([1]), n=100)


class RawIdScore(Recommender):
    """A stub scoring every (user, item) by the raw item id, known or not."""

    def __init__(self):
        super().__init__("cpu")

    def _fit(self, user, item, rating):
        pass

    def score(self, users, items):
        return torch.as_tensor(np.broadcast_arrays(users, items)[1], dtype=torch.float32)


@pytest.mark.parametrize("k,hit_ratio,ndcg", [(1, 0.5, 0.5), (3, 1.0, (1 + 1 / math.log2(4)) / 2)])
def test_leave_one_out_ranking_end_to_end(k, hit_ratio, ndcg):
    # user 1 holds out item 50 (its latest), ranked above any unrated item (20, 30, 40): rank 0;
    # user 2 holds out item 10, below both sampled unrated items (from 20, 30, 50): rank 2
    # users 3 and 4 rated once (kept in train, not tested) and complete the catalogue
    ratings = Ratings([1, 1, 2, 2, 3, 4], [10, 50, 40, 10, 20, 30], np.ones(6), timestamp=[1, 2, 1, 2, 1, 1])
    result = leave_one_out_ranking(RawIdScore, ratings, n_negatives=2, k=k)
    assert result["users"] == 2
    assert result[f"hr@{k}"] == pytest.approx(hit_ratio) and result[f"ndcg@{k}"] == pytest.approx(ndcg)


class LetterScore(Recommender):
    """A stub scoring (user, item) by the item id's letter; it only takes text ids."""

    def __init__(self):
        super().__init__("cpu")

    def score(self, users, items):
        users, items = np.broadcast_arrays(users, items)
        assert users.dtype.kind == items.dtype.kind == "U"  # the table's rows were turned into its ids
        return torch.as_tensor(np.vectorize(ord)(items), dtype=torch.float32)


@pytest.mark.parametrize("k,hit_ratio,ndcg", [(1, 0.5, 0.5), (3, 1.0, (1 + 1 / math.log2(4)) / 2)])
def test_holdout_ranking_one_item_per_user_against_the_unrated_ones(k, hit_ratio, ndcg):
    user_ids, item_ids = np.array(["ann", "bob", "cy"]), np.array(list("abcde"))
    ratings = Ratings([0, 0, 0, 1, 1, 1, 1, 1, 2, 2], [0, 1, 4, 0, 1, 2, 3, 4, 0, 1], np.ones(10))
    # ann holds out e, above her unrated c and d: rank 0; bob rated everything: left out;
    # cy holds out a and b (one is ranked), below two of his unrated c, d, e: rank 2.
    # ann has 2 unrated items, so each held-out item is ranked against 2 negatives.
    test = Ratings([0, 1, 2, 2], [4, 4, 0, 1], np.ones(4))
    result = holdout_ranking(LetterScore(), ratings, test, k=k, user_ids=user_ids, item_ids=item_ids)
    assert result["users"] == 2 and result["negatives"] == 2
    assert result[f"hr@{k}"] == pytest.approx(hit_ratio) and result[f"ndcg@{k}"] == pytest.approx(ndcg)
    with pytest.raises(ValueError, match="every test user rated every item"):
        holdout_ranking(LetterScore(), ratings, test.take(np.array([1])), user_ids=user_ids, item_ids=item_ids)


def test_full_ranking_in_chunks_matches_the_whole_score_matrix():
    rng = np.random.default_rng(3)
    pairs = np.unique(np.stack([rng.integers(0, 30, 500), rng.integers(0, 80, 500)], 1), axis=0)
    table = Ratings(pairs[:, 0], pairs[:, 1], rng.integers(1, 6, len(pairs)).astype(float),
                    rng.permutation(len(pairs)))
    train, test = leave_one_out(table)
    model = KNNWithMeans(k=5, user_based=False, device="cpu").fit(train)
    # the reference: the whole users x items matrix, one rank per user by a loop
    everything = model.score(test.user[:, None], model.item_ids[None, :]).numpy()
    ranks = []
    for row, (user, item) in enumerate(zip(test.user.tolist(), test.item.tolist())):
        seen = set(train.item[train.user == user].tolist()) | {item}
        target = float(model.score(user, item))
        ranks.append(sum(score >= target for other, score in zip(model.item_ids.tolist(), everything[row])
                         if other not in seen))
    ranks = np.array(ranks)
    expected_hr = float(np.mean(ranks < 10))
    expected_ndcg = float(np.mean(np.where(ranks < 10, 1 / np.log2(ranks + 2), 0)))
    for chunk_elements in (1 << 22, 200, 1):  # one chunk; a few users at a time; one user at a time
        metrics = full_ranking_metrics(model, test, chunk_elements=chunk_elements)
        assert metrics["hr@10"] == pytest.approx(expected_hr) and metrics["ndcg@10"] == pytest.approx(expected_ndcg)
        assert metrics["users"] == len(test)
    assert 0 < expected_hr < 1  # the test ranks something
