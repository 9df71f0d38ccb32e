"""k-nearest-neighbour collaborative filtering (user-based or item-based), vectorised, in bounded memory.

There is no training loop (and so no ``Model.fit``): ``fit`` only stores the ratings, their means and
biases; all the work happens when a prediction looks up the neighbours.

The algorithms of scikit-surprise's ``KNNBasic``, ``KNNWithMeans`` and ``KNNBaseline``, with the same
neighbours and the same numbers, computed without an ``(n, n)`` similarity matrix:

- ``fit`` keeps the ratings as sparse rows (CSR), the row means and (for baselines) the biases:
  memory O(ratings).
- A batch of (user, item) pairs is predicted at once. For pair (x, y) (user-based: x = the user,
  y = the item; item-based: the other way round) the candidates are the rows that rated y. The
  similarities of the batch's rows to the candidates are computed in blocks of rows, by sparse
  products over the co-rated columns only (:class:`SparseCoRated`), at most ``BLOCK_ELEMENTS`` at a
  time; the few columns rated by many rows on both sides (popular items, in user-based CF) are
  summed by dense matrix products instead, where that is cheaper. Each block's pairs then keep the
  ``k`` most similar candidates and the neighbours with a positive similarity vote. Memory:
  O(ratings + BLOCK_ELEMENTS), whatever the catalogue.
- ``similarity_matrix`` (:class:`CoRated`) is the dense computation of the same similarities: the
  reference the tests compare the blocks against, and a tool for small tables.

Every pair's neighbour set is the one of the dense computation, so the predictions are the same (up
to the order of floating-point sums). The similarities are ``cosine``, ``msd``, ``pearson`` and
``pearson_baseline``.

In user-based CF, for a pair (u, i) with neighbours N = the k users most similar to u who rated i
(only those with sim > 0 count)::

    none (KNNBasic):        r(u, i) = sum_v sim(u, v) r(v, i) / sum_v sim(u, v)
    mean (KNNWithMeans):    r(u, i) = mean(u) + sum_v sim(u, v) (r(v, i) - mean(v)) / sum_v sim(u, v)
    baseline (KNNBaseline): r(u, i) = b(u, i) + sum_v sim(u, v) (r(v, i) - b(v, i)) / sum_v sim(u, v)

with b(u, i) = mu + b_u + b_i the ALS baseline of :func:`baseline_biases`. Item-based CF swaps the
roles of users and items.

Fallbacks (``predict_with_reasons`` says which one each prediction took, as Surprise's
``was_impossible``):

- a user or item not in the training data: the global mean (``baseline``: mu plus the bias of the
  side that is known), as scikit-surprise;
- fewer than ``min_k`` neighbours with sim > 0 ("not enough neighbours"): the mean of u's ratings
  (item-based: of i's ratings) for ``none`` and ``mean``, the baseline for ``baseline``. For
  ``mean`` and ``baseline`` this is Surprise's; Surprise's KNNBasic gives the global mean there.

Ties at the k-th place. With ``ties="id"`` (default) the candidates of equal similarity are taken
in the order of their ids (smallest first). With ``ties="input"`` they are taken in the order of
their ratings of y in the training table, which is scikit-surprise's (``heapq.nlargest`` over the
trainset's ``ir`` / ``ur`` lists, filled in the order of the ratings): fit both libraries on the
same table in the same order and they choose the same neighbours, prediction for prediction.
"""

from __future__ import annotations

import inspect
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse  # a dependency of scikit-learn, which deepzen depends on
import torch

from deepzen._registry import Registry
from deepzen.recommend.base import NOT_ENOUGH_NEIGHBOURS, Recommender, unknown_codes
from deepzen.recommend.baseline import baseline_biases
from deepzen.serializable import ModelFileError

SIMILARITIES: Registry = Registry("similarity")
ON_BASELINE_RESIDUALS = {"pearson_baseline"}  # similarities computed on r - b(u, i) instead of r
CENTERINGS = ("none", "mean", "baseline")
TIES = ("id", "input")
CHUNK_ELEMENTS = 1 << 19  # (pairs x candidate neighbours) per prediction chunk: 2 MB in float32
BLOCK_ELEMENTS = 1 << 22  # (rows x candidates) per similarity block: 32 MB per float64 statistic
DENSE_SPEEDUP = 64  # a dense product's multiply-add is about this much cheaper than a sparse one's


class CoRated:
    """Sums over the columns two rows both rated, for all pairs of rows, as matrix products.

    Args:
        a: ``(n_a, n_y)`` values, 0 where not rated; ``a_mask``: ``(n_a, n_y)`` 1 where rated.
        b, b_mask: the other rows ``(n_b, n_y)``; ``None`` for ``a`` against itself (then the
            products are shared by symmetry).

    Each attribute is an ``(n_a, n_b)`` matrix, computed on first use: ``freq`` (number of co-rated
    columns), ``prods`` (sum of a*b), ``sq_a`` / ``sq_b`` (sum of a^2 / b^2), ``sum_a`` / ``sum_b``,
    ``sq_diff`` (sum of (a - b)^2), all over the co-rated columns of each pair.
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

    @cached_property
    def sq_diff(self) -> torch.Tensor:
        return (self.sq_a + self.sq_b).sub_(self.prods, alpha=2)


class SparseCoRated:
    """:class:`CoRated`'s sums for rows of sparse matrices, over the co-rated pairs only.

    Args:
        a: ``(values, mask, squares)`` of ``n_a`` rows as ``(n_a, n_y)`` scipy CSR matrices (explicit
            entries where rated; duplicates count twice, as in scikit-surprise).
        b_t: the same for the ``n_b`` other rows, transposed: ``(n_y, n_b)`` CSR.
        dtype: of the returned tensors (the sums are taken in the matrices' dtype).

    Each attribute (``freq``, ``prods``, ``sq_a``, ``sq_b``, ``sum_a``, ``sum_b``, ``sq_diff``) is a ``(P,)`` tensor
    over the P pairs that share at least one column, ``pairs`` their flat indices
    ``row * n_b + column``; :meth:`dense` spreads such a tensor into ``(n_a, n_b)`` with 0 elsewhere.
    A sum costs the number of (row of a, column, row of b) co-ratings, not n_a x n_y x n_b, and the
    similarity formulas run over P entries, not n_a x n_b.

    Heavy columns. A column rated by ``r_a`` rows of ``a`` and ``r_b`` of ``b`` costs the sparse
    product ``r_a * r_b`` multiply-adds, a dense product ``n_a * n_b``, about ``DENSE_SPEEDUP`` times
    cheaper each. Where the columns worth a dense product carry most of the work (the popular items of
    user-based CF: a few hundred of them hold 80% of the co-ratings), those columns are summed by dense
    matrix products and the rest by sparse ones; the block is then dense: every attribute is an
    ``(n_a, n_b)`` tensor (0 where no column is shared) and ``pairs`` is None.
    """

    VALUES, MASK, SQUARES = 0, 1, 2  # the matrices of a and b_t

    def __init__(self, a, b_t, dtype: torch.dtype):
        self.dtype = dtype
        self.shape = (a[0].shape[0], b_t[0].shape[1])
        heavy = self._heavy_columns(a[self.MASK], b_t[self.MASK])
        if len(heavy):
            light = np.ones(a[0].shape[1], dtype=bool)
            light[heavy] = False
            self._a_heavy = tuple(torch.from_numpy(matrix[:, heavy].toarray()) for matrix in a)  # (n_a, H)
            self._b_heavy = tuple(torch.from_numpy(matrix[heavy].toarray()) for matrix in b_t)  # (H, n_b)
            a, b_t = tuple(matrix[:, light] for matrix in a), tuple(matrix[light] for matrix in b_t)
        self.a, self.b_t = a, b_t
        if len(heavy):
            self.pairs = None
            self.freq = self._sum((self.MASK, self.MASK, 1))
            return
        frequency = a[self.MASK] @ b_t[self.MASK]  # its entries are exactly the co-rated pairs (counts >= 1)
        self.pairs = self._keys(frequency)  # (P,)
        self.freq = torch.from_numpy(frequency.data).to(dtype)
        # The pair number of each flat index; uninitialised: only the co-rated entries are written and read.
        self._pair_of = np.empty(self.shape[0] * self.shape[1], dtype=np.int64)
        self._pair_of[self.pairs] = np.arange(len(self.pairs))

    def _heavy_columns(self, a_mask, b_mask_t) -> np.ndarray:
        """The columns to sum by dense products (see the class docstring), at most ``BLOCK_ELEMENTS``
        dense entries in each of the (values, mask, squares) matrices of a side; none when the light columns carry
        at least half the work."""
        n_a, n_b = self.shape
        work = np.bincount(a_mask.indices, minlength=a_mask.shape[1]).astype(np.int64) * np.diff(b_mask_t.indptr)
        heavy = np.flatnonzero(work * DENSE_SPEEDUP > n_a * n_b)
        most = max(1, BLOCK_ELEMENTS // max(n_a, n_b))
        if len(heavy) > most:
            heavy = np.sort(heavy[np.argsort(work[heavy])[-most:]])
        if 2 * work[heavy].sum() <= work.sum():
            return heavy[:0]
        return heavy

    def _keys(self, product) -> np.ndarray:
        rows = np.repeat(np.arange(product.shape[0]), np.diff(product.indptr))
        return rows * self.shape[1] + product.indices

    def _sum(self, *terms: tuple[int, int, float]) -> torch.Tensor:
        """Sum over the co-rated columns of ``sum(scale * a[left] * b[right] for left, right, scale in terms)``,
        per pair (``(P,)``, or dense ``(n_a, n_b)``): one product, the terms side by side along the columns."""
        if len(terms) == 1 and terms[0][2] == 1:
            left, right = self.a[terms[0][0]], self.b_t[terms[0][1]]
        else:
            left = scipy.sparse.hstack([self.a[term[0]] for term in terms], format="csr")
            right = scipy.sparse.vstack([self.b_t[term[1]] * term[2] for term in terms], format="csr")
        product = left @ right
        if self.pairs is None:
            dense = torch.from_numpy(product.toarray()).to(self.dtype)
            heavy_left = torch.cat([self._a_heavy[term[0]] for term in terms], dim=1)
            heavy_right = torch.cat([self._b_heavy[term[1]] * term[2] for term in terms], dim=0)
            return dense.addmm_(heavy_left.to(self.dtype), heavy_right.to(self.dtype))
        # The product's entries in the order of ``pairs``; the entries scipy dropped (exact zero sums) are 0.
        values = np.zeros(len(self.pairs), dtype=product.dtype)
        values[self._pair_of[self._keys(product)]] = product.data
        return torch.from_numpy(values).to(self.dtype)

    def dense(self, values: torch.Tensor) -> torch.Tensor:
        """Values of the pairs as an ``(n_a, n_b)`` tensor, 0 where no column is shared."""
        if self.pairs is None:
            return values
        out = values.new_zeros(self.shape)
        out.view(-1)[torch.from_numpy(self.pairs)] = values
        return out

    @cached_property
    def prods(self) -> torch.Tensor:
        return self._sum((self.VALUES, self.VALUES, 1))

    @cached_property
    def sq_a(self) -> torch.Tensor:
        return self._sum((self.SQUARES, self.MASK, 1))

    @cached_property
    def sq_b(self) -> torch.Tensor:
        return self._sum((self.MASK, self.SQUARES, 1))

    @cached_property
    def sum_a(self) -> torch.Tensor:
        return self._sum((self.VALUES, self.MASK, 1))

    @cached_property
    def sum_b(self) -> torch.Tensor:
        return self._sum((self.MASK, self.VALUES, 1))

    @cached_property
    def sq_diff(self) -> torch.Tensor:
        # a^2 - 2ab + b^2 summed in one product (three times as long) instead of three products
        return self._sum((self.SQUARES, self.MASK, 1), (self.VALUES, self.VALUES, -2), (self.MASK, self.SQUARES, 1))


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
    squared_difference = stats.sq_diff.clamp(min=0)  # (n_a, n_b) rounding may leave a sum of squares below 0
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
    """Similarities between rows of a dense rating matrix (the dense reference of the kNN models).

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
    similarity = _similarity(name, stats, min_support, shrinkage)
    if other is None:
        similarity.fill_diagonal_(1)
    return similarity


def _similarity(name: str, stats, min_support: int, shrinkage: float) -> torch.Tensor:
    """The similarity ``name`` of :class:`CoRated` or :class:`SparseCoRated` sums, support and shrinkage applied."""
    similarity = SIMILARITIES.get(name)(stats)
    if min_support > 1:  # every similarity is already 0 without co-ratings
        similarity = similarity.masked_fill(stats.freq < min_support, 0)
    if shrinkage:
        similarity.mul_(_ratio(stats.freq - 1, stats.freq - 1 + shrinkage))
    return similarity


def _distinct(values: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(values, return_inverse=True)`` for integers in ``[0, size)``, by marking them: O(values +
    size) instead of a sort, which matters for the millions of pairs of a full ranking."""
    present = torch.zeros(size, dtype=torch.bool, device=values.device)
    present[values] = True
    return torch.nonzero(present).squeeze(1), (torch.cumsum(present, 0) - 1)[values]


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
        ties: order of equally similar candidates at the k-th place: "id" (smallest id first) or
            "input" (first rated in the training table first: scikit-surprise's order).
        device: where the tensors live (default: deepzen's default device); the similarity blocks
            are computed on the CPU (scipy's sparse products) and voted on ``device``.
        dtype: of the similarities and estimates (float64 for exact comparisons).

    Memory: the ratings (a few arrays of N entries) and one similarity block at a time; no
    ``(n, n)`` matrix. A 60,000-item catalogue fits in well under 4 GB.

    Example:
        >>> from deepzen.data.ratings import Ratings
        >>> table = Ratings(user=[1, 1, 2, 2, 3], item=[7, 8, 7, 8, 7], rating=[5, 1, 4, 2, 5])
        >>> model = KNN(k=2, user_based=True).fit(table)
        >>> # neighbours of user 3 who rated item 8: users 1 (msd sim 1) and 2 (sim 1/2)
        >>> round(float(model.predict(3, 8)), 3)  # (1 * 1 + 0.5 * 2) / (1 + 0.5)
        1.333
        >>> model.predict_with_reasons([3, 3], [8, 99])  # item 99 is unknown: the global mean, 3.4
        (array([1.3333334, 3.4      ], dtype=float32), array(['', 'unknown item'], dtype='<U21'))
    """

    def __init__(self, k: int = 40, similarity: str = "msd", *, user_based: bool = True, centering: str = "none",
                 min_support: int = 1, min_k: int = 1, shrinkage: float | None = None, ties: str = "id",
                 device: Any = None, dtype: torch.dtype = torch.float32):
        super().__init__(device)
        owner = type(self).__name__
        self.k = _positive_int(owner, "k", k)
        SIMILARITIES.get(similarity)  # raises for unknown names, listing the valid ones
        if centering not in CENTERINGS:
            raise ValueError(f"{owner} expects centering in {CENTERINGS}. Received: centering={centering!r}")
        if ties not in TIES:
            raise ValueError(f"{owner} expects ties in {TIES}. Received: ties={ties!r}")
        if shrinkage is not None and shrinkage < 0:
            raise ValueError(f"{owner} expects shrinkage >= 0. Received: shrinkage={shrinkage!r}")
        self.similarity, self.user_based, self.centering, self.ties = similarity, user_based, centering, ties
        self.min_support = _positive_int(owner, "min_support", min_support)
        self.min_k = _positive_int(owner, "min_k", min_k)
        default_shrinkage = 100.0 if similarity in ON_BASELINE_RESIDUALS else 0.0
        self.shrinkage = default_shrinkage if shrinkage is None else float(shrinkage)
        self.dtype = dtype

    # The tensors _estimate and _item_similarity read (x_bias / y_bias only with baselines).
    STATE = ("global_mean", "x_mean", "x_bias", "y_bias", "row_start", "row_columns", "row_values", "column_count",
             "column_start", "column_rows", "column_residual")

    def get_config(self) -> dict[str, Any]:
        config = {"k": self.k, "similarity": self.similarity, "user_based": self.user_based,
                  "centering": self.centering, "min_support": self.min_support, "min_k": self.min_k,
                  "shrinkage": self.shrinkage, "ties": self.ties, "dtype": str(self.dtype).removeprefix("torch.")}
        if "centering" not in inspect.signature(type(self).__init__).parameters:
            del config["centering"]  # KNNBasic, KNNWithMeans, KNNBaseline: their class fixes it
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], device: Any = None) -> "KNN":
        return cls(**{**config, "dtype": getattr(torch, config["dtype"])}, device=device)

    def _state(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in self.STATE if hasattr(self, name)}

    # What files written before the sparse neighbourhoods hold instead of the row arrays: the dense
    # (n_x, n_x) similarity and the dense (n_x, n_y) ratings (residuals for pearson_baseline) and mask.
    DENSE_FORMAT = ("sim", "_values", "_mask")

    def _load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        if "row_start" not in tensors and all(name in tensors for name in self.DENSE_FORMAT):
            tensors = self._from_dense_format(tensors)
        needs_bias = self.centering == "baseline" or self.similarity in ON_BASELINE_RESIDUALS
        missing = [name for name in self.STATE if name not in tensors and (needs_bias or "bias" not in name)]
        if missing:
            raise ModelFileError(f"{type(self).__name__} file in an unknown format: it holds the tensors "
                                 f"{sorted(tensors)}, expected {list(self.STATE)} (this version's) or "
                                 f"{list(self.DENSE_FORMAT)} with the column arrays (the earlier dense format); "
                                 f"missing: {missing}. Fit the model on its ratings again and save it.")
        for name, tensor in tensors.items():
            setattr(self, name, tensor)
        self._sparse = {}

    @classmethod
    def _from_dense_format(cls, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The state of a file in the earlier dense format, converted: the rows of the dense ratings become
        the CSR row arrays and the stored similarity is dropped (the blocks recompute the same values).
        Its column arrays are already sorted by column, then row id: the order of ``ties="id"``."""
        values, mask = tensors["_values"], tensors["_mask"]  # (n_x, n_y)
        rows, columns = torch.nonzero(mask, as_tuple=True)  # row-major: sorted by row, then column
        count = torch.bincount(rows, minlength=mask.shape[0])
        converted = {name: tensor for name, tensor in tensors.items() if name not in cls.DENSE_FORMAT}
        converted.update(row_start=torch.cat([count.new_zeros(1), torch.cumsum(count, 0)]), row_columns=columns,
                         row_values=values[rows, columns])
        return converted

    def _fit(self, user, item, rating):
        # x: the rows that are neighbours (users when user-based), y: the columns they rate.
        x, y = (user, item) if self.user_based else (item, user)
        n_x, n_y = (self.n_users, self.n_items) if self.user_based else (self.n_items, self.n_users)
        rating = rating.to(self.dtype)
        self.global_mean = rating.mean()
        count_x = torch.bincount(x, minlength=n_x)  # every row has a rating
        self.x_mean = rating.new_zeros(n_x).index_add_(0, x, rating) / count_x  # (n_x,)
        if self.centering == "baseline" or self.similarity in ON_BASELINE_RESIDUALS:
            b_user, b_item = baseline_biases(user, item, rating, self.n_users, self.n_items)
            self.x_bias, self.y_bias = (b_user, b_item) if self.user_based else (b_item, b_user)
            baseline = self.global_mean + self.x_bias[x] + self.y_bias[y]  # (N,)
        # The rows as CSR arrays (sorted by row, then column), the input of the similarity blocks.
        values = rating - baseline if self.similarity in ON_BASELINE_RESIDUALS else rating
        by_row = torch.argsort(x * n_y + y, stable=True)
        self.row_start = torch.cat([count_x.new_zeros(1), torch.cumsum(count_x, 0)])  # (n_x + 1,)
        self.row_columns, self.row_values = y[by_row], values[by_row]  # (N,)
        # Who rated each column, as CSR arrays sorted by column, then in the order of ``ties``: the
        # rows that rated column c are column_rows[column_start[c]:column_start[c + 1]], with their
        # ratings minus the offset.
        if self.centering == "none":
            residual = rating
        elif self.centering == "mean":
            residual = rating - self.x_mean[x]
        else:
            residual = rating - baseline
        order = torch.argsort(y * n_x + x, stable=True) if self.ties == "id" else torch.argsort(y, stable=True)
        self.column_count = torch.bincount(y, minlength=n_y)  # (n_y,)
        self.column_start = torch.cumsum(self.column_count, 0) - self.column_count  # (n_y,)
        padding = int(self.column_count.max())  # so that start + slot never runs past the end
        self.column_rows = torch.cat([x[order], x.new_zeros(padding)])  # (N + padding,)
        self.column_residual = torch.cat([residual[order], residual.new_zeros(padding)])
        self._sparse = {}

    def _rows_matrix(self, transposed: bool = False):
        """``(values, mask, squares)`` of the rows as scipy CSR ``(n_x, n_y)`` matrices of the model's
        dtype (``transposed``: the columns as rows, ``(n_y, n_x)``); built once per fit or load."""
        if transposed not in self._sparse:
            start, columns = self.row_start.cpu().numpy(), self.row_columns.cpu().numpy()
            values = self.row_values.cpu().numpy()  # in the model's dtype: float32 sums of ratings are exact
            shape = (len(start) - 1, len(self.column_count))
            matrices = tuple(scipy.sparse.csr_matrix((data, columns, start), shape=shape)
                             for data in (values, np.ones_like(values), values * values))  # values, mask, squares
            if transposed:
                matrices = tuple(matrix.T.tocsr() for matrix in matrices)
            self._sparse[transposed] = matrices
        return self._sparse[transposed]

    def _candidate_matrices(self, candidates: torch.Tensor, of_columns: bool = False):
        """``(values, mask, squares)`` of the ``candidates`` rows, transposed: the right factors of the sums."""
        candidates_np = candidates.cpu().numpy()
        return tuple(matrix[candidates_np].T.tocsr() for matrix in self._rows_matrix(of_columns))

    def similarity_block(self, rows: torch.Tensor, candidates: torch.Tensor, *, of_columns: bool = False,
                         candidate_matrices=None):
        """Similarities of ``rows`` to ``candidates`` (row indices), computed from the sparse ratings.

        Args:
            rows: ``(B,)`` row indices; candidates: ``(C,)`` row indices.
            of_columns: similarities of the columns instead (items of a user-based model).
            candidate_matrices: ``_candidate_matrices(candidates)``, when the caller reuses them.

        Returns:
            ``(B, C)`` similarities on the CPU; a row's similarity to itself is 1 (not for columns).
        """
        rows_np, candidates_np = rows.cpu().numpy(), candidates.cpu().numpy()
        a = tuple(matrix[rows_np] for matrix in self._rows_matrix(of_columns))
        b_t = candidate_matrices or self._candidate_matrices(candidates, of_columns)
        stats = SparseCoRated(a, b_t, self.dtype)
        similarity = stats.dense(_similarity(self.similarity, stats, self.min_support, self.shrinkage))  # (B, C)
        if not of_columns:  # a row's similarity to itself is 1, as in the dense matrix's diagonal
            sorter = np.argsort(candidates_np)
            found = np.searchsorted(candidates_np, rows_np, sorter=sorter).clip(max=len(candidates_np) - 1)
            itself = candidates_np[sorter[found]] == rows_np  # (B,)
            similarity[torch.as_tensor(np.flatnonzero(itself)), torch.as_tensor(sorter[found[itself]])] = 1
        return similarity

    def _prior(self, x: torch.Tensor, y: torch.Tensor, known_x: torch.Tensor, known_y: torch.Tensor) -> torch.Tensor:
        """The estimate without neighbours: the row mean (or baseline); the global mean when the user or
        the item is unknown (``baseline``: mu plus the bias of the known side), as scikit-surprise."""
        if self.centering == "baseline":
            return (self.global_mean + torch.where(known_x, self.x_bias[x], 0)
                    + torch.where(known_y, self.y_bias[y], 0))
        return torch.where(known_x & known_y, self.x_mean[x], self.global_mean)

    def _estimate(self, user, item):
        return self._estimate_with_reasons(user, item)[0]

    def _estimate_with_reasons(self, user, item):
        reasons = unknown_codes(user, item)
        x, y = (user, item) if self.user_based else (item, user)
        known_x, known_y = x >= 0, y >= 0
        x, y = x.clamp(min=0), y.clamp(min=0)
        prior = self._prior(x, y, known_x, known_y)  # (N,)
        deviation = torch.zeros_like(prior)  # weighted mean of the neighbours' residuals
        enough = torch.zeros_like(known_x)  # at least min_k neighbours with positive similarity
        count = torch.where(known_x & known_y, self.column_count[y], 0)  # (N,) candidate neighbours
        active = torch.nonzero(count > 0).squeeze(1)  # pairs without candidates: prior
        if len(active):
            # The similarity blocks: the distinct rows of the batch against every candidate of the batch.
            rows, position_in_rows = _distinct(x[active], len(self.x_mean))  # (R,), (A,)
            in_batch = torch.zeros(len(self.column_count), dtype=torch.bool, device=x.device)
            in_batch[y[active]] = True  # (n_y,) the columns of the batch
            rated = in_batch.repeat_interleave(self.column_count)  # (N,) each rating: of a column of the batch?
            candidates = _distinct(self.column_rows[:len(rated)][rated], len(self.x_mean))[0]  # (C,) their raters
            # The block column of the rater in each slot of the column arrays, looked up once for the
            # batch (O(ratings)), not per pair and neighbour. Rows that are no candidate get column 0:
            # they fill only the slots past a column's end, which the vote masks.
            candidate_index = torch.zeros(len(self.x_mean), dtype=torch.long, device=x.device)
            candidate_index[candidates] = torch.arange(len(candidates), device=x.device)
            slot_candidate = candidate_index[self.column_rows]  # (N + padding,)
            candidate_matrices = self._candidate_matrices(candidates)
            block_rows = max(1, BLOCK_ELEMENTS // len(candidates))
            block = position_in_rows // block_rows  # (A,) the block of each active pair
            # Pairs sorted by block, then by their number of candidates; within a block, in chunks padded
            # to the chunk's largest number: the work follows the number of candidates.
            order = torch.argsort(block * (int(count.max()) + 1) + count[active])
            active, block, position_in_rows = active[order], block[order], position_in_rows[order]
            block_np, count_np = block.cpu().numpy(), count[active].cpu().numpy()  # host sync: to plan the blocks
            for index in range(int(block_np[-1]) + 1):
                lo, hi = np.searchsorted(block_np, [index, index + 1])
                if lo == hi:
                    continue
                first = index * block_rows
                similarity = self.similarity_block(rows[first:first + block_rows], candidates,
                                                   candidate_matrices=candidate_matrices).to(self.device)
                start = lo
                while start < hi:
                    # chunk elements of each possible end; the counts grow, so no end past `reach` fits
                    reach = min(hi, start + CHUNK_ELEMENTS // max(1, int(count_np[start])) + 1)
                    pad = (np.arange(start + 1, reach + 1) - start) * count_np[start:reach]
                    end = start + max(1, int(np.searchsorted(pad, CHUNK_ELEMENTS, side="right")))
                    pairs = active[start:end]
                    deviation[pairs], enough[pairs] = self._neighbours_vote(
                        similarity, position_in_rows[start:end] - first, slot_candidate, y[pairs],
                        int(count_np[end - 1]))
                    start = end
        offset = 0 if self.centering == "none" else prior
        estimate = torch.where(enough, offset + deviation, prior)
        reasons = torch.where((reasons == 0) & ~enough, NOT_ENOUGH_NEIGHBOURS, reasons)
        return estimate, reasons

    def _neighbours_vote(self, similarity: torch.Tensor, block_row: torch.Tensor, slot_candidate: torch.Tensor,
                         y: torch.Tensor, width: int):
        """For B pairs whose columns have at most ``width`` raters: the similarity-weighted mean
        residual of the k most similar raters, and whether min_k of them have positive similarity.

        ``similarity``: ``(rows of the block, C)``; ``block_row``: ``(B,)`` each pair's row in it;
        ``slot_candidate``: ``(N + padding,)`` the column of ``similarity`` of each slot's rater.

        Every step is one pass over the ``(B, W)`` neighbours with flat ``index_select`` gathers and
        arithmetic masks: on the CPU, advanced indexing, ``where`` and bool-by-float products cost
        5-20x more per element.
        """
        shape = (len(y), width)
        slot = torch.arange(width, device=y.device)  # (W,)
        position = (self.column_start[y][:, None] + slot).view(-1)  # (B * W,) into the column arrays
        flat = (slot_candidate.index_select(0, position).view(shape)
                + (block_row * similarity.shape[1])[:, None])  # (B, W) into similarity.view(-1)
        valid = (slot < self.column_count[y][:, None]).to(similarity.dtype)  # (B, W) 0 past the column's end
        # Past a column's end the similarity is 0: such a slot can only displace neighbours that do not
        # vote (similarity <= 0), and never votes itself.
        chosen = similarity.view(-1).index_select(0, flat.view(-1)).view(shape) * valid  # (B, W)
        weight = chosen.clamp(min=0)  # only positive similarities vote
        if width > self.k:
            # The k most similar: all above the k-th similarity, then those equal to it in the columns'
            # order (ids, or the input's) until k are taken -- the ties rule, without a sort.
            kth = chosen.topk(self.k, dim=1, sorted=False).values.amin(1, keepdim=True)  # (B, 1)
            taken = chosen >= kth  # (B, W) k of them, or more where several equal the k-th
            surplus = taken.sum(1, dtype=torch.int32) > self.k
            # Rows with a tie at the k-th place among voters (similarity > 0): the rule decides who votes.
            tied_rows = torch.nonzero(surplus & (kth[:, 0] > 0)).squeeze(1)  # host sync: once per chunk
            if len(tied_rows):
                some, some_kth = chosen[tied_rows], kth[tied_rows]  # (T, W), (T, 1)
                above, tied = some > some_kth, some == some_kth
                room = self.k - above.sum(1, keepdim=True, dtype=torch.int32)  # (T, 1) places left for the tied
                taken[tied_rows] = above | (tied & (tied.cumsum(1, dtype=torch.int32) <= room))
            weight = weight * taken.to(weight.dtype)
        total = weight.sum(1)
        enough = (weight > 0).sum(1, dtype=torch.int32) >= self.min_k
        residual = self.column_residual.index_select(0, position).view(shape)  # (B, W)
        deviation = (weight * residual).sum(1) / total.clamp(min=torch.finfo(total.dtype).tiny)
        return deviation, enough

    def _item_similarity(self, item):
        everything = torch.arange(self.n_items)
        row = torch.tensor([item])
        return self.similarity_block(row, everything, of_columns=self.user_based)[0].to(self.device)


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
