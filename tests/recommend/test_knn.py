"""kNN CF against a brute-force reference: per-pair loops over dicts, scikit-surprise's formulas."""

import itertools
import math

import numpy as np
import pytest
import torch

from deepzen.data.ratings import Ratings
from deepzen.recommend.knn import KNN, KNNBaseline, KNNBasic, KNNWithMeans, baseline_biases, similarity_matrix


def random_table(seed=0, n_users=12, n_items=15, density=0.55):
    """Continuous ratings in [1, 5] (no exact ties between similarities of >= 3 co-ratings)."""
    rng = np.random.default_rng(seed)
    rated = rng.random((n_users, n_items)) < density
    rated[np.arange(n_users), rng.integers(0, n_items, n_users)] = True  # every user rated something
    rated[rng.integers(0, n_users, n_items), np.arange(n_items)] = True  # every item was rated
    users, items = np.nonzero(rated)
    ids_u, ids_i = 100 + users * 3, 7 + items * 2  # ids that are not row numbers
    return Ratings(ids_u, ids_i, rng.uniform(1, 5, len(users)))


# -- the reference ------------------------------------------------------------------------------

def reference_baselines(table, epochs=10, reg_user=15.0, reg_item=10.0):
    mu = float(np.mean(table.rating.astype(np.float64)))
    b_user = {u: 0.0 for u in set(table.user.tolist())}
    b_item = {i: 0.0 for i in set(table.item.tolist())}
    by_item, by_user = {}, {}
    for u, i, r in zip(table.user.tolist(), table.item.tolist(), table.rating.astype(np.float64).tolist()):
        by_item.setdefault(i, []).append((u, r))
        by_user.setdefault(u, []).append((i, r))
    for _ in range(epochs):
        for i, pairs in by_item.items():
            b_item[i] = sum(r - mu - b_user[u] for u, r in pairs) / (reg_item + len(pairs))
        for u, pairs in by_user.items():
            b_user[u] = sum(r - mu - b_item[i] for i, r in pairs) / (reg_user + len(pairs))
    return mu, b_user, b_item


def reference_similarity(a, b, name, min_support, shrinkage):
    """a, b: {column: value} of two rows (values are residuals for pearson_baseline)."""
    common = sorted(set(a) & set(b))
    n = len(common)
    if n < min_support or n == 0:
        return 0.0
    x = np.array([a[c] for c in common])
    y = np.array([b[c] for c in common])
    if name in ("cosine", "pearson_baseline"):
        denominator = math.sqrt(np.sum(x * x) * np.sum(y * y))
        value = np.sum(x * y) / denominator if denominator > 0 else 0.0
    elif name == "msd":
        value = 1.0 / (np.mean((x - y) ** 2) + 1.0)
    else:  # pearson, means over the common columns
        dx, dy = x - x.mean(), y - y.mean()
        denominator = math.sqrt(np.sum(dx * dx) * np.sum(dy * dy))
        value = np.sum(dx * dy) / denominator if denominator > 0 else 0.0
    if shrinkage:
        value *= (n - 1) / (n - 1 + shrinkage)
    return float(value)


class ReferenceKNN:
    """Surprise's estimate, pair by pair, with the dense similarity matrix as a dict of all pairs.

    ties: "id" (equal similarities: smallest id first) or "input" (first rated in the table first,
    Surprise's heapq.nlargest over the trainset's lists) -- or None: assert there is no tie at the k-th place.
    """

    def __init__(self, table, *, k, similarity, user_based, centering, min_support, min_k, ties=None):
        self.k, self.centering, self.min_k, self.user_based, self.ties = k, centering, min_k, user_based, ties
        self.shrinkage = 100.0 if similarity == "pearson_baseline" else 0.0
        self.mu, b_user, b_item = reference_baselines(table)
        xs, ys = (table.user, table.item) if user_based else (table.item, table.user)
        self.b_x, self.b_y = (b_user, b_item) if user_based else (b_item, b_user)
        self.rows = {}  # x -> {y: rating}
        self.raters = {}  # y -> [x in the order of the table's rows]
        for x, y, r in zip(xs.tolist(), ys.tolist(), table.rating.astype(np.float64).tolist()):
            self.rows.setdefault(x, {})[y] = r
            self.raters.setdefault(y, []).append(x)
        self.mean = {x: float(np.mean(list(row.values()))) for x, row in self.rows.items()}
        self.baseline = lambda x, y: self.mu + self.b_x.get(x, 0.0) + self.b_y.get(y, 0.0)
        values = self.rows
        if similarity == "pearson_baseline":
            values = {x: {y: r - self.baseline(x, y) for y, r in row.items()} for x, row in self.rows.items()}
        self.similarities = {(a, b): 1.0 if a == b else reference_similarity(values[a], values[b], similarity,
                                                                             min_support, self.shrinkage)
                             for a in values for b in values}
        self.sim = lambda a, b: self.similarities[a, b]

    def offset(self, x, y):
        return {"none": 0.0, "mean": self.mean.get(x), "baseline": self.baseline(x, y)}[self.centering]

    def predict_one(self, user, item):
        return self.predict_with_reason(user, item)[0]

    def predict_with_reason(self, user, item):
        """(estimate, reason): Surprise's fallbacks -- an unknown user or item gives the global mean
        (baseline: mu plus the known side's bias); too few neighbours the row mean (baseline: b(u, i))."""
        x, y = (user, item) if self.user_based else (item, user)
        unknown_user = user not in (self.rows if self.user_based else self.raters)
        unknown_item = item not in (self.raters if self.user_based else self.rows)
        if unknown_user or unknown_item:
            reason = "unknown user and item" if unknown_user and unknown_item else (
                "unknown user" if unknown_user else "unknown item")
            return (self.baseline(x, y) if self.centering == "baseline" else self.mu), reason
        prior = self.baseline(x, y) if self.centering == "baseline" else self.mean[x]
        raters = self.raters[y] if self.ties == "input" else sorted(self.raters[y])
        ranked = sorted(((self.sim(x, x2), x2) for x2 in raters), key=lambda t: -t[0])  # stable: ties in order
        if len(ranked) > self.k and ranked[self.k - 1][0] > 0 and self.ties is None:
            assert ranked[self.k - 1][0] != ranked[self.k][0], "tie at the k-th neighbour: change the test data"
        votes = [(s, self.rows[x2][y] - self.offset(x2, y)) for s, x2 in ranked[:self.k] if s > 0]
        if len(votes) < self.min_k:
            return prior, "not enough neighbours"
        deviation = sum(s * r for s, r in votes) / sum(s for s, _ in votes)
        return (deviation if self.centering == "none" else prior + deviation), ""


# -- tests --------------------------------------------------------------------------------------

SETTINGS = list(itertools.product(["cosine", "msd", "pearson", "pearson_baseline"], [True, False],
                                  ["none", "mean", "baseline"],
                                  [(100, 1, 1), (3, 3, 1), (4, 2, 2)]))  # (k, min_support, min_k)


@pytest.mark.parametrize("similarity,user_based,centering,limits", SETTINGS)
def test_predictions_match_brute_force(similarity, user_based, centering, limits):
    k, min_support, min_k = limits
    if similarity == "pearson" and min_support < 3 and k < 100:
        min_support = 3  # pearson of 2 co-ratings is +-1: ties at the k-th place
    table = random_table(seed=1)
    options = dict(k=k, similarity=similarity, user_based=user_based, centering=centering,
                   min_support=min_support, min_k=min_k)
    model = KNN(**options, device="cpu", dtype=torch.float64).fit(table)
    reference = ReferenceKNN(table, **options)
    users = np.concatenate([np.unique(table.user), [999]])  # every pair, plus an unknown user and item
    items = np.concatenate([np.unique(table.item), [998]])
    grid_u, grid_i = np.meshgrid(users, items, indexing="ij")
    expected = np.array([[reference.predict_one(u, i) for i in items] for u in users])
    np.testing.assert_allclose(model.score(grid_u, grid_i).numpy(), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("user_based", [True, False])
def test_k_just_below_the_number_of_candidates(user_based):
    table = random_table(seed=7)
    columns = table.item if user_based else table.user
    k = int(np.bincount(columns).max()) - 1  # the most-rated column has exactly k + 1 candidates
    options = dict(k=k, similarity="msd", user_based=user_based, centering="mean", min_support=1, min_k=1)
    model = KNN(**options, device="cpu", dtype=torch.float64).fit(table)
    reference = ReferenceKNN(table, **options)
    users, items = np.meshgrid(np.unique(table.user), np.unique(table.item), indexing="ij")
    expected = [[reference.predict_one(u, i) for u, i in zip(row_u, row_i)] for row_u, row_i in zip(users, items)]
    np.testing.assert_allclose(model.score(users, items).numpy(), expected, rtol=1e-9)


def dense_similarities(model, of_columns=False):
    """The dense path: the model's rows (or columns) as dense (n, n_y) matrices, through similarity_matrix."""
    n_x, n_y = len(model.x_mean), len(model.column_count)
    x = torch.repeat_interleave(torch.arange(n_x), model.row_start.diff())
    values = torch.zeros(n_x, n_y, dtype=model.dtype)
    values[x, model.row_columns] = model.row_values
    mask = torch.zeros_like(values)
    mask[x, model.row_columns] = 1
    if of_columns:
        values, mask = values.T.contiguous(), mask.T.contiguous()
    return similarity_matrix(model.similarity, values, mask, min_support=model.min_support, shrinkage=model.shrinkage)


def all_similarities(model, of_columns=False):
    n = (len(model.column_count) if of_columns else len(model.x_mean))
    return model.similarity_block(torch.arange(n), torch.arange(n), of_columns=of_columns)


@pytest.mark.parametrize("similarity", ["cosine", "msd", "pearson", "pearson_baseline"])
def test_similarity_blocks_match_brute_force_and_the_dense_matrix(similarity):
    table = random_table(seed=2)
    for user_based in (True, False):
        model = KNN(similarity=similarity, user_based=user_based, min_support=2, device="cpu",
                    dtype=torch.float64).fit(table)
        reference = ReferenceKNN(table, k=40, similarity=similarity, user_based=user_based, centering="none",
                                 min_support=2, min_k=1)
        rows = model.user_ids if user_based else model.item_ids
        expected = np.array([[reference.sim(a, b) for b in rows.tolist()] for a in rows.tolist()])
        np.testing.assert_allclose(all_similarities(model).numpy(), expected, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(all_similarities(model).numpy(), dense_similarities(model).numpy(),
                                   rtol=1e-9, atol=1e-12)
    # a user-based model computes item-item similarities on demand: they equal the item-based model's
    options = dict(similarity=similarity, min_support=2, device="cpu", dtype=torch.float64)
    user_model = KNN(**options).fit(table)
    item_model = KNN(user_based=False, **options).fit(table)
    stored = all_similarities(item_model).numpy()
    for row in range(item_model.n_items):  # the self-similarity (excluded from similar_items) may differ
        on_demand = user_model._item_similarity(row).numpy()
        np.testing.assert_allclose(np.delete(on_demand, row), np.delete(stored[row], row), atol=1e-12)
    item = int(table.item[0])
    similar = item_model.similar_items(item, 4)
    row = int(item_model.item_rows([item])[0])
    others = np.delete(stored[row], row)
    assert [score for _, score in similar] == pytest.approx(sorted(others, reverse=True)[:4])
    assert item not in [other for other, _ in similar]


def sparse_table(seed, n_users=300, n_items=500, ratings=4000, integer=True):
    """A MovieLens-like sparse table with popularity skew; integer ratings give many ties."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    activity = 1.0 / np.arange(1, n_users + 1) ** 0.6
    users = rng.choice(n_users, ratings, p=activity / activity.sum())
    items = rng.choice(n_items, ratings, p=popularity / popularity.sum())
    _, first = np.unique(users * n_items + items, return_index=True)
    first = rng.permutation(first)  # the table's order is not the ids' order
    values = rng.integers(1, 6, len(first)) if integer else rng.uniform(1, 5, len(first))
    return Ratings(users[first], items[first], values)


@pytest.mark.parametrize("similarity", ["cosine", "msd", "pearson", "pearson_baseline"])
@pytest.mark.parametrize("user_based", [True, False])
@pytest.mark.parametrize("heavy", ["none", "some", "all"])
def test_blocks_equal_the_dense_matrix_on_sparse_random_data(similarity, user_based, heavy, monkeypatch):
    """Blocks of sums over the co-rated pairs only, or dense blocks with popular columns summed by
    dense products (all of them, or those past the cost rule)."""
    import deepzen.recommend.knn as knn

    monkeypatch.setattr(knn, "BLOCK_ELEMENTS", 5000)  # many blocks of a few rows
    monkeypatch.setattr(knn, "DENSE_SPEEDUP", {"none": 0, "some": 64, "all": 1e12}[heavy])
    model = KNN(similarity=similarity, user_based=user_based, min_support=2, device="cpu",
                dtype=torch.float64).fit(sparse_table(11, integer=False))
    np.testing.assert_allclose(all_similarities(model).numpy(), dense_similarities(model).numpy(),
                               rtol=1e-9, atol=1e-12)
    block = model.similarity_block(torch.tensor([5, 0, 7]), torch.tensor([7, 3, 5, 1]))
    np.testing.assert_allclose(block.numpy(), dense_similarities(model)[[5, 0, 7]][:, [7, 3, 5, 1]].numpy(),
                               rtol=1e-9, atol=1e-12)
    rows = model._rows_matrix()
    monkeypatch.setattr(knn, "BLOCK_ELEMENTS", 1 << 22)  # room for every heavy column
    stats = knn.SparseCoRated(rows, tuple(matrix.T.tocsr() for matrix in rows), model.dtype)
    if heavy != "some":
        assert (stats.pairs is None) == (heavy == "all")  # the test covers the mode it names


def test_heavy_columns_follow_the_cost_rule(monkeypatch):
    """A column rated by r_a rows and r_b candidates goes to the dense products when r_a * r_b *
    DENSE_SPEEDUP > n_a * n_b, and only when such columns carry most of the work."""
    import scipy.sparse

    import deepzen.recommend.knn as knn

    mask = np.zeros((8, 5))
    mask[:, 0] = 1  # 8 x 8 co-ratings: heavy at any speedup > 1
    mask[:2, 1] = 1  # 2 x 2: heavy only when 4 * speedup > 64
    mask[3, 2] = 1  # 1 x 1: light below a speedup of 64
    values = mask * np.random.default_rng(0).uniform(1, 5, mask.shape)
    rows = tuple(scipy.sparse.csr_matrix(matrix) for matrix in (values, mask, values * values))
    transposed = tuple(matrix.T.tocsr() for matrix in rows)
    reference = knn.CoRated(torch.tensor(values), torch.tensor(mask))
    for speedup, expected in [(2, [0]), (17, [0, 1]), (1, [])]:
        monkeypatch.setattr(knn, "DENSE_SPEEDUP", speedup)
        stats = knn.SparseCoRated(rows, transposed, torch.float64)
        assert stats._heavy_columns(rows[1], transposed[1]).tolist() == expected
        assert (stats.pairs is None) == bool(expected)
        for name in ("freq", "prods", "sq_a", "sq_b", "sum_a", "sum_b", "sq_diff"):
            np.testing.assert_allclose(stats.dense(getattr(stats, name)).numpy(), getattr(reference, name).numpy(),
                                       rtol=1e-12, atol=1e-12, err_msg=name)
    mask[:5, 1:4] = 1  # light columns of 5 x 5 co-ratings each, 75 in all against the heavy column's 64
    monkeypatch.setattr(knn, "DENSE_SPEEDUP", 2)
    rows = tuple(scipy.sparse.csr_matrix(mask) for _ in range(3))
    stats = knn.SparseCoRated(rows, tuple(matrix.T.tocsr() for matrix in rows), torch.float64)
    assert stats._heavy_columns(rows[1], rows[1].T.tocsr()).tolist() == [] and stats.pairs is not None


@pytest.mark.parametrize("ties", ["id", "input"])
@pytest.mark.parametrize("user_based", [True, False])
@pytest.mark.parametrize("centering", ["none", "mean", "baseline"])
def test_ties_at_the_kth_neighbour_follow_the_documented_order(ties, user_based, centering, monkeypatch):
    """Integer ratings and msd give many equal similarities; the order decides who votes."""
    import deepzen.recommend.knn as knn

    monkeypatch.setattr(knn, "BLOCK_ELEMENTS", 20000)
    monkeypatch.setattr(knn, "CHUNK_ELEMENTS", 3000)
    table = sparse_table(12, n_users=80, n_items=120, ratings=1500)
    options = dict(k=3, similarity="msd", user_based=user_based, centering=centering, min_support=1, min_k=1)
    model = KNN(**options, ties=ties, device="cpu", dtype=torch.float64).fit(table)
    reference = ReferenceKNN(table, **options, ties=ties)
    rng = np.random.default_rng(0)
    users = np.concatenate([rng.choice(np.unique(table.user), 400), [999, 999, int(table.user[0])]])
    items = np.concatenate([rng.choice(np.unique(table.item), 400), [int(table.item[0]), 998, 998]])
    expected, reasons = zip(*[reference.predict_with_reason(u, i) for u, i in zip(users.tolist(), items.tolist())])
    np.testing.assert_allclose(model.score(users, items).numpy(), expected, rtol=1e-9, atol=1e-12)
    assert model.predict_with_reasons(users, items)[1].tolist() == list(reasons)  # Surprise's was_impossible cases
    assert {"unknown user", "unknown item", "unknown user and item"} <= set(reasons)
    other = KNN(**options, ties="input" if ties == "id" else "id", device="cpu", dtype=torch.float64).fit(table)
    assert not np.allclose(other.score(users, items).numpy(), expected)  # the test does see ties


def test_pearson_is_exact_on_integer_ratings_in_float32():
    """Sums of integer ratings are exact in float32, so n * sum(ab) - sum(a) sum(b) does not cancel badly."""
    rng = np.random.default_rng(3)
    values = torch.tensor(rng.integers(1, 6, (30, 200)), dtype=torch.float32)
    mask = torch.tensor(rng.random((30, 200)) < 0.7, dtype=torch.float32)
    single = similarity_matrix("pearson", values * mask, mask)
    double = similarity_matrix("pearson", (values * mask).double(), mask.double())
    np.testing.assert_allclose(single.numpy(), double.numpy(), atol=1e-6)


def test_baseline_biases_match_loops():
    table = random_table(seed=4)
    model = KNNBaseline(device="cpu", dtype=torch.float64).fit(table)
    mu, b_user, b_item = reference_baselines(table)
    user_rows, item_rows = model.user_rows(table.user), model.item_rows(table.item)
    b_u, b_i = baseline_biases(user_rows, item_rows, torch.tensor(table.rating, dtype=torch.float64),
                               model.n_users, model.n_items)
    np.testing.assert_allclose(b_u.numpy(), [b_user[u] for u in model.user_ids.tolist()], rtol=1e-12)
    np.testing.assert_allclose(b_i.numpy(), [b_item[i] for i in model.item_ids.tolist()], rtol=1e-12)


def test_presets_set_the_centering():
    assert KNNBasic().centering == "none" and KNNWithMeans().centering == "mean"
    assert KNNBaseline(similarity="pearson_baseline").shrinkage == 100.0
    assert KNNBasic(similarity="pearson_baseline", shrinkage=0).shrinkage == 0.0


@pytest.mark.parametrize("user_based", [True, False])
def test_recommend_excludes_seen_items_and_ranks_by_score(user_based):
    table = random_table(seed=5)
    model = KNNWithMeans(k=5, user_based=user_based, device="cpu").fit(table)
    user = int(table.user[0])
    seen = set(table.item[table.user == user].tolist())
    recommended = model.recommend(user, n=100)
    unseen = [i for i in model.item_ids.tolist() if i not in seen]
    assert sorted(item for item, _ in recommended) == sorted(unseen)
    scores = [score for _, score in recommended]
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_allclose(scores, model.score(np.full(len(unseen), user), [i for i, _ in recommended]),
                               rtol=1e-6)
    assert {item for item, _ in model.recommend(user, n=100, exclude_seen=False)} == set(model.item_ids.tolist())
    assert model.recommend(user, n=2) == recommended[:2]


def test_string_ids_through_the_table_id_maps():
    table = random_table(seed=6)
    names = np.array([f"user-{u}" for u in range(int(table.user.max()) + 1)])
    titles = np.array([f"movie-{i}" for i in range(int(table.item.max()) + 1)])
    by_name = KNNBasic(device="cpu").fit(table, user_ids=names, item_ids=titles)
    by_id = KNNBasic(device="cpu").fit(table)
    user, item = int(table.user[3]), int(table.item[5])
    assert by_name.predict(names[user], titles[item]) == pytest.approx(by_id.predict(user, item))
    assert [titles[i] for i, _ in by_id.recommend(user, 3)] == [i for i, _ in by_name.recommend(names[user], 3)]
    assert by_name.predict("nobody", titles[item]) == pytest.approx(float(np.mean(table.rating)))


def test_predictions_are_clipped_to_the_rating_range():
    # user 1 (mean 4.5) and user 2 (mean 3) share item 2; user 2 rated item 1 two points above its mean
    table = Ratings([1, 1, 2, 2], [2, 3, 1, 2], [5.0, 4.0, 5.0, 1.0])
    model = KNNWithMeans(device="cpu").fit(table)
    assert float(model.score(1, 1)) == pytest.approx(4.5 + 2.0)
    assert float(model.predict(1, 1)) == 5.0


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="Unknown similarity 'euclid'"):
        KNN(similarity="euclid")
    with pytest.raises(ValueError, match="Received: k=0"):
        KNN(k=0)
    with pytest.raises(ValueError, match="centering"):
        KNN(centering="median")
    with pytest.raises(RuntimeError, match="not fitted"):
        KNN().predict([1], [2])
    model = KNN(device="cpu").fit(random_table())
    with pytest.raises(ValueError, match="unknown user 12345"):
        model.recommend(12345)
