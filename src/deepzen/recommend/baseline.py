"""The baseline predictor ``b(u, i) = mu + b_u + b_i``: global mean plus a user and an item bias.

scikit-surprise's ``BaselineOnly`` (Koren, 2010, section 2.1), with its two ways of fitting the biases
and its defaults:

- ``"als"`` (alternating least squares, 10 epochs, ``reg_user=15``, ``reg_item=10``): each epoch sets
  ``b_i = sum_u (r - mu - b_u) / (reg_item + n_i)`` for every item, then
  ``b_u = sum_i (r - mu - b_i) / (reg_user + n_u)`` for every user. Vectorised: one ``index_add`` each.
- ``"sgd"`` (20 epochs, ``learning_rate=0.005``, ``reg=0.02``): for each rating in Surprise's order
  (user by user, users in the order they first appear in the training table, each user's ratings in
  the table's order), ``e = r - (mu + b_u + b_i)``, ``b_u += lr (e - reg b_u)``, ``b_i += lr (e - reg b_i)``.
  With ``batch_size=1`` (the default) that is Surprise's update, rating after rating (a Python loop:
  about 1 s per million ratings and epoch); a larger batch updates the biases of a whole batch of
  ratings at once from the same old values (vectorised, no longer Surprise's numbers).

A user or an item not seen by ``fit`` has bias 0, so an unknown pair is predicted ``mu``.

Neither way is a ``Model.fit`` loop: ALS is closed-form updates without gradients, and the SGD
reproduces Surprise's rating-by-rating order and numbers, which fit's shuffled minibatches would not.
"""

from __future__ import annotations

from typing import Any

import torch

from deepzen.recommend.base import Recommender

METHODS = ("als", "sgd")


def baseline_biases(user: torch.Tensor, item: torch.Tensor, rating: torch.Tensor, n_users: int, n_items: int, *,
                    epochs: int = 10, reg_user: float = 15.0, reg_item: float = 10.0):
    """Biases of the baseline ``b(u, i) = mu + b_u + b_i`` by alternating least squares (see the module).

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


def sgd_baseline_biases(user: torch.Tensor, item: torch.Tensor, rating: torch.Tensor, n_users: int, n_items: int, *,
                        epochs: int = 20, learning_rate: float = 0.005, reg: float = 0.02, batch_size: int = 1):
    """Biases of the baseline by stochastic gradient descent over the ratings in their order (see the module).

    Returns:
        ``(b_user (n_users,), b_item (n_items,))``.
    """
    mu = rating.mean()
    if batch_size == 1:  # Surprise's sequential update, on Python floats (a torch op per rating costs 20x)
        b_user, b_item = [0.0] * n_users, [0.0] * n_items
        triples = list(zip(user.tolist(), item.tolist(), (rating - mu).tolist()))  # host sync: once
        for _ in range(epochs):
            for u, i, centred in triples:
                error = centred - b_user[u] - b_item[i]
                b_user[u] += learning_rate * (error - reg * b_user[u])
                b_item[i] += learning_rate * (error - reg * b_item[i])
        return rating.new_tensor(b_user), rating.new_tensor(b_item)
    b_user, b_item = rating.new_zeros(n_users), rating.new_zeros(n_items)
    for _ in range(epochs):
        for start in range(0, len(rating), batch_size):
            u, i = user[start:start + batch_size], item[start:start + batch_size]
            error = rating[start:start + batch_size] - mu - b_user[u] - b_item[i]  # (B,) from the old biases
            step_user = (error - reg * b_user[u]) * learning_rate
            step_item = (error - reg * b_item[i]) * learning_rate
            b_user.index_add_(0, u, step_user)
            b_item.index_add_(0, i, step_item)
    return b_user, b_item


class BaselineOnly(Recommender):
    """Predicts ``mu + b_u + b_i``, with the biases fitted by ALS or SGD as scikit-surprise's ``BaselineOnly``.

    Args:
        method: "als" (default) or "sgd".
        epochs: default 10 for ALS, 20 for SGD (Surprise's).
        reg_user, reg_item: ALS regularisation (15 and 10).
        learning_rate, reg, batch_size: SGD step, regularisation and ratings per update (0.005, 0.02, 1).
        device: where the biases live.

    Example:
        >>> from deepzen.data.ratings import Ratings
        >>> table = Ratings(user=[1, 1, 2], item=[7, 8, 7], rating=[5, 3, 4])
        >>> model = BaselineOnly(reg_user=0, reg_item=0, epochs=1).fit(table)
        >>> round(float(model.predict(1, 7)), 3)  # mu 4 + b_1 0.25 + b_7 0.5
        4.75
        >>> float(model.predict(99, 99))  # unknown user and item: the global mean
        4.0
    """

    def __init__(self, method: str = "als", *, epochs: int | None = None, reg_user: float = 15.0,
                 reg_item: float = 10.0, learning_rate: float = 0.005, reg: float = 0.02, batch_size: int = 1,
                 device: Any = None):
        super().__init__(device)
        if method not in METHODS:
            raise ValueError(f"BaselineOnly expects method in {METHODS}. Received: method={method!r}")
        if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
            raise ValueError(f"BaselineOnly expects epochs to be a positive integer. Received: epochs={epochs!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"BaselineOnly expects batch_size to be a positive integer. Received: "
                             f"batch_size={batch_size!r}")
        self.method, self.batch_size = method, batch_size
        self.epochs = epochs if epochs is not None else (10 if method == "als" else 20)
        self.reg_user, self.reg_item, self.learning_rate, self.reg = reg_user, reg_item, learning_rate, reg

    def get_config(self) -> dict[str, Any]:
        return {"method": self.method, "epochs": self.epochs, "reg_user": self.reg_user, "reg_item": self.reg_item,
                "learning_rate": self.learning_rate, "reg": self.reg, "batch_size": self.batch_size}

    def _state(self) -> dict[str, torch.Tensor]:
        return {"global_mean": self.global_mean, "b_user": self.b_user, "b_item": self.b_item}

    def _load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.global_mean, self.b_user, self.b_item = tensors["global_mean"], tensors["b_user"], tensors["b_item"]

    def _fit(self, user, item, rating):
        rating = rating.double()  # biases are sums over many ratings
        self.global_mean = rating.mean()
        if self.method == "als":
            self.b_user, self.b_item = baseline_biases(user, item, rating, self.n_users, self.n_items,
                                                       epochs=self.epochs, reg_user=self.reg_user,
                                                       reg_item=self.reg_item)
        else:
            first_seen = torch.full((self.n_users,), len(user), dtype=torch.long, device=user.device)
            first_seen.scatter_reduce_(0, user, torch.arange(len(user), device=user.device), "amin")
            order = torch.argsort(first_seen[user], stable=True)  # Surprise's trainset.all_ratings() order
            user, item, rating = user[order], item[order], rating[order]
            self.b_user, self.b_item = sgd_baseline_biases(user, item, rating, self.n_users, self.n_items,
                                                           epochs=self.epochs, learning_rate=self.learning_rate,
                                                           reg=self.reg, batch_size=self.batch_size)

    def _estimate(self, user, item):
        b_user = torch.where(user >= 0, self.b_user[user.clamp(min=0)], 0)
        b_item = torch.where(item >= 0, self.b_item[item.clamp(min=0)], 0)
        return self.global_mean + b_user + b_item

    def _item_similarity(self, item):
        raise NotImplementedError("BaselineOnly has no item similarities (its items differ only by a bias)")
