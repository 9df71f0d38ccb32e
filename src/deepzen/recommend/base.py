"""What every recommender shares: ids <-> row indices, seen items, ``recommend`` and ``similar_items``.

Ids. ``fit(ratings)`` learns the user and item ids found in ``ratings.user`` / ``ratings.item`` and
every other method takes and returns those same ids: the published 1-based ids for MovieLens
(:func:`deepzen.data.ratings.load_movielens_100k`), the 0..K-1 indices for a table read by
:func:`deepzen.data.ratings.load_ratings_table` -- or that file's own ids (strings or numbers) when
you pass the id arrays it returned: ``fit(ratings, user_ids=user_ids, item_ids=item_ids)``.
Internally users and items are rows ``0..n_users-1`` / ``0..n_items-1`` in sorted id order.

Subclasses implement ``_fit`` and ``_estimate`` (and ``_item_similarity`` for ``similar_items``), and
``get_config``, ``_state`` and ``_load_state`` for ``save`` / ``load``.

Files. ``model.save(path)`` writes a fitted recommender to one safetensors file (atomically, with a
checksum): its tensors, and as JSON its class, constructor arguments, id maps and rating range;
``Recommender.load(path)`` rebuilds it without pickle and predicts exactly as before.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import numpy as np
import torch

from deepzen._registry import Registry
from deepzen.data.ratings import Ratings, check_ratings

UNKNOWN = -1  # the row index given to ids that were not in the training ratings
# Why a prediction fell back (Surprise's was_impossible, with the reason): code -> text; 0 = no fallback.
REASONS = ("", "unknown user", "unknown item", "unknown user and item", "not enough neighbours")
NOT_ENOUGH_NEIGHBOURS = 4
RECOMMENDERS: Registry[type] = Registry("recommender", overwrite=True)  # every subclass, by class name


@contextlib.contextmanager
def one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Runs torch's CPU ops on one thread inside the block (restored after).

    For training loops of many small steps (a batch of embeddings): a second intra-op thread only
    adds synchronisation, and on a busy machine waiting for it dominates -- three SGD epochs of
    MatrixFactorization on ml-100k took 1.3 s with one thread and 18-87 s with two on a shared
    2-core machine.
    """
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Recommender:
    """Base class: id maps and the user-facing verbs; subclasses supply the model.

    Args:
        device: where the model's tensors live (default: deepzen's default device).
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        RECOMMENDERS.register(cls.__name__, cls)  # so that load() can rebuild any recommender by its name

    def __init__(self, device: Any = None):
        from deepzen.runtime import default_device

        self.device = torch.device(device) if device is not None else default_device()
        self.user_ids: np.ndarray | None = None
        self.item_ids: np.ndarray | None = None

    # -- fitting -------------------------------------------------------------------------------------
    def fit(self, ratings: Ratings, *, user_ids: Any = None, item_ids: Any = None,
            rating_scale: tuple[float, float] | None = None, duplicates: str = "refuse") -> "Recommender":
        """Learns from ``ratings``.

        Args:
            ratings: the training ratings.
            user_ids: optional ``(K,)`` array giving the id of each value of ``ratings.user``
                (``load_ratings_table``'s ``user_ids``); then all methods speak those ids.
            item_ids: the same for items.
            rating_scale: ``(low, high)``: ratings outside are refused (NaN always is).
            duplicates: several rows for one (user, item) pair: ``"refuse"`` (default), ``"average"``
                or ``"keep"`` (see :func:`deepzen.data.ratings.check_ratings`; kNN models accept
                ``"keep"`` only as scikit-surprise does: every row is a neighbour's vote).

        Returns:
            ``self``.

        Raises:
            ValueError: an empty table, NaN ratings, ratings outside ``rating_scale``, duplicates
                with ``duplicates="refuse"``; the message names the rows.
        """
        try:
            ratings = check_ratings(ratings, rating_scale=rating_scale, duplicates=duplicates)
        except ValueError as error:
            raise ValueError(f"{type(self).__name__}.fit: {error}") from None
        users = ratings.user if user_ids is None else np.asarray(user_ids)[ratings.user]
        items = ratings.item if item_ids is None else np.asarray(item_ids)[ratings.item]
        self.user_ids, user_rows = np.unique(users, return_inverse=True)
        self.item_ids, item_rows = np.unique(items, return_inverse=True)
        self.rating_range = (float(ratings.rating.min()), float(ratings.rating.max()))
        by_user = np.argsort(user_rows, kind="stable")  # the items each user rated, as CSR arrays
        self._seen_items = item_rows[by_user]
        self._seen_start = np.searchsorted(user_rows[by_user], np.arange(len(self.user_ids) + 1))
        as_tensor = lambda a, dtype: torch.as_tensor(a, dtype=dtype, device=self.device)  # noqa: E731
        self._fit(as_tensor(user_rows, torch.long), as_tensor(item_rows, torch.long),
                  as_tensor(ratings.rating, torch.float32))
        return self

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def _fit(self, user: torch.Tensor, item: torch.Tensor, rating: torch.Tensor) -> None:
        """Learns from N ratings given as ``(N,)`` user rows, item rows and float32 ratings."""
        raise NotImplementedError

    def _estimate(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """``(N,)`` unclipped scores of ``(N,)`` user and item rows; a row is ``UNKNOWN`` for an id
        the model has not seen, and the model gives its fallback estimate there."""
        raise NotImplementedError

    def _item_similarity(self, item: int) -> torch.Tensor:
        """``(n_items,)`` similarity of item row ``item`` to every item."""
        raise NotImplementedError

    # -- ids -------------------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if self.user_ids is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit(ratings) first")

    @staticmethod
    def _rows(ids: Any, known: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        ids = ids.astype(str) if known.dtype.kind == "U" else ids.astype(known.dtype, copy=False)
        rows = np.searchsorted(known, ids).clip(max=len(known) - 1)
        return np.where(known[rows] == ids, rows, UNKNOWN)

    def user_rows(self, users: Any) -> torch.Tensor:
        """Row index of each user id (``UNKNOWN`` = -1 for ids not in the training data)."""
        self._check_fitted()
        return torch.as_tensor(self._rows(users, self.user_ids), dtype=torch.long, device=self.device)

    def item_rows(self, items: Any) -> torch.Tensor:
        """Row index of each item id (``UNKNOWN`` = -1 for ids not in the training data)."""
        self._check_fitted()
        return torch.as_tensor(self._rows(items, self.item_ids), dtype=torch.long, device=self.device)

    def _known_row(self, rows: torch.Tensor, what: str, value: Any) -> int:
        row = int(rows.reshape(-1)[0])
        if row == UNKNOWN:
            known = self.user_ids if what == "user" else self.item_ids
            examples = ", ".join(repr(known_id) for known_id in known[:3].tolist())
            raise ValueError(f"{type(self).__name__}: unknown {what} {value!r}; expected one of the {len(known)} "
                             f"{what} ids seen by fit(), from {known[0].item()!r} to {known[-1].item()!r} "
                             f"(e.g. {examples})")
        return row

    # -- the verbs -------------------------------------------------------------------------------------
    def score(self, users: Any, items: Any) -> torch.Tensor:
        """Unclipped scores for id pairs, as a tensor shaped like ``users`` and ``items`` broadcast
        together (e.g. users ``(U, 1)`` and items ``(U, C)`` give ``(U, C)``); used for ranking."""
        user, item = torch.broadcast_tensors(self.user_rows(users), self.item_rows(items))
        return self._estimate(user.reshape(-1), item.reshape(-1)).reshape(user.shape)

    def predict(self, users: Any, items: Any) -> np.ndarray:
        """Predicted ratings of ``items`` by ``users`` (equal-length id arrays, or scalars).

        Predictions are clipped to the range of the training ratings. Ids not seen by ``fit``
        get the model's fallback (see the model's docstring), never an error.

        Returns:
            float32 array shaped like the broadcast inputs.
        """
        scores = self.score(users, items)
        low, high = self.rating_range
        return scores.clamp(low, high).float().cpu().numpy()

    def predict_with_reasons(self, users: Any, items: Any) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict`, and for each prediction why it fell back, as scikit-surprise's ``was_impossible``.

        Returns:
            ``(predictions, reasons)`` shaped like the broadcast inputs: float32 predictions and
            strings from :data:`REASONS`: ``""`` (the model's own estimate), ``"unknown user"``,
            ``"unknown item"``, ``"unknown user and item"`` or (kNN) ``"not enough neighbours"``.
        """
        user, item = torch.broadcast_tensors(self.user_rows(users), self.item_rows(items))
        scores, codes = self._estimate_with_reasons(user.reshape(-1), item.reshape(-1))
        low, high = self.rating_range
        predictions = scores.clamp(low, high).float().cpu().numpy().reshape(tuple(user.shape))
        return predictions, np.asarray(REASONS)[codes.cpu().numpy()].reshape(tuple(user.shape))

    def _estimate_with_reasons(self, user: torch.Tensor, item: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``_estimate`` and the ``(N,)`` reason codes (indices into :data:`REASONS`); models with
        other fallbacks than unknown ids override this."""
        return self._estimate(user, item), unknown_codes(user, item)

    def seen_items(self, user: Any) -> np.ndarray:
        """The ids of the items ``user`` rated in the training data."""
        row = self._known_row(self.user_rows([user]), "user", user)
        return self.item_ids[self._seen_items[self._seen_start[row]:self._seen_start[row + 1]]]

    def recommend(self, user: Any, n: int = 10, *, exclude_seen: bool = True) -> list[tuple[Any, float]]:
        """The ``n`` best-scored items for ``user``, best first, as ``(item id, score)`` pairs.

        Args:
            user: a user id seen by ``fit``.
            n: how many items (fewer when fewer are left).
            exclude_seen: leave out the items the user rated in the training data.
        """
        row = self._known_row(self.user_rows([user]), "user", user)
        items = torch.arange(self.n_items, device=self.device)
        scores = self._estimate(items.new_full((self.n_items,), row), items)  # (n_items,)
        if exclude_seen:
            seen = self._seen_items[self._seen_start[row]:self._seen_start[row + 1]]
            scores[torch.as_tensor(seen, device=self.device)] = float("-inf")
        return self._top(scores, n)

    def similar_items(self, item: Any, n: int = 10) -> list[tuple[Any, float]]:
        """The ``n`` items most similar to ``item`` (itself excluded), as ``(item id, similarity)``."""
        row = self._known_row(self.item_rows([item]), "item", item)
        similarity = self._item_similarity(row).clone()  # (n_items,)
        similarity[row] = float("-inf")
        return self._top(similarity, n)

    def _top(self, scores: torch.Tensor, n: int) -> list[tuple[Any, float]]:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"Expected n to be a positive integer. Received: n={n!r}")
        n = min(n, int(torch.isfinite(scores).sum()))  # host sync: once per call
        values, rows = scores.topk(n)
        return list(zip(self.item_ids[rows.cpu().numpy()].tolist(), values.float().cpu().tolist()))

    # -- files -----------------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as JSON-ready values (the device excluded)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any], device: Any = None) -> "Recommender":
        """A new, unfitted recommender with the arguments of :meth:`get_config`."""
        return cls(**config, device=device)

    def _state(self) -> dict[str, torch.Tensor]:
        """The fitted model's tensors (what ``_estimate`` and ``_item_similarity`` read)."""
        raise NotImplementedError

    def _load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restores :meth:`_state` on ``self.device``; the ids and rating range are already set."""
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> None:
        """Writes the fitted recommender to ``path``: one safetensors file, written atomically, holding its
        tensors and, as JSON, its class, constructor arguments, user and item ids and rating range."""
        from deepzen.training.serialization import write_tensors

        self._check_fitted()
        tensors = {f"model.{key}": value for key, value in self._state().items()}
        tensors["seen_items"] = torch.as_tensor(self._seen_items, dtype=torch.long)
        tensors["seen_start"] = torch.as_tensor(self._seen_start, dtype=torch.long)
        metadata = {"recommender": type(self).__name__, "config": self.get_config(),
                    "user_ids": _ids_to_json(self.user_ids), "item_ids": _ids_to_json(self.item_ids),
                    "rating_range": list(self.rating_range)}
        write_tensors(path, tensors, metadata)

    @classmethod
    def load(cls, path: str | os.PathLike, device: Any = None) -> "Recommender":
        """Rebuilds a recommender written by :meth:`save` (of this class or a subclass), on ``device``.

        Raises:
            deepzen.training.serialization.ModelFileError: the file is missing, damaged, or holds
                something else than a ``cls``.
        """
        from deepzen.training.serialization import ModelFileError, building_from, read_tensors

        tensors, metadata = read_tensors(path)
        name = metadata.get("recommender")
        if not isinstance(name, str) or name not in RECOMMENDERS:
            raise ModelFileError(f"{path} holds no recommender (expected a file written by Recommender.save). "
                                 f"Received: {name or 'a model file'!r:.80}")
        kind = RECOMMENDERS.get(name)
        if not issubclass(kind, cls):
            raise ModelFileError(f"{path} holds a {name}, not a {cls.__name__}")
        with building_from(path):
            model = kind.from_config(metadata["config"], device=device)
            model.user_ids = _ids_from_json(metadata["user_ids"])
            model.item_ids = _ids_from_json(metadata["item_ids"])
            model.rating_range = tuple(metadata["rating_range"])
            model._seen_items, model._seen_start = tensors["seen_items"].numpy(), tensors["seen_start"].numpy()
            model._load_state({key.removeprefix("model."): value.to(model.device)
                               for key, value in tensors.items() if key.startswith("model.")})
        return model


def unknown_codes(user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
    """``(N,)`` reason codes of :data:`REASONS` for unknown users (1), items (2) or both (3); else 0."""
    return (user == UNKNOWN).long() + 2 * (item == UNKNOWN).long()


def _ids_to_json(ids: np.ndarray) -> dict[str, Any]:
    return {"dtype": ids.dtype.str if ids.dtype.kind != "O" else "object", "values": ids.tolist()}


def _ids_from_json(saved: dict[str, Any]) -> np.ndarray:
    return np.asarray(saved["values"], dtype=np.dtype(saved["dtype"]))
