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
    def __init__(self, table, *, k, similarity, user_based, centering, min_support, min_k):
        self.k, self.centering, self.min_k, self.user_based = k, centering, min_k, user_based
        self.shrinkage = 100.0 if similarity == "pearson_baseline" else 0.0
        self.mu, b_user, b_item = reference_baselines(table)
        xs, ys = (table.user, table.item) if user_based else (table.item, table.user)
        self.b_x, self.b_y = (b_user, b_item) if user_based else (b_item, b_user)
        self.rows = {}  # x -> {y: rating}
        for x, y, r in zip(xs.tolist(), ys.tolist(), table.rating.astype(np.float64).tolist()):
            self.rows.setdefault(x, {})[y] = r
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
        x, y = (user, item) if self.user_based else (item, user)
        if x not in self.rows:
            return self.mu + (self.b_y.get(y, 0.0) if self.centering == "baseline" else 0.0)
        prior = self.baseline(x, y) if self.centering == "baseline" else self.mean[x]
        raters = [x2 for x2 in self.rows if y in self.rows[x2]]
        ranked = sorted(((self.sim(x, x2), x2) for x2 in raters), key=lambda t: -t[0])
        if len(ranked) > self.k and ranked[self.k - 1][0] > 0:
            assert ranked[self.k - 1][0] != ranked[self.k][0], "tie at the k-th neighbour: change the test data"
        votes = [(s, self.rows[x2][y] - self.offset(x2, y)) for s, x2 in ranked[:self.k] if s > 0]
        if len(votes) < self.min_k:
            return prior
        deviation = sum(s * r for s, r in votes) / sum(s for s, _ in votes)
        return deviation if self.centering == "none" else prior + deviation


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


@pytest.mark.parametrize("similarity", ["cosine", "msd", "pearson", "pearson_baseline"])
def test_similarity_matrix_matches_brute_force_and_item_similarity_of_user_based(similarity):
    table = random_table(seed=2)
    for user_based in (True, False):
        model = KNN(similarity=similarity, user_based=user_based, min_support=2, device="cpu",
                    dtype=torch.float64).fit(table)
        reference = ReferenceKNN(table, k=40, similarity=similarity, user_based=user_based, centering="none",
                                 min_support=2, min_k=1)
        rows = model.user_ids if user_based else model.item_ids
        expected = np.array([[reference.sim(a, b) for b in rows.tolist()] for a in rows.tolist()])
        np.testing.assert_allclose(model.sim.numpy(), expected, rtol=1e-9, atol=1e-12)
    # a user-based model computes item-item similarities on demand: they equal the item-based model's
    options = dict(similarity=similarity, min_support=2, device="cpu", dtype=torch.float64)
    user_model = KNN(**options).fit(table)
    item_model = KNN(user_based=False, **options).fit(table)
    for row in range(item_model.n_items):  # the self-similarity (excluded from similar_items) may differ
        on_demand, stored = user_model._item_similarity(row).numpy(), item_model.sim[row].numpy()
        np.testing.assert_allclose(np.delete(on_demand, row), np.delete(stored, row), atol=1e-12)
    item = int(table.item[0])
    similar = item_model.similar_items(item, 4)
    row = int(item_model.item_rows([item])[0])
    others = np.delete(item_model.sim[row].numpy(), row)
    assert [score for _, score in similar] == pytest.approx(sorted(others, reverse=True)[:4])
    assert item not in [other for other, _ in similar]


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
