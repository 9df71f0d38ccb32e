"""Neural CF: GMF / MLP / NeuMF shapes and wiring, negative sampling, a short fit that learns."""

import numpy as np
import pytest
import torch

from deepzen.data.ratings import Ratings
from deepzen.recommend.neural import NeuMF, NeuralCF, sample_unrated


@pytest.mark.parametrize("model,parameters", [
    ("gmf", (9 + 11) * 4 + 4 + 1),
    ("mlp", (9 + 11) * 8 + (16 * 8 + 8) + (8 * 4 + 4) + 4 + 1),
    ("neumf", (9 + 11) * 4 + (9 + 11) * 8 + (16 * 8 + 8) + (8 * 4 + 4) + (4 + 4) + 1),
])
def test_forward_shapes_and_parameter_counts(model, parameters):
    module = NeuMF(9, 11, factors=4, layers=(16, 8, 4), model=model)
    logits = module(torch.tensor([0, 8, 3]), torch.tensor([10, 0, 5]))
    assert logits.shape == (3,)
    assert sum(p.numel() for p in module.parameters()) == parameters


def test_neumf_joins_gmf_and_mlp_before_the_output_layer():
    torch.manual_seed(0)
    module = NeuMF(5, 6, factors=3, layers=(8, 4), model="neumf")
    users, items = torch.tensor([1, 4]), torch.tensor([5, 0])
    gmf = module.gmf_user(users) * module.gmf_item(items)
    mlp = torch.relu(module.tower[0](torch.cat([module.mlp_user(users), module.mlp_item(items)], 1)))
    expected = module.output(torch.cat([gmf, mlp], 1))[:, 0]
    torch.testing.assert_close(module(users, items), expected)
    unknown = module(torch.tensor([-1]), torch.tensor([2]))  # an unseen user: zero embeddings
    mlp_unknown = torch.relu(module.tower[0](torch.cat([torch.zeros(1, 4), module.mlp_item(torch.tensor([2]))], 1)))
    torch.testing.assert_close(unknown, module.output(torch.cat([torch.zeros(1, 3), mlp_unknown], 1))[:, 0])


def test_sample_unrated_never_returns_a_rated_item_and_reaches_all_others():
    rng = np.random.default_rng(0)
    rated = rng.random((6, 10)) < 0.6
    rated[:, 0] = False  # every user has an unrated item
    users, items = np.nonzero(rated)
    keys = torch.sort(torch.tensor(users * 10 + items)).values
    samples = sample_unrated(torch.arange(6), keys, 10, 400, torch.Generator().manual_seed(1))
    assert samples.shape == (6, 400)
    for user in range(6):
        assert set(samples[user].tolist()) == set(np.nonzero(~rated[user])[0].tolist())


def two_taste_table(n=40, seed=0):
    """Users 0..n/2-1 interact only with items 0..n/2-1, the others only with the others (half of each block)."""
    rng = np.random.default_rng(seed)
    users, items = np.divmod(np.arange(n * n), n)
    same_block = (users < n // 2) == (items < n // 2)
    keep = same_block & (rng.random(n * n) < 0.5)
    return Ratings(users[keep], items[keep], np.ones(keep.sum())), same_block.reshape(n, n), ~keep.reshape(n, n)


@pytest.mark.parametrize("model", ["gmf", "mlp", "neumf"])
def test_a_short_fit_lowers_the_loss_and_learns_the_tastes(model):
    table, same_block, unrated = two_taste_table()
    recommender = NeuralCF(model, factors=4, layers=(8, 4), epochs=10, batch_size=64, learning_rate=0.01,
                           device="cpu").fit(table)
    losses = recommender.history["loss"]
    assert len(losses) == 10 and losses[-1] < 0.8 * losses[0]
    users, items = np.divmod(np.arange(same_block.size), same_block.shape[1])
    scores = recommender.score(users, items).numpy().reshape(same_block.shape)  # (users, items) logits
    np.testing.assert_allclose(recommender.predict(users, items), torch.sigmoid(torch.tensor(scores)).reshape(-1),
                               rtol=1e-6)
    # each user's unrated items of its own block score above the other block's, on average
    prefers_own_block = [scores[u, unrated[u] & same_block[u]].mean() > scores[u, ~same_block[u]].mean()
                         for u in range(len(scores))]
    assert np.mean(prefers_own_block) >= 0.9
    top = [item for item, _ in recommender.recommend(3, n=5)]
    assert len(top) == 5 and not set(top) & set(table.item[table.user == 3].tolist())


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="Received: model='deep'"):
        NeuralCF("deep")
    with pytest.raises(ValueError, match="NeuMF expects layers .* Received: layers=\\(7, 4\\)"):
        NeuMF(3, 3, layers=(7, 4))
    with pytest.raises(ValueError, match="NeuralCF expects layers .* Received: layers=\\(8, 0\\)"):
        NeuralCF(layers=(8, 0))
    with pytest.raises(ValueError, match="Received: negatives=0"):
        NeuralCF(negatives=0)
