"""k-nearest-neighbour collaborative filtering (user-based or item-based), vectorised in torch.

The algorithms of scikit-surprise's ``KNNBasic``, ``KNNWithMeans`` and ``KNNBaseline``, computed
with dense tensors instead of per-pair loops, so they run on a GPU and on larger tables:

- similarities of all pairs of users (or items) come from a few matrix products over the co-rated
  masks (:class:`CoRated`): ``cosine``, ``msd``, ``pearson`` and ``pearson_baseline``;
- a batch of (user, item) pairs is predicted at once: for each pair, the candidates are the users
  who rated the item (item-based: the items the user rated), the ``k`` most similar are taken with
  ``topk``, and the neighbours with a positive similarity vote. Pairs are sorted by their number
  of candidates and cut into chunks padded to the chunk's largest number, so the work follows the
  number of candidates (about 2.5M for a MovieLens 100K test fold), not pairs x all users.

In user-based CF, for a pair (u, i) with neighbours N = the k users most similar to u who rated i
(only those with sim > 0 count)::

    none (KNNBasic):        r(u, i) = sum_v sim(u, v) r(v, i) / sum_v sim(u, v)
    mean (KNNWithMeans):    r(u, i) = mean(u) + sum_v sim(u, v) (r(v, i) - mean(v)) / sum_v sim(u, v)
    baseline (KNNBaseline): r(u, i) = b(u, i) + sum_v sim(u, v) (r(v, i) - b(v, i)) / sum_v sim(u, v)

with b(u, i) = mu + b_u + b_i the ALS baseline of :func:`baseline_biases`. Item-based CF swaps the
roles of users and items. Fallbacks, when fewer than ``min_k`` neighbours have sim > 0: the mean
of u's ratings (item-based: of i's ratings) for ``none`` and ``mean`` -- scikit-surprise's
KNNBasic uses the global mean there --, the baseline for ``baseline``; for a user or item not in
the training data, the global mean (``baseline``: mu plus the known bias).

Ties between equal similarities at the k-th place are broken by ``topk`` (implementation-defined).
"""

from __future__ import annotations

import inspect
from functools import cached_property
from typing import Any

import numpy as np
import torch

from deepzen._registry import Registry
from deepzen.recommend.base import Recommender

SIMILARITIES: Registry = Registry("similarity")
ON_BASELINE_RESIDUALS = {"pearson_baseline"}  # similarities computed on r - b(u, i) instead of r
CENTERINGS = ("none", "mean", "baseline")
CHUNK_ELEMENTS = 1 << 19  # (pairs x candidate neighbours) per prediction chunk: 2 MB in float32


class CoRated:
    """Sums over the columns two rows both rated, for all pairs of rows, as matrix products.

    Args:
        a: ``(n_a, n_y)`` values, 0 where not rated; ``a_mask``: ``(n_a, n_y)`` 1 where rated.
        b, b_mask: the other rows ``(n_b, n_y)``; ``None`` for ``a`` against itself (then the
            products are shared by symmetry).

    Each attribute is an ``(n_a, n_b)`` matrix, computed on first use: ``freq`` (number of co-rated
    columns), ``prods`` (sum of a*b), ``sq_a`` / ``sq_b`` (sum of a^2 / b^2), ``sum_a`` / ``sum_b``,
    all over the co-rated columns of each pair.
    """

    def __init__(self, a: torch.Tensor, a_mask: torch.Tensor, b: torch.Tensor | None = None,
                 b_mask: torch.Tensor | None = None):
        self.symmetric = b is None
        self.a, self.a_mask = a, a_mask
        self.b, self.b_mask = (a, a_mask) if b is None else (b, b_mask)

    @cached_property
    def freq(self) -> torch.Tensor:
        return self.a_mask @ self.b_mask.T

    @cached_property
    def prods(self) -> torch.Tensor:
        return self.a @ self.b.T

    @cached_property
    def sq_a(self) -> torch.Tensor:
        return (self.a * self.a) @ self.b_mask.T

    @cached_property
    def sq_b(self) -> torch.Tensor:
        return self.sq_a.T if self.symmetric else self.a_mask @ (self.b * self.b).T

    @cached_property
    def sum_a(self) -> torch.Tensor:
        return self.a @ self.b_mask.T

    @cached_property
    def sum_b(self) -> torch.Tensor:
        return self.sum_a.T if self.symmetric else self.a_mask @ self.b.T


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator, 0 where the denominator is not positive."""
    positive = denominator > 0
    return torch.where(positive, numerator / torch.where(positive, denominator, 1), 0)


@SIMILARITIES.register("cosine")
def cosine(stats: CoRated) -> torch.Tensor:
    """sum(a b) / sqrt(sum(a^2) sum(b^2)) over the co-rated columns."""
    return _ratio(stats.prods, (stats.sq_a * stats.sq_b).sqrt())


@SIMILARITIES.register("msd")
def msd(stats: CoRated) -> torch.Tensor:
    """1 / (mean squared difference + 1) over the co-rated columns."""
    squared_difference = (stats.sq_a + stats.sq_b).sub_(stats.prods, alpha=2).clamp_(min=0)  # (n_a, n_b)
    similarity = squared_difference.div_(stats.freq.clamp(min=1)).add_(1).reciprocal_()
    return similarity.masked_fill_(stats.freq == 0, 0)


@SIMILARITIES.register("pearson")
def pearson(stats: CoRated) -> torch.Tensor:
    """Pearson correlation over the co-rated columns (means taken over those columns)."""
    n = stats.freq
    numerator = n * stats.prods - stats.sum_a * stats.sum_b
    variance_a = (n * stats.sq_a - stats.sum_a ** 2).clamp(min=0)
    variance_b = (n * stats.sq_b - stats.sum_b ** 2).clamp(min=0)
    return _ratio(numerator, (variance_a * variance_b).sqrt())


@SIMILARITIES.register("pearson_baseline")
def pearson_baseline(stats: CoRated) -> torch.Tensor:
    """Cosine of the baseline residuals r - b(u, i) (the values passed in are those residuals)."""
    return cosine(stats)


def similarity_matrix(name: str, values: torch.Tensor, mask: torch.Tensor, *, min_support: int = 1,
                      shrinkage: float = 0.0, other: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Similarities between rows of a dense rating matrix.

    Args:
        name: a registered similarity ("cosine", "msd", "pearson", "pearson_baseline").
        values: ``(n, n_y)`` ratings (baseline residuals for pearson_baseline), 0 where not rated.
        mask: ``(n, n_y)`` 1.0 where rated.
        min_support: pairs with fewer co-rated columns get similarity 0.
        shrinkage: multiplies each similarity by ``(freq - 1) / (freq - 1 + shrinkage)``.
        other: ``(values, mask)`` of ``(m, n_y)`` other rows; default: ``values`` against itself.

    Returns:
        ``(n, m)`` similarities; against itself the diagonal is 1.
    """
    stats = CoRated(values, mask) if other is None else CoRated(values, mask, *other)
    similarity = SIMILARITIES.get(name)(stats)
    similarity = similarity.masked_fill(stats.freq < min_support, 0)
    if shrinkage:
        similarity.mul_(_ratio(stats.freq - 1, stats.freq - 1 + shrinkage))
    if other is None:
        similarity.fill_diagonal_(1)
    return similarity


def baseline_biases(user: torch.Tensor, item: torch.Tensor, rating: torch.Tensor, n_users: int, n_items: int, *,
                    epochs: int = 10, reg_user: float = 15.0, reg_item: float = 10.0):
    """Biases of the baseline ``b(u, i) = mu + b_u + b_i`` by alternating least squares.

    The estimate of scikit-surprise's baselines (method "als", same defaults): each epoch sets
    ``b_i = sum_u (r - mu - b_u) / (reg_item + n_i)``, then ``b_u = sum_i (r - mu - b_i) / (reg_user + n_u)``.

    Args:
        user, item: ``(N,)`` rows of the N ratings; rating: ``(N,)`` values.

    Returns:
        ``(b_user (n_users,), b_item (n_items,))``.
    """
    mu = rating.mean()
    count_user = torch.bincount(user, minlength=n_users).to(rating.dtype)
    count_item = torch.bincount(item, minlength=n_items).to(rating.dtype)
    b_user = rating.new_zeros(n_users)
    b_item = rating.new_zeros(n_items)
    for _ in range(epochs):
        b_item = rating.new_zeros(n_items).index_add_(0, item, rating - mu - b_user[user]) / (reg_item + count_item)
        b_user = rating.new_zeros(n_users).index_add_(0, user, rating - mu - b_item[item]) / (reg_user + count_user)
    return b_user, b_item


def _positive_int(owner: str, name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner} expects {name} to be a positive integer. Received: {name}={value!r}")
    return value


class KNN(Recommender):
    """User-based or item-based k-nearest-neighbour collaborative filtering (see the module docstring).

    Args:
        k: the most neighbours that vote for a prediction.
        similarity: "msd" (default, as scikit-surprise), "cosine", "pearson" or "pearson_baseline".
        user_based: neighbours are users (True) or items (False).
        centering: "none" (KNNBasic), "mean" (KNNWithMeans) or "baseline" (KNNBaseline).
        min_support: pairs with fewer co-rated items (users) have similarity 0.
        min_k: fewer neighbours with positive similarity than this -> the fallback estimate.
        shrinkage: similarities are multiplied by ``(n - 1) / (n - 1 + shrinkage)``, n = number of
            co-rated items; default 100 for "pearson_baseline" (as scikit-surprise), else 0.
        device: where the matrices live (default: deepzen's default device).
        dtype: of the dense matrices (float64 for exact comparisons).

    Memory: dense ``(n_users, n_items)`` matrices and an ``(n, n)`` similarity matrix
    (n = users or items): MovieLens 100K takes about 40 MB.

    Example:
        >>> from deepzen.data.ratings import Ratings
        >>> table = Ratings(user=[1, 1, 2, 2, 3], item=[7, 8, 7, 8, 7], rating=[5, 1, 4, 2, 5])
        >>> model = KNN(k=2, user_based=True).fit(table)
        >>> # neighbours of user 3 who rated item 8: users 1 (msd sim 1) and 2 (sim 1/2)
        >>> round(float(model.predict(3, 8)), 3)  # (1 * 1 + 0.5 * 2) / (1 + 0.5)
        1.333
    """

    def __init__(self, k: int = 40, similarity: str = "msd", *, user_based: bool = True, centering: str = "none",
                 min_support: int = 1, min_k: int = 1, shrinkage: float | None = None, device: Any = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__(device)
        owner = type(self).__name__
        self.k = _positive_int(owner, "k", k)
        SIMILARITIES.get(similarity)  # raises for unknown names, listing the valid ones
        if centering not in CENTERINGS:
            raise ValueError(f"{owner} expects centering in {CENTERINGS}. Received: centering={centering!r}")
        if shrinkage is not None and shrinkage < 0:
            raise ValueError(f"{owner} expects shrinkage >= 0. Received: shrinkage={shrinkage!r}")
        self.similarity, self.user_based, self.centering = similarity, user_based, centering
        self.min_support = _positive_int(owner, "min_support", min_support)
        self.min_k = _positive_int(owner, "min_k", min_k)
        default_shrinkage = 100.0 if similarity in ON_BASELINE_RESIDUALS else 0.0
        self.shrinkage = default_shrinkage if shrinkage is None else float(shrinkage)
        self.dtype = dtype

    # The tensors _estimate and _item_similarity read (x_bias / y_bias only with baselines).
    STATE = ("global_mean", "x_mean", "x_bias", "y_bias", "sim", "_values", "_mask", "column_count", "column_start",
             "column_rows", "column_residual")

    def get_config(self) -> dict[str, Any]:
        config = {"k": self.k, "similarity": self.similarity, "user_based": self.user_based,
                  "centering": self.centering, "min_support": self.min_support, "min_k": self.min_k,
                  "shrinkage": self.shrinkage, "dtype": str(self.dtype).removeprefix("torch.")}
        if "centering" not in inspect.signature(type(self).__init__).parameters:
            del config["centering"]  # KNNBasic, KNNWithMeans, KNNBaseline: their class fixes it
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], device: Any = None) -> "KNN":
        return cls(**{**config, "dtype": getattr(torch, config["dtype"])}, device=device)

    def _state(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in self.STATE if hasattr(self, name)}

    def _load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, tensor in tensors.items():
            setattr(self, name, tensor)

    def _fit(self, user, item, rating):
        # x: the rows that are neighbours (users when user-based), y: the columns they rate.
        x, y = (user, item) if self.user_based else (item, user)
        n_x, n_y = (self.n_users, self.n_items) if self.user_based else (self.n_items, self.n_users)
        rating = rating.to(self.dtype)
        ratings = torch.zeros(n_x, n_y, dtype=self.dtype, device=self.device)  # (n_x, n_y)
        ratings[x, y] = rating
        mask = torch.zeros_like(ratings)
        mask[x, y] = 1
        self.global_mean = rating.mean()
        self.x_mean = ratings.sum(1) / mask.sum(1)  # (n_x,) every row has a rating
        if self.centering == "baseline" or self.similarity in ON_BASELINE_RESIDUALS:
            b_user, b_item = baseline_biases(user, item, rating, self.n_users, self.n_items)
            self.x_bias, self.y_bias = (b_user, b_item) if self.user_based else (b_item, b_user)
            baseline = self.global_mean + self.x_bias[:, None] + self.y_bias[None, :]  # (n_x, n_y)
        self._values = mask * (ratings - baseline) if self.similarity in ON_BASELINE_RESIDUALS else ratings
        self._mask = mask
        self.sim = similarity_matrix(self.similarity, self._values, mask, min_support=self.min_support,
                                     shrinkage=self.shrinkage)  # (n_x, n_x)
        # Who rated each column, as CSR arrays sorted by column: the rows that rated column c are
        # column_rows[column_start[c]:column_start[c + 1]], with their ratings minus the offset.
        if self.centering == "none":
            residual = rating
        elif self.centering == "mean":
            residual = rating - self.x_mean[x]
        else:
            residual = rating - (self.global_mean + self.x_bias[x] + self.y_bias[y])
        order = torch.argsort(y * n_x + x)
        self.column_count = torch.bincount(y, minlength=n_y)  # (n_y,)
        self.column_start = torch.cumsum(self.column_count, 0) - self.column_count  # (n_y,)
        padding = int(self.column_count.max())  # so that start + slot never runs past the end
        self.column_rows = torch.cat([x[order], x.new_zeros(padding)])  # (N + padding,)
        self.column_residual = torch.cat([residual[order], residual.new_zeros(padding)])

    def _prior(self, x: torch.Tensor, y: torch.Tensor, known_x: torch.Tensor, known_y: torch.Tensor) -> torch.Tensor:
        """The estimate without neighbours: the row mean (or baseline); global mean for unknown rows."""
        if self.centering == "baseline":
            return (self.global_mean + torch.where(known_x, self.x_bias[x], 0)
                    + torch.where(known_y, self.y_bias[y], 0))
        return torch.where(known_x, self.x_mean[x], self.global_mean)

    def _estimate(self, user, item):
        x, y = (user, item) if self.user_based else (item, user)
        known_x, known_y = x >= 0, y >= 0
        x, y = x.clamp(min=0), y.clamp(min=0)
        prior = self._prior(x, y, known_x, known_y)  # (N,)
        deviation = torch.zeros_like(prior)  # weighted mean of the neighbours' residuals
        enough = torch.zeros_like(known_x)  # at least min_k neighbours with positive similarity
        # Pairs sorted by their number of candidate neighbours, in chunks padded to the chunk's
        # largest number: the work is about the total number of candidates, not pairs x rows.
        count = torch.where(known_x & known_y, self.column_count[y], 0)  # (N,)
        order = torch.argsort(count)
        sorted_count = count[order].cpu().numpy()  # host sync: once, to plan the chunks
        start = int(np.searchsorted(sorted_count, 0, side="right"))  # pairs without candidates: prior
        while start < len(order):
            pad = (np.arange(start + 1, len(order) + 1) - start) * sorted_count[start:]  # chunk elements
            end = start + max(1, int(np.searchsorted(pad, CHUNK_ELEMENTS, side="right")))
            pairs = order[start:end]
            deviation[pairs], enough[pairs] = self._neighbours_vote(x[pairs], y[pairs], int(sorted_count[end - 1]))
            start = end
        offset = 0 if self.centering == "none" else prior
        return torch.where(enough, offset + deviation, prior)

    def _neighbours_vote(self, x: torch.Tensor, y: torch.Tensor, width: int):
        """For B pairs whose columns have at most ``width`` raters: the similarity-weighted mean
        residual of the k most similar raters, and whether min_k of them have positive similarity."""
        slot = torch.arange(width, device=x.device)  # (W,)
        valid = slot < self.column_count[y][:, None]  # (B, W)
        position = self.column_start[y][:, None] + slot  # (B, W) into the column arrays
        flat = (x * self.sim.shape[1])[:, None] + self.column_rows[position]  # (B, W) into sim.view(-1)
        similarity = torch.where(valid, self.sim.view(-1)[flat], float("-inf"))  # (B, W)
        if width > self.k:
            similarity, chosen = similarity.topk(self.k, dim=1)  # (B, k)
            position = position.gather(1, chosen)
        weight = similarity.clamp(min=0)  # only positive similarities vote (-inf -> 0)
        total = weight.sum(1)
        enough = (similarity > 0).sum(1) >= self.min_k
        deviation = (weight * self.column_residual[position]).sum(1) / total.clamp(min=torch.finfo(total.dtype).tiny)
        return deviation, enough

    def _item_similarity(self, item):
        if not self.user_based:
            return self.sim[item]
        values, mask = self._values.T, self._mask.T  # (n_items, n_users)
        return similarity_matrix(self.similarity, values[item:item + 1], mask[item:item + 1],
                                 min_support=self.min_support, shrinkage=self.shrinkage, other=(values, mask))[0]


class KNNBasic(KNN):
    """:class:`KNN` without centering: a similarity-weighted mean of the neighbours' ratings."""

    def __init__(self, k: int = 40, similarity: str = "msd", **kwargs: Any):
        super().__init__(k, similarity, centering="none", **kwargs)


class KNNWithMeans(KNN):
    """:class:`KNN` on mean-centred ratings: the row's mean plus the neighbours' weighted deviations."""

    def __init__(self, k: int = 40, similarity: str = "msd", **kwargs: Any):
        super().__init__(k, similarity, centering="mean", **kwargs)


class KNNBaseline(KNN):
    """:class:`KNN` on baseline residuals: ``mu + b_u + b_i`` plus the neighbours' weighted residuals."""

    def __init__(self, k: int = 40, similarity: str = "msd", **kwargs: Any):
        super().__init__(k, similarity, centering="baseline", **kwargs)
