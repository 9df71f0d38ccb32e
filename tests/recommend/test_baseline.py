"""BaselineOnly against loops of scikit-surprise's formulas (and against Surprise itself when it is installed)."""

import numpy as np
import pytest
import torch

from deepzen.data.ratings import Ratings
from deepzen.recommend import BaselineOnly
from deepzen.recommend.base import Recommender


def table(seed=0, n=400):
    rng = np.random.default_rng(seed)
    pairs = np.unique(np.stack([rng.integers(0, 40, n), rng.integers(0, 60, n)], 1), axis=0)
    pairs = pairs[rng.permutation(len(pairs))]
    return Ratings(pairs[:, 0] + 10, pairs[:, 1] + 500, rng.integers(1, 6, len(pairs)).astype(float))


def loop_als(t, epochs=10, reg_user=15.0, reg_item=10.0):
    mu = float(np.mean(t.rating.astype(float)))
    b_user, b_item = {u: 0.0 for u in t.user.tolist()}, {i: 0.0 for i in t.item.tolist()}
    rows = list(zip(t.user.tolist(), t.item.tolist(), t.rating.astype(float).tolist()))
    for _ in range(epochs):
        for i in b_item:
            pairs = [(u, r) for u, i2, r in rows if i2 == i]
            b_item[i] = sum(r - mu - b_user[u] for u, r in pairs) / (reg_item + len(pairs))
        for u in b_user:
            pairs = [(i, r) for u2, i, r in rows if u2 == u]
            b_user[u] = sum(r - mu - b_item[i] for i, r in pairs) / (reg_user + len(pairs))
    return mu, b_user, b_item


def loop_sgd(t, epochs=20, lr=0.005, reg=0.02):
    mu = float(np.mean(t.rating.astype(float)))
    b_user, b_item = {u: 0.0 for u in t.user.tolist()}, {i: 0.0 for i in t.item.tolist()}
    first_seen = {}
    for row, u in enumerate(t.user.tolist()):
        first_seen.setdefault(u, row)
    order = sorted(range(len(t)), key=lambda row: (first_seen[t.user[row]], row))  # user by user, as Surprise
    for _ in range(epochs):
        for u, i, r in zip(t.user[order].tolist(), t.item[order].tolist(), t.rating[order].astype(float).tolist()):
            error = r - (mu + b_user[u] + b_item[i])
            b_user[u] += lr * (error - reg * b_user[u])
            b_item[i] += lr * (error - reg * b_item[i])
    return mu, b_user, b_item


@pytest.mark.parametrize("method,loop", [("als", loop_als), ("sgd", loop_sgd)])
def test_predictions_match_the_loops(method, loop):
    t = table()
    model = BaselineOnly(method, device="cpu").fit(t)
    mu, b_user, b_item = loop(t)
    users = np.array([10, 11, 25, 999, 10])  # 999: unknown user -> mu + b_i
    items = np.array([500, 530, 559, 500, 12345])  # 12345: unknown item -> mu + b_u
    expected = [mu + b_user.get(u, 0.0) + b_item.get(i, 0.0) for u, i in zip(users.tolist(), items.tolist())]
    np.testing.assert_allclose(model.score(users, items).numpy(), expected, rtol=1e-12)
    _, reasons = model.predict_with_reasons(users, items)
    assert reasons.tolist() == ["", "", "", "unknown user", "unknown item"]


def test_sgd_batches_are_vectorised_and_close_to_the_sequential_update():
    t = table(1)
    exact = BaselineOnly("sgd", device="cpu").fit(t)
    batched = BaselineOnly("sgd", batch_size=64, device="cpu").fit(t)
    users, items = t.user[:50], t.item[:50]
    np.testing.assert_allclose(batched.score(users, items).numpy(), exact.score(users, items).numpy(), atol=0.05)


def test_save_load_and_errors(tmp_path):
    model = BaselineOnly(device="cpu").fit(table())
    model.save(tmp_path / "baseline.safetensors")
    loaded = Recommender.load(tmp_path / "baseline.safetensors", device="cpu")
    assert isinstance(loaded, BaselineOnly)
    np.testing.assert_array_equal(loaded.predict([10, 11], [500, 501]), model.predict([10, 11], [500, 501]))
    with pytest.raises(ValueError, match="Received: method='svd'"):
        BaselineOnly("svd")
    with pytest.raises(ValueError, match="Received: epochs=0"):
        BaselineOnly(epochs=0)


def surprise_trainset(surprise, t, folder):
    """Surprise's trainset of ``t``, its ratings in the table's order (raw ids are strings)."""
    path = folder / "ratings.csv"
    path.write_text("".join(f"{u},{i},{r}\n" for u, i, r in zip(t.user.tolist(), t.item.tolist(), t.rating.tolist())))
    reader = surprise.Reader(line_format="user item rating", sep=",", rating_scale=(1, 5))
    return surprise.Dataset.load_from_file(str(path), reader).build_full_trainset()


@pytest.mark.parametrize("method", ["als", "sgd"])
def test_same_predictions_as_surprise(method, tmp_path):
    surprise = pytest.importorskip("surprise")
    t = table(2)
    trainset = surprise_trainset(surprise, t, tmp_path)
    theirs = surprise.BaselineOnly(bsl_options={"method": method}, verbose=False).fit(trainset)
    ours = BaselineOnly(method, device="cpu").fit(t)
    users, items = list(t.user[:30]) + [999], list(t.item[:30]) + [500]
    expected = [theirs.predict(str(u), str(i), clip=False).est for u, i in zip(users, items)]
    np.testing.assert_allclose(ours.score(users, items).numpy(), expected, rtol=1e-9)
