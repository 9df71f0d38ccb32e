"""Linear-chain conditional random field (Lafferty et al. 2001), the output layer of BiLSTM-CRF taggers.

A CRF scores a whole tag sequence ``y`` for emissions ``e`` (per-token tag scores, e.g. a BiLSTM's
outputs) with learned transition scores::

    score(y) = start[y_0] + sum_t e[t, y_t] + sum_{t>0} transitions[y_{t-1}, y_t] + end[y_last]
    p(y | e) = exp(score(y)) / Z,   log Z = logsumexp over all K^T tag sequences

Training minimises ``-log p(gold | e)`` (:meth:`CRF.nll`, log Z by the forward algorithm); prediction
takes the best sequence by Viterbi (:meth:`CRF.decode`). This is the tagger of Lample et al. (2016),
"Neural Architectures for Named Entity Recognition". Both algorithms are vectorised over the batch
and the tags; the only Python loop runs over time steps.

Tagging schemes forbid some transitions (in BIO, ``I-PER`` may not follow ``O``);
:func:`allowed_transitions` builds those constraints and the CRF then never scores such a path.

Example:
    >>> import torch
    >>> crf = CRF(num_tags=5)
    >>> emissions = torch.randn(2, 7, 5)                 # (N, T, K), e.g. from a BiLSTM + Dense
    >>> tags = torch.randint(0, 5, (2, 7))
    >>> mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    >>> crf.nll(emissions, tags, mask).shape
    torch.Size([2])
    >>> crf.decode(emissions, mask)[1, 4:].tolist()      # padding positions hold -100
    [-100, -100, -100]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from deepzen import initializers
from deepzen.layers.base import Layer
from deepzen.losses import Loss
from deepzen.serializable import register_serializable

# Added to the score of a forbidden transition. Finite, so that the forward algorithm's logsumexp
# and its gradient stay finite even where every path through a position is forbidden; exp(-1e4)
# is exactly 0 in float32 and float64, so forbidden paths carry no probability.
DISALLOWED_SCORE = -1e4

# Tag value used for padding: in ``CRF.decode``'s output and in the targets of :class:`CRFLoss`
# (the same value as ``ignore_index`` of torch's cross-entropy).
PAD_TAG = -100

SCHEMES = ("BIO", "IOB1", "IOBES")


@register_serializable
@dataclass(frozen=True)
class TransitionConstraints:
    """Which tag transitions a CRF may use.

    Attributes:
        transitions: (K, K) bool, ``transitions[i, j]`` is True when tag j may follow tag i.
        start: (K,) bool, tags a sequence may begin with.
        end: (K,) bool, tags a sequence may end with.
    """

    transitions: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor

    def __post_init__(self):
        num_tags = self.transitions.shape[-1]
        if self.transitions.shape != (num_tags, num_tags) or self.start.shape != (num_tags,) \
                or self.end.shape != (num_tags,):
            raise ValueError(f"Expected transitions (K, K), start (K,) and end (K,). Received: "
                             f"transitions={tuple(self.transitions.shape)}, start={tuple(self.start.shape)}, "
                             f"end={tuple(self.end.shape)}")

    @property
    def num_tags(self) -> int:
        return self.transitions.shape[0]

    def get_config(self) -> dict[str, Any]:
        return {"transitions": self.transitions.tolist(), "start": self.start.tolist(), "end": self.end.tolist()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "TransitionConstraints":
        return cls(**{key: torch.tensor(value, dtype=torch.bool) for key, value in config.items()})


def allowed_transitions(tags: list[str], scheme: str = "BIO") -> TransitionConstraints:
    """The transitions a tagging scheme allows between ``tags``.

    Tags are ``"O"`` or ``"<prefix>-<type>"`` (``"B-PER"``, ``"I-LOC"``, ...). The schemes:

    - ``"BIO"`` (IOB2): every chunk starts with ``B-X``; ``I-X`` only follows ``B-X`` or ``I-X``.
    - ``"IOB1"``: chunks are ``I-X``; ``B-X`` only marks a chunk that directly follows another
      ``X`` chunk, so it only follows ``B-X`` or ``I-X``.
    - ``"IOBES"`` (BIOES): ``B-X`` (begin) and ``I-X`` (inside) are followed by ``I-X`` or
      ``E-X`` (end); single-token chunks are ``S-X``; a sequence ends outside a chunk.

    Args:
        tags: the tag names in index order (index i of the CRF is ``tags[i]``).
        scheme: "BIO", "IOB1" or "IOBES".

    Returns:
        :class:`TransitionConstraints` for ``CRF(len(tags), constraints=...)``.

    Example:
        >>> c = allowed_transitions(["O", "B-PER", "I-PER"], "BIO")
        >>> c.transitions[0].tolist(), c.start.tolist()      # O -> I-PER and start -> I-PER forbidden
        ([True, True, False], [True, True, False])
    """
    scheme = scheme.upper()
    if scheme not in SCHEMES:
        raise ValueError(f"Expected scheme to be one of {', '.join(SCHEMES)}. Received: scheme={scheme!r}")
    prefixes = {"BIO": "BIO", "IOB1": "BIO", "IOBES": "BIOES"}[scheme]
    parsed = [_parse_tag(tag, prefixes) for tag in tags]
    transitions = torch.tensor([[_may_follow(scheme, a, b) for b in parsed] for a in parsed], dtype=torch.bool)
    start = torch.tensor([_may_follow(scheme, ("O", None), b) for b in parsed], dtype=torch.bool)
    end = torch.tensor([_may_end(scheme, a) for a in parsed], dtype=torch.bool)
    return TransitionConstraints(transitions, start, end)


def _parse_tag(tag: str, prefixes: str) -> tuple[str, str | None]:
    if tag == "O":
        return "O", None
    prefix, _, kind = tag.partition("-")
    if prefix not in prefixes or not kind:
        raise ValueError(f"Expected tags 'O' or '<prefix>-<type>' with a prefix in {list(prefixes)}. "
                         f"Received: tag={tag!r}")
    return prefix, kind


def _may_follow(scheme: str, previous: tuple[str, str | None], current: tuple[str, str | None]) -> bool:
    """Whether ``current`` may follow ``previous``; the sequence start behaves like a preceding "O"."""
    (p, p_kind), (c, c_kind) = previous, current
    same_chunk = p in "BI" and p_kind == c_kind
    if scheme == "BIO":
        return c != "I" or same_chunk
    if scheme == "IOB1":
        return c != "B" or same_chunk
    # IOBES: inside a chunk (after B or I) only I or E of the same type; outside only O, B or S.
    if p in "BI":
        return c in "IE" and same_chunk
    return c in "OBS"


def _may_end(scheme: str, tag: tuple[str, str | None]) -> bool:
    return scheme != "IOBES" or tag[0] in "OES"


class CRF(Layer):
    """Linear-chain CRF over ``num_tags`` tags, trained with :meth:`nll` and decoded by :meth:`decode`.

    The parameters do not depend on the input shape, so they are created at construction (the
    first call only checks that the emissions have ``num_tags`` features).

    Intended use: a tagger computes emissions (N, T, K) with e.g. an embedding, a bidirectional
    LSTM and a Dense layer, then calls ``crf.nll(emissions, tags, mask)`` for the training loss and
    ``crf.decode(emissions, mask)`` for predictions (the BiLSTM-CRF model in ``deepzen.text`` does
    this). To train with ``compile``/``fit`` instead, put the CRF last in a ``Sequential`` — its
    ``forward`` passes the emissions through, so the model outputs emissions and holds the CRF's
    parameters — and compile with ``loss=CRFLoss(crf)``.

    Args:
        num_tags: number of tags K.
        constraints: optional :class:`TransitionConstraints` (see :func:`allowed_transitions`);
            forbidden transitions get ``DISALLOWED_SCORE`` added whenever paths are scored.

    Call arguments:
        emissions: (N, T, K). Returned unchanged.
        mask: ignored; accepted so that the call mirrors :meth:`nll` and :meth:`decode`.

    Attributes:
        transitions: (K, K) parameter, ``transitions[i, j]`` scores tag i followed by tag j.
        start_transitions / end_transitions: (K,) parameters scoring the first and last tag.
    """

    def __init__(self, num_tags: int, constraints: TransitionConstraints | None = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_tags, int) or num_tags < 1:
            raise ValueError(f"{self.display_name}: expected num_tags to be a positive integer. "
                             f"Received: num_tags={num_tags!r}")
        if constraints is not None and constraints.num_tags != num_tags:
            raise ValueError(f"{self.display_name}: expected constraints for {num_tags} tags. "
                             f"Received: constraints for {constraints.num_tags} tags")
        self.num_tags = num_tags
        uniform = initializers.get("random_uniform")  # U(-0.05, 0.05): no preference at the start
        self.transitions = nn.Parameter(uniform(torch.empty(num_tags, num_tags)))
        self.start_transitions = nn.Parameter(uniform(torch.empty(num_tags)))
        self.end_transitions = nn.Parameter(uniform(torch.empty(num_tags)))
        # Penalties follow the module across devices but are not saved: they come from the config.
        allowed = constraints or TransitionConstraints(torch.ones(num_tags, num_tags, dtype=torch.bool),
                                                       torch.ones(num_tags, dtype=torch.bool),
                                                       torch.ones(num_tags, dtype=torch.bool))
        for name, mask in (("transition", allowed.transitions), ("start", allowed.start), ("end", allowed.end)):
            penalty = torch.zeros(mask.shape).masked_fill(~mask.bool(), DISALLOWED_SCORE)
            self.register_buffer(f"_{name}_penalty", penalty, persistent=False)

    def build(self, input_shape: tuple[int, ...]) -> None:
        self._check_emissions_shape(input_shape)

    def forward(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return emissions

    # -- scoring ------------------------------------------------------------------------------------
    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Negative log-likelihood ``log Z - score(tags)`` of each sequence.

        Args:
            emissions: (N, T, K) tag scores per position.
            tags: (N, T) long gold tags; values at padding positions are ignored.
            mask: (N, T) bool, True on real tokens; each row a prefix of Trues starting at
                position 0 (default: all True).

        Returns:
            (N,) the negative log-likelihood of each sequence.
        """
        mask = self._check_inputs(emissions, mask)
        emissions = emissions.masked_fill(~mask.unsqueeze(-1), 0.0)  # padding values never matter
        tags = tags.masked_fill(~mask, 0)                             # e.g. -100 -> a valid index
        return self._log_partition(emissions, mask) - self._path_score(emissions, tags, mask)

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``log Z``: logsumexp of the scores of all tag sequences, by the forward algorithm.

        Args:
            emissions: (N, T, K). mask: (N, T) bool as in :meth:`nll`.

        Returns:
            (N,) log partition function of each sequence.
        """
        mask = self._check_inputs(emissions, mask)
        return self._log_partition(emissions.masked_fill(~mask.unsqueeze(-1), 0.0), mask)

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor | None = None, *,
               return_scores: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The highest-scoring tag sequence of each input, by Viterbi.

        Args:
            emissions: (N, T, K). mask: (N, T) bool as in :meth:`nll`.
            return_scores: also return the score of each best path.

        Returns:
            tags: (N, T) long, ``PAD_TAG`` (-100) where ``mask`` is False; with ``return_scores``
            also scores: (N,) the best paths' scores. ``row[row != -100].tolist()`` gives a row's tags.
        """
        mask = self._check_inputs(emissions, mask)
        transitions, start, end = self._constrained_parameters()
        num_steps, num_tags = emissions.shape[1], self.num_tags
        stay = torch.arange(num_tags, device=emissions.device).expand(emissions.shape[0], num_tags)  # (N, K)

        score = start + emissions[:, 0]                                       # (N, K)
        backpointers = []
        for t in range(1, num_steps):
            candidates = score.unsqueeze(2) + transitions + emissions[:, t].unsqueeze(1)  # (N, K_prev, K)
            best, best_previous = candidates.max(dim=1)                                   # (N, K) each
            active = mask[:, t].unsqueeze(1)
            score = torch.where(active, best, score)
            # Past a sequence's end the pointer maps every tag to itself, so backtracking from the
            # last step walks unchanged through the padding to the sequence's real last tag.
            backpointers.append(torch.where(active, best_previous, stay))
        score = score + end
        best_score, last_tag = score.max(dim=1)                               # (N,), (N,)

        path = [last_tag]
        for pointers in reversed(backpointers):
            path.append(pointers.gather(1, path[-1].unsqueeze(1)).squeeze(1))
        tags = torch.stack(path[::-1], dim=1).masked_fill(~mask, PAD_TAG)    # (N, T)
        return (tags, best_score) if return_scores else tags

    # -- internals ----------------------------------------------------------------------------------
    def _constrained_parameters(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (self.transitions + self._transition_penalty, self.start_transitions + self._start_penalty,
                self.end_transitions + self._end_penalty)

    def _log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        transitions, start, end = self._constrained_parameters()
        alpha = start + emissions[:, 0]                                       # (N, K) log-sum over prefixes
        for t in range(1, emissions.shape[1]):
            # alpha'[j] = logsumexp_i(alpha[i] + transitions[i, j]) + e[t, j]
            step = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + emissions[:, t]  # (N, K)
            alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)
        return torch.logsumexp(alpha + end, dim=1)                            # (N,)

    def _path_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        transitions, start, end = self._constrained_parameters()
        emission_scores = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (N, T), 0 on padding
        transition_scores = transitions[tags[:, :-1], tags[:, 1:]].masked_fill(~mask[:, 1:], 0.0)  # (N, T-1)
        last_tags = tags.gather(1, (mask.sum(dim=1, keepdim=True) - 1)).squeeze(1)                  # (N,)
        return start[tags[:, 0]] + emission_scores.sum(1) + transition_scores.sum(1) + end[last_tags]

    def _check_emissions_shape(self, shape) -> None:
        if len(shape) != 3 or shape[-1] != self.num_tags:
            raise ValueError(f"Layer '{self.display_name}' expected emissions of shape (N, T, {self.num_tags}). "
                             f"Received: emissions.shape={tuple(shape)}")

    def _check_inputs(self, emissions: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Validates shapes and that every sequence starts with a real token; returns a bool mask."""
        self._check_emissions_shape(emissions.shape)
        if emissions.shape[1] == 0:
            raise ValueError(f"Layer '{self.display_name}' expected at least one time step. "
                             f"Received: emissions.shape={tuple(emissions.shape)}")
        if mask is None:
            return torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
        if mask.shape != emissions.shape[:2]:
            raise ValueError(f"Layer '{self.display_name}' expected mask of shape {tuple(emissions.shape[:2])}. "
                             f"Received: mask.shape={tuple(mask.shape)}")
        mask = mask.bool()
        # No host sync: on CPU this raises at once; on an accelerator it fails asynchronously.
        torch._assert_async(mask[:, 0].all(), f"Layer '{self.display_name}': expected mask[:, 0] to be True "
                                              f"for every sequence (masks are prefixes of real tokens)")
        return mask


class CRFLoss(Loss):
    """The CRF's negative log-likelihood as a deepzen loss: ``loss(y_true, y_pred)`` (Keras's order).

    Each sequence is one loss position, so "sum_over_batch_size" averages the sequences' NLLs, "sum"
    adds them and "none" gives one value per sequence.

    Args:
        crf: the :class:`CRF` whose parameters score the paths (it must be part of the trained model
            so that the optimizer updates it — e.g. the last layer of a ``Sequential``).
        ignore_index: tag value marking padding in ``y_true``; the mask is ``y_true != ignore_index``.
        reduction: "sum_over_batch_size" (the mean over sequences; "mean" is the same), "sum" or "none".
        name: the loss's name.

    Call arguments:
        y_true: (N, T) long tags, ``ignore_index`` on padding (each sequence's first position must
        hold a tag). y_pred: (N, T, K) emissions. Returns a scalar, or (N,) with "none".

    Example:
        >>> crf = CRF(3)
        >>> loss = CRFLoss(crf)
        >>> loss(torch.tensor([[0, 1, 2, -100], [2, 2, -100, -100]]), torch.randn(2, 4, 3)).shape
        torch.Size([])
    """

    elementwise = False

    def __init__(self, crf: CRF, ignore_index: int = PAD_TAG, reduction: str | None = "sum_over_batch_size",
                 name: str | None = "crf_loss"):
        super().__init__(name=name, reduction=reduction)
        self.crf = crf
        self.ignore_index = int(ignore_index)

    def compute(self, y_true: torch.Tensor, y_pred: torch.Tensor, reduction: str) -> torch.Tensor:
        nll = self.crf.nll(y_pred, y_true, y_true != self.ignore_index)  # (N,)
        if reduction == "none":
            return nll
        return nll.mean() if reduction == "mean" else nll.sum()

    def positions(self, y_pred: torch.Tensor) -> int:
        return 1  # one value per sequence

    def prepare_targets(self, y_true: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The tags as int64 (the predictions' dtype does not apply to tag ids)."""
        y_true = torch.as_tensor(y_true)
        if y_true.is_floating_point() and not bool((y_true == y_true.round()).all()):  # host sync: once
            raise ValueError(f"CRFLoss expects integer tags. Received: y_true of dtype {y_true.dtype} "
                             f"with fractional values")
        return y_true.long()

    def check_targets(self, y_pred_example: torch.Tensor, y_true: torch.Tensor) -> None:
        """Tags (N, T) in [0, K) or ``ignore_index``, each row starting with a tag; read once, on the host."""
        num_tags, steps = self.crf.num_tags, y_pred_example.shape[1]
        if y_pred_example.dim() != 3 or y_pred_example.shape[-1] != num_tags:
            raise ValueError(f"CRFLoss expects the model to output emissions (N, T, {num_tags}) for its "
                             f"{num_tags}-tag CRF. Received: y_pred.shape={tuple(y_pred_example.shape)}")
        if y_true.dim() != 2 or y_true.shape[1] != steps:
            raise ValueError(f"CRFLoss expects tags of shape (N, {steps}). "
                             f"Received: y_true.shape={tuple(y_true.shape)}")
        tags = y_true[y_true != self.ignore_index]
        if tags.numel() and (int(tags.min()) < 0 or int(tags.max()) >= num_tags):  # host sync: once
            raise ValueError(f"CRFLoss expects tags in [0, {num_tags}) or ignore_index={self.ignore_index}. "
                             f"Received: tags from {int(tags.min())} to {int(tags.max())}")
        if bool((y_true[:, 0] == self.ignore_index).any()):  # host sync: once
            raise ValueError(f"CRFLoss expects every sequence to start with a tag (padding at the end). "
                             f"Received: y_true[:, 0] == ignore_index={self.ignore_index} in some rows")
