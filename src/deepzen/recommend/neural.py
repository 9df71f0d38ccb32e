"""Neural collaborative filtering (He et al., 2017): GMF, MLP and their fusion NeuMF.

Implicit feedback: every rating is an interaction (label 1); each epoch pairs each interaction
with ``negatives`` items the user never rated (label 0), drawn afresh, and trains the binary
cross-entropy with ``deepzen.Model.fit``. Scores are logits; ``predict`` returns probabilities.

- GMF: ``h . (p_u * q_i)`` -- matrix factorization with a learned output weighting;
- MLP: a ReLU tower over ``[p_u, q_i]`` (layers (64, 32, 16, 8): 32-d embeddings each);
- NeuMF: both, with separate embeddings, joined before the output layer.

The paper's pre-training of NeuMF from trained GMF and MLP models is not done here.

Each epoch is one ``Model.fit`` call (``initial_epoch=epoch``): its negatives are drawn afresh, and
``fit`` takes fixed arrays; the training step itself is fit's engine.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from deepzen.recommend.base import Recommender, one_cpu_thread

NCF_MODELS = ("gmf", "mlp", "neumf")


def _check_layers(owner: str, layers: Sequence[int]) -> None:
    if len(layers) < 1 or layers[0] % 2 or any(not isinstance(size, int) or size < 1 for size in layers):
        raise ValueError(f"{owner} expects layers of positive integer sizes, the first even (user + item "
                         f"embedding). Received: layers={tuple(layers)}")


def _embed(table: nn.Embedding, rows: torch.Tensor) -> torch.Tensor:
    """``table(rows)``, with a zero vector for the row -1 (an id not seen in training)."""
    return torch.where((rows >= 0)[:, None], table(rows.clamp(min=0)), 0)


class NeuMF(nn.Module):
    """GMF, MLP or NeuMF scoring of (user, item) rows.

    Args:
        n_users, n_items: numbers of rows.
        factors: GMF embedding size (the "predictive factors" of the paper).
        layers: MLP sizes; the first is the concatenated user + item embedding size (even).
        model: "gmf", "mlp" or "neumf".

    Call arguments:
        users, items: ``(N,)`` int64 rows; -1 (unknown) gets zero embeddings. Returns ``(N,)`` logits.
    """

    takes_integer_inputs = True  # deepzen.Model keeps the id inputs as integers

    def __init__(self, n_users: int, n_items: int, factors: int = 8, layers: Sequence[int] = (64, 32, 16, 8),
                 model: str = "neumf"):
        super().__init__()
        if model not in NCF_MODELS:
            raise ValueError(f"NeuMF expects model in {NCF_MODELS}. Received: model={model!r}")
        _check_layers("NeuMF", layers)
        self.use_gmf, self.use_mlp = model in ("gmf", "neumf"), model in ("mlp", "neumf")
        joined = 0
        if self.use_gmf:
            self.gmf_user, self.gmf_item = nn.Embedding(n_users, factors), nn.Embedding(n_items, factors)
            joined += factors
        if self.use_mlp:
            self.mlp_user = nn.Embedding(n_users, layers[0] // 2)
            self.mlp_item = nn.Embedding(n_items, layers[0] // 2)
            tower = []
            for size_in, size_out in zip(layers[:-1], layers[1:]):
                tower += [nn.Linear(size_in, size_out), nn.ReLU()]
            self.tower = nn.Sequential(*tower)
            joined += layers[-1]
        self.output = nn.Linear(joined, 1)
        for module in self.modules():  # the paper's initialisation
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.01)
            elif isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.use_gmf:
            parts.append(_embed(self.gmf_user, users) * _embed(self.gmf_item, items))  # (N, factors)
        if self.use_mlp:
            joined = torch.cat([_embed(self.mlp_user, users), _embed(self.mlp_item, items)], -1)  # (N, layers[0])
            parts.append(self.tower(joined))  # (N, layers[-1])
        return self.output(torch.cat(parts, -1)).squeeze(-1)  # (N,)

    def item_embeddings(self) -> torch.Tensor:
        """``(n_items, d)``: the item's GMF and MLP embeddings side by side."""
        tables = ([self.gmf_item.weight] if self.use_gmf else []) + ([self.mlp_item.weight] if self.use_mlp else [])
        return torch.cat(tables, 1)


def sample_unrated(users: torch.Tensor, rated_keys: torch.Tensor, n_items: int, count: int,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``count`` random items per user among those the user has not rated (with replacement).

    Args:
        users: ``(U,)`` user rows.
        rated_keys: sorted ``user * n_items + item`` of the rated pairs.
        n_items: item rows are ``0..n_items-1``; every user must have an unrated item.

    Returns:
        ``(U, count)`` item rows.
    """
    items = torch.randint(n_items, (len(users), count), generator=generator, device=users.device)
    while True:  # redraw the rated ones; each round keeps about the rated share of the clashes
        keys = users[:, None] * n_items + items
        position = torch.searchsorted(rated_keys, keys).clamp(max=len(rated_keys) - 1)
        clash = rated_keys[position] == keys
        clashes = int(clash.sum())  # host sync: once per round, a few rounds per call
        if clashes == 0:
            return items
        items[clash] = torch.randint(n_items, (clashes,), generator=generator, device=users.device)


class NeuralCF(Recommender):
    """GMF / MLP / NeuMF recommender trained on implicit feedback (see the module docstring).

    Args:
        model: "neumf", "gmf" or "mlp".
        factors: GMF embedding size.
        layers: MLP layer sizes (the first = user + item embedding sizes).
        negatives: unrated items sampled per interaction and epoch.
        epochs: training epochs.
        batch_size: interactions per step.
        learning_rate: Adam's step size.
        seed: ``fit`` calls ``deepzen.seed(seed)`` (initialisation, shuffles, negatives).
        verbose: print one line per epoch (time and loss) when > 0.
        device: where to train (default: deepzen's default device).

    ``score`` gives logits and ``predict`` the probability that the user interacts with the item;
    an unknown user or item is scored with a zero embedding.
    ``history["loss"]`` holds each epoch's training loss.
    """

    def __init__(self, model: str = "neumf", factors: int = 8, layers: Sequence[int] = (64, 32, 16, 8),
                 negatives: int = 4, epochs: int = 20, batch_size: int = 256, learning_rate: float = 1e-3,
                 seed: int = 0, verbose: int = 0, device: Any = None):
        super().__init__(device)
        if model not in NCF_MODELS:
            raise ValueError(f"NeuralCF expects model in {NCF_MODELS}. Received: model={model!r}")
        for name, value in (("factors", factors), ("negatives", negatives), ("epochs", epochs),
                            ("batch_size", batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"NeuralCF expects {name} to be a positive integer. Received: {name}={value!r}")
        _check_layers("NeuralCF", layers)
        self.model_name, self.factors, self.layers = model, factors, tuple(layers)
        self.negatives, self.epochs, self.batch_size = negatives, epochs, batch_size
        self.learning_rate, self.seed, self.verbose = learning_rate, seed, verbose
        self.model = None
        self.history: dict[str, list[float]] = {}

    def get_config(self) -> dict[str, Any]:
        return {"model": self.model_name, "factors": self.factors, "layers": list(self.layers),
                "negatives": self.negatives, "epochs": self.epochs, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate, "seed": self.seed, "verbose": self.verbose}

    def _state(self) -> dict[str, torch.Tensor]:
        return dict(self.model.module.state_dict())

    def _load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        import deepzen

        network = NeuMF(self.n_users, self.n_items, self.factors, self.layers, self.model_name).to(self.device)
        network.load_state_dict(tensors)
        self.model = deepzen.Model(network)

    def _fit(self, user, item, rating):
        import deepzen
        from deepzen.losses import BinaryCrossentropy

        deepzen.seed(self.seed)
        complete = torch.nonzero(torch.bincount(user, minlength=self.n_users) >= self.n_items).flatten().tolist()
        if complete:
            raise ValueError(f"NeuralCF samples unrated items as negatives, so each user needs one. Received: "
                             f"user {self.user_ids[complete].tolist()[0]!r} rated all {self.n_items} items")
        self.model = deepzen.Model(NeuMF(self.n_users, self.n_items, self.factors, self.layers, self.model_name))
        self.model.compile(optimizer=deepzen.optimizers.Adam(learning_rate=self.learning_rate),
                           loss=BinaryCrossentropy(from_logits=True), device=self.device)
        rated_keys = torch.sort(user * self.n_items + item).values
        users = user.repeat(self.negatives + 1)  # (N (1 + negatives),): the positives, then negatives
        labels = torch.cat([torch.ones_like(rating), torch.zeros(len(user) * self.negatives, device=self.device)])
        self.history = {"loss": []}
        with one_cpu_thread(self.device):  # small batches of small layers
            for epoch in range(self.epochs):
                start = time.perf_counter()
                negatives = sample_unrated(user, rated_keys, self.n_items, self.negatives)  # (N, negatives)
                items = torch.cat([item, negatives.T.reshape(-1)])  # column j of negatives follows user's order
                history = self.model.fit((users, items), labels, batch_size=self.batch_size, epochs=epoch + 1,
                                         initial_epoch=epoch, verbose=0)
                self.history["loss"] += history.history["loss"]
                if self.verbose:
                    print(f"Epoch {epoch + 1}/{self.epochs} - {time.perf_counter() - start:.1f}s - "
                          f"loss: {self.history['loss'][-1]:.4f}", flush=True)

    @torch.no_grad()
    def _estimate(self, user, item):
        self.model.module.eval()
        return self.model.module(user, item)

    def predict(self, users: Any, items: Any) -> np.ndarray:
        """The probability that each user interacts with each item (float32, broadcast shape)."""
        return torch.sigmoid(self.score(users, items)).float().cpu().numpy()

    @torch.no_grad()
    def _item_similarity(self, item):
        """Cosine similarity of the items' embeddings."""
        embeddings = nn.functional.normalize(self.model.module.item_embeddings(), dim=1)  # (n_items, d)
        return embeddings @ embeddings[item]
