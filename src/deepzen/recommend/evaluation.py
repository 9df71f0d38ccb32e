"""How recommenders are scored: rating error over folds and top-N ranking with leave-one-out.

Rating prediction (the protocol of scikit-surprise's benchmark table): fit on each of
MovieLens 100K's ``u1.base`` ... ``u5.base``, predict the matching ``.test`` ratings (the five
test sets partition the 100,000 ratings), and report RMSE and MAE as the mean and the
(population, ``np.std``) standard deviation over the five folds.

Top-N ranking (He et al., 2017): each user's latest rating is held out
(:func:`deepzen.data.ratings.leave_one_out`), the model is fitted on the rest, and the held-out
item is ranked among itself and 100 items the user never rated (drawn uniformly, distinct, once
per seed). HR@10 is the share of users whose held-out item ranks in the top 10; NDCG@10 adds
``1 / log2(rank + 2)`` for those (rank 0 = first). Ties count against the held-out item: its rank
is the number of sampled items scored at least as high.

On your own ratings file (:func:`deepzen.data.ratings.load_ratings_table`, split with
:func:`~deepzen.data.ratings.holdout_split`) the same measures score the hold-out part:
:func:`rating_metrics` on every test rating, and :func:`holdout_ranking` ranking one test item per
user (picked at random) among items that user never rated. The ``user_ids`` / ``item_ids``
arguments take that file's id arrays, for a model fitted with them (``fit(train, user_ids=...,
item_ids=...)``).
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from deepzen.data.ratings import Ratings, leave_one_out, load_movielens_100k
from deepzen.recommend.base import Recommender

CV_FOLDS = ("u1", "u2", "u3", "u4", "u5")


def _as_ids(rows: np.ndarray, ids) -> np.ndarray:
    """``rows`` (indices into a table's id array ``ids``) as the ids themselves; unchanged when ``ids`` is None."""
    return rows if ids is None else np.asarray(ids)[rows]


def rating_metrics(model: Recommender, test: Ratings, *, user_ids=None, item_ids=None) -> dict[str, float]:
    """RMSE and MAE of ``model.predict`` on the ``test`` ratings.

    ``user_ids`` / ``item_ids``: the id of each value of ``test.user`` / ``test.item``, as given to
    ``model.fit`` (``load_ratings_table``'s id arrays); default: the values are the ids.
    """
    error = model.predict(_as_ids(test.user, user_ids), _as_ids(test.item, item_ids)).astype(np.float64) - test.rating
    return {"rmse": float(np.sqrt(np.mean(error ** 2))), "mae": float(np.mean(np.abs(error)))}


def movielens_folds(data=None, folds: Sequence[str] = CV_FOLDS) -> list[tuple[str, Ratings, Ratings]]:
    """``(name, train, test)`` for MovieLens 100K's predefined folds (default u1..u5)."""
    return [(fold, *load_movielens_100k(data, fold)[:2]) for fold in folds]


def cross_validate(make_model: Callable[[], Recommender], splits: Iterable[tuple[str, Ratings, Ratings]]) -> dict:
    """Fits a fresh model on each split's train part and scores the test part.

    Args:
        make_model: returns a new, unfitted recommender.
        splits: ``(name, train, test)`` triples, e.g. :func:`movielens_folds`.

    Returns:
        ``rmse_mean``, ``rmse_std``, ``mae_mean``, ``mae_std``, ``seconds`` (fit + predict, summed
        over folds) and ``folds``: ``{name: {"rmse", "mae", "seconds"}}``.
    """
    folds = {}
    for name, train, test in splits:
        start = time.perf_counter()
        model = make_model().fit(train)
        metrics = rating_metrics(model, test)  # predict ends with a host copy: the timing is complete
        folds[name] = {**metrics, "seconds": time.perf_counter() - start}
    summary = {}
    for metric in ("rmse", "mae"):
        values = [fold[metric] for fold in folds.values()]
        summary[f"{metric}_mean"], summary[f"{metric}_std"] = float(np.mean(values)), float(np.std(values))
    return {**summary, "seconds": sum(fold["seconds"] for fold in folds.values()), "folds": folds}


def sample_negatives(ratings: Ratings, users: np.ndarray, n: int = 100, seed: int = 0) -> np.ndarray:
    """``n`` distinct items per user, drawn uniformly among the items of ``ratings`` that the user
    never rated in ``ratings``.

    Args:
        ratings: all ratings (train and test), defining the item catalogue and who rated what.
        users: ``(U,)`` user ids.

    Returns:
        ``(U, n)`` item ids.
    """
    item_ids, item_rows = np.unique(ratings.item, return_inverse=True)
    user_ids, user_rows = np.unique(ratings.user, return_inverse=True)
    rated = np.zeros((len(user_ids), len(item_ids)), dtype=bool)
    rated[user_rows, item_rows] = True
    rows = np.searchsorted(user_ids, users)
    if np.any(user_ids[rows.clip(max=len(user_ids) - 1)] != users):
        raise ValueError("sample_negatives: every user must have ratings in `ratings`")
    keys = np.random.default_rng(seed).random((len(users), len(item_ids)))  # (U, n_items) random order
    keys[rated[rows]] = np.inf
    chosen = np.argsort(keys, axis=1)[:, :n]  # the n first unrated items in a random order
    if np.any(np.take_along_axis(keys, chosen, 1) == np.inf):
        raise ValueError(f"sample_negatives: a user has fewer than n={n} unrated items")
    return item_ids[chosen]


def hit_ratio_and_ndcg(ranks: torch.Tensor, k: int = 10) -> tuple[float, float]:
    """HR@k and NDCG@k of 0-based ranks of the held-out items (one per user)."""
    hit = ranks < k
    gain = torch.where(hit, 1.0 / torch.log2(ranks.float() + 2), 0.0)
    return float(hit.float().mean()), float(gain.mean())


def ranking_metrics(model: Recommender, test: Ratings, negatives: np.ndarray, k: int = 10, *, user_ids=None,
                    item_ids=None) -> dict[str, float]:
    """HR@k and NDCG@k of each test item ranked among the user's ``negatives`` by ``model.score``.

    Args:
        test: one held-out rating per user.
        negatives: ``(U, n)`` item ids sampled for the test users (:func:`sample_negatives`).
        user_ids, item_ids: as in :func:`rating_metrics` (they translate ``negatives`` too).
    """
    candidates = np.concatenate([test.item[:, None], negatives], axis=1)  # (U, 1 + n): held-out item first
    scores = model.score(_as_ids(test.user, user_ids)[:, None], _as_ids(candidates, item_ids))  # (U, 1 + n)
    ranks = (scores[:, 1:] >= scores[:, :1]).sum(1)  # (U,) ties count against the held-out item
    hit_ratio, ndcg = hit_ratio_and_ndcg(ranks, k)
    return {f"hr@{k}": hit_ratio, f"ndcg@{k}": ndcg}


def full_ranking_metrics(model: Recommender, test: Ratings, k: int = 10, *, chunk_elements: int = 1 << 22,
                         user_ids=None, item_ids=None) -> dict[str, float]:
    """HR@k and NDCG@k of each test item ranked against the whole catalogue, in bounded memory.

    Each test rating's item is ranked among every item the model knows that the user did not rate
    in training (``model.seen_items``); ties count against it, as in :func:`ranking_metrics`. Users
    are scored a chunk at a time, ``(users of the chunk, n_items)`` with at most ``chunk_elements``
    scores, and the rank is a count of the items scored at least as high, so no ``users x items``
    matrix is ever held and nothing is sorted: a 60,000-item catalogue takes 16 MB of scores.

    Args:
        model: a fitted recommender.
        test: the held-out ratings (typically one per user); users unknown to the model are scored
            with its fallbacks and rank against every item.
        k: the cut-off.
        chunk_elements: the most scores held at once.
        user_ids, item_ids: as in :func:`rating_metrics`.

    Returns:
        ``hr@k``, ``ndcg@k`` and ``users`` (the number of test ratings ranked).
    """
    users, held_out = _as_ids(test.user, user_ids), _as_ids(test.item, item_ids)
    catalogue = model.item_ids
    chunk = max(1, chunk_elements // len(catalogue))
    ranks = []
    for start in range(0, len(users), chunk):
        chunk_users, chunk_items = users[start:start + chunk], held_out[start:start + chunk]
        scores = model.score(chunk_users[:, None], catalogue[None, :])  # (U, n_items)
        target = model.score(chunk_users, chunk_items)  # (U,)
        rows = model.user_rows(chunk_users).cpu().numpy()
        known = np.flatnonzero(rows >= 0)
        lengths = model._seen_start[rows[known] + 1] - model._seen_start[rows[known]]
        seen_row = np.repeat(known, lengths)  # (S,) the chunk's row of each seen item
        seen_item = np.concatenate([model._seen_items[model._seen_start[r]:model._seen_start[r + 1]]
                                    for r in rows[known]] or [np.zeros(0, np.int64)])
        scores[torch.as_tensor(seen_row), torch.as_tensor(seen_item)] = float("-inf")
        own = model.item_rows(chunk_items)  # the held-out item is not its own competitor
        scores[torch.arange(len(own))[own >= 0], own[own >= 0]] = float("-inf")
        ranks.append((scores >= target[:, None]).sum(1))  # (U,)
    hit_ratio, ndcg = hit_ratio_and_ndcg(torch.cat(ranks), k)
    return {f"hr@{k}": hit_ratio, f"ndcg@{k}": ndcg, "users": len(users)}


def leave_one_out_ranking(make_model: Callable[[], Recommender], ratings: Ratings, n_negatives: int = 100,
                          k: int = 10, seed: int = 0) -> dict[str, float]:
    """The whole top-N protocol of the module docstring on ``ratings`` (with timestamps)."""
    train, test = leave_one_out(ratings)
    negatives = sample_negatives(ratings, test.user, n_negatives, seed)
    start = time.perf_counter()
    model = make_model().fit(train)
    metrics = ranking_metrics(model, test, negatives, k)
    return {**metrics, "seconds": time.perf_counter() - start, "users": len(test)}


def holdout_ranking(model: Recommender, ratings: Ratings, test: Ratings, n_negatives: int = 100, k: int = 10,
                    seed: int = 0, *, user_ids=None, item_ids=None) -> dict[str, float]:
    """HR@k and NDCG@k on a hold-out split, for a ``model`` fitted on the rest of ``ratings``.

    Each user with test ratings has one of them (picked at random) ranked among ``n_negatives``
    items the user rated nowhere in ``ratings`` -- fewer when some such user has fewer unrated
    items (a small catalogue); users who rated every item are left out.

    Args:
        ratings: all ratings (train and test).
        test: the held-out part of ``ratings``.
        user_ids, item_ids: as in :func:`rating_metrics`.

    Returns:
        ``hr@k``, ``ndcg@k``, ``negatives`` (the number each item was ranked against) and ``users`` (ranked).
    """
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(test))
    one_per_user = np.sort(shuffled[np.unique(test.user[shuffled], return_index=True)[1]])
    test = test.take(one_per_user)
    pairs = np.unique(np.stack([ratings.user, ratings.item], axis=1), axis=0)  # distinct (user, item) rated
    users, rated = np.unique(pairs[:, 0], return_counts=True)
    unrated = len(np.unique(ratings.item)) - rated[np.searchsorted(users, test.user)]  # (U,)
    if not np.any(unrated > 0):
        raise ValueError("holdout_ranking: every test user rated every item, so no item is left to rank against")
    test, unrated = test.take(unrated > 0), unrated[unrated > 0]
    n = int(min(n_negatives, unrated.min()))
    negatives = sample_negatives(ratings, test.user, n, seed)
    metrics = ranking_metrics(model, test, negatives, k, user_ids=user_ids, item_ids=item_ids)
    return {**metrics, "negatives": n, "users": len(test)}
