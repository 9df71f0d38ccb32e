"""Biased matrix factorization: the vectorised SGD step, learning a low-rank matrix, fallbacks."""

import numpy as np
import pytest
import torch

from deepzen.data.ratings import Ratings
from deepzen.recommend.factorization import BiasedMF, MatrixFactorization, sgd_step


def low_rank_table(seed=0, n_users=60, n_items=50, rank=3, observed=0.6):
    """Ratings of mu + b_u + b_i + P Q^T (rank 3), a random share observed; returns (train, test)."""
    rng = np.random.default_rng(seed)
    full = (3.5 + rng.normal(0, 0.3, (n_users, 1)) + rng.normal(0, 0.3, (1, n_items))
            + rng.normal(0, 0.6, (n_users, rank)) @ rng.normal(0, 0.6, (rank, n_items)))
    users, items = np.divmod(np.arange(n_users * n_items), n_items)
    table = Ratings(users, items, full[users, items])
    train = rng.random(len(table)) < observed
    return table.take(train), table.take(~train)


def test_sgd_step_equals_per_rating_updates_when_rows_are_distinct():
    """With distinct users and items in a batch, one vectorised step = scikit-surprise's per-rating loop."""
    generator = torch.Generator().manual_seed(0)
    module = BiasedMF(6, 7, factors=3, global_mean=3.0, generator=generator).double()
    with torch.no_grad():
        module.user_bias.normal_(0, 0.1, generator=generator)
        module.item_bias.normal_(0, 0.1, generator=generator)
    p, q = module.user_factors.detach().numpy().copy(), module.item_factors.detach().numpy().copy()
    b_u, b_i = module.user_bias.detach().numpy().copy(), module.item_bias.detach().numpy().copy()
    users, items = np.array([4, 0, 2]), np.array([1, 6, 3])
    ratings = np.array([5.0, 1.0, 3.5])
    lr, reg = 0.05, 0.1
    for u, i, r in zip(users, items, ratings):  # SVD.sgd of scikit-surprise, one rating at a time
        error = r - (3.0 + b_u[u] + b_i[i] + p[u] @ q[i])
        b_u[u] += lr * (error - reg * b_u[u])
        b_i[i] += lr * (error - reg * b_i[i])
        p[u], q[i] = p[u] + lr * (error * q[i] - reg * p[u]), q[i] + lr * (error * p[u] - reg * q[i])
    user_table, item_table = module.tables()
    errors = sgd_step(user_table, item_table, torch.tensor(users), torch.tensor(items), torch.tensor(ratings) - 3.0,
                      lr, reg)
    module.load_tables(user_table, item_table)
    assert errors.shape == (3,)
    np.testing.assert_allclose(module.user_factors.detach().numpy(), p, rtol=1e-12)
    np.testing.assert_allclose(module.item_factors.detach().numpy(), q, rtol=1e-12)
    np.testing.assert_allclose(module.user_bias.detach().numpy(), b_u, rtol=1e-12)
    np.testing.assert_allclose(module.item_bias.detach().numpy(), b_i, rtol=1e-12)


def test_tables_hold_the_biases_as_factor_columns():
    module = BiasedMF(4, 5, factors=2, global_mean=3.0, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        module.user_bias.normal_()
        module.item_bias.normal_()
    users, items = module.tables()
    assert users.shape == (4, 4) and items.shape == (5, 4)
    np.testing.assert_allclose((3.0 + users @ items.T).numpy(), module(*torch.meshgrid(
        torch.arange(4), torch.arange(5), indexing="ij")).detach().numpy(), rtol=1e-6)
    copy = BiasedMF(4, 5, factors=2)
    copy.load_tables(users, items)
    for name, value in module.named_parameters():
        torch.testing.assert_close(dict(copy.named_parameters())[name], value)


def test_forward_is_the_biased_dot_product():
    module = BiasedMF(4, 5, factors=2, global_mean=3.0, generator=torch.Generator().manual_seed(1))
    users, items = torch.tensor([0, 3, 3]), torch.tensor([4, 0, 2])
    with torch.no_grad():
        expected = [3.0 + float(module.user_bias[u] + module.item_bias[i]
                                + module.user_factors[u] @ module.item_factors[i]) for u, i in zip(users, items)]
    np.testing.assert_allclose(module(users, items).detach().numpy(), expected, rtol=1e-6)


def test_learns_a_low_rank_matrix():
    train, test = low_rank_table()
    model = MatrixFactorization(factors=3, epochs=80, learning_rate=0.05, lr_decay=1.0, regularization=0.005,
                                batch_size=128, device="cpu").fit(train)
    error = model.predict(test.user, test.item) - test.rating
    baseline = test.rating - train.rating.mean()  # predicting the global mean
    assert np.sqrt(np.mean(error ** 2)) < 0.1 * np.sqrt(np.mean(baseline ** 2))  # measured: 0.044
    losses = model.history["loss"]
    assert len(losses) == 80 and losses[-1] < 0.01 * losses[0]


def test_seed_makes_fits_repeatable_and_the_thread_count_is_restored():
    train, _ = low_rank_table(seed=1)
    threads = torch.get_num_threads()
    first, second = (MatrixFactorization(factors=2, epochs=3, seed=5, device="cpu").fit(train) for _ in range(2))
    assert first.history == second.history
    assert torch.get_num_threads() == threads  # the SGD loop runs on one CPU thread, then restores


def test_unknown_users_and_items_fall_back_to_the_known_biases():
    train, _ = low_rank_table(seed=2)
    model = MatrixFactorization(factors=2, epochs=2, device="cpu").fit(train)
    mf = model.module
    mu, b_u, b_i = float(mf.global_mean), float(mf.user_bias.detach()[0]), float(mf.item_bias.detach()[0])
    scores = model.score([-5, 0, -5], [0, -7, -7]).numpy()  # ids -5 / -7 were never seen
    np.testing.assert_allclose(scores, [mu + b_i, mu + b_u, mu], rtol=1e-6)


def test_recommend_excludes_seen_items_and_similar_items_uses_factor_cosines():
    train, _ = low_rank_table(seed=3)
    model = MatrixFactorization(factors=3, epochs=5, device="cpu").fit(train)
    seen = set(model.seen_items(7).tolist())
    recommended = [item for item, _ in model.recommend(7, n=model.n_items)]
    assert set(recommended) == set(model.item_ids.tolist()) - seen
    factors = model.module.item_factors.detach().numpy()
    cosine = factors @ factors[4] / np.linalg.norm(factors, axis=1) / np.linalg.norm(factors[4])
    cosine[4] = -np.inf
    similar = model.similar_items(4, n=3)
    assert [item for item, _ in similar] == np.argsort(-cosine)[:3].tolist()  # item ids are the rows here
    assert [score for _, score in similar] == pytest.approx(np.sort(cosine)[::-1][:3], rel=1e-5)


def test_default_batch_size_follows_the_busiest_row_and_divergence_is_reported():
    train, _ = low_rank_table(seed=4)  # 60 users x 50 items, about 60% observed
    users, items = torch.tensor(train.user), torch.tensor(train.item)
    busiest = max(np.bincount(train.user).max(), np.bincount(train.item).max())
    assert MatrixFactorization.default_batch_size(users, items) == 16 * len(train) // busiest
    with pytest.raises(FloatingPointError, match="Lower learning_rate"):
        MatrixFactorization(factors=2, epochs=3, learning_rate=50.0, device="cpu").fit(train)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="Received: factors=0"):
        MatrixFactorization(factors=0)
    with pytest.raises(ValueError, match="Received: learning_rate=-1"):
        MatrixFactorization(learning_rate=-1)
