"""Generating sequences from autoregressive models: greedy search, beam search, sampling.

The decoders know nothing about the model. They call a **step function** once per generated token:

    ``step_fn(tokens, state) -> (log_probs, new_state)``

- ``tokens``: (B, t) long, every token so far — the start tokens followed by the generated ones.
  A model without a cache (a Transformer decoder re-reading its prefix) uses all of them; a model
  that carries its history in ``state`` (an RNN) uses only ``tokens[:, -1]``. Rows that already
  ended keep receiving the padding token; their outputs are ignored.
- ``state``: whatever the model carries between steps, ``None`` on the first call unless the caller
  passes an initial state (e.g. the encoder output of a seq2seq model). It may be ``None``, a
  tensor, or a (nested) tuple, list, namedtuple or dict of tensors, **batch dimension first**: beam
  search expands and reorders hypotheses with ``tensor.index_select(0, index)`` on every tensor
  (see :func:`reorder_state`); other values (ints, flags) are shared by all rows. An ``nn.LSTM``
  state of shape (layers, B, H) must be transposed to (B, layers, H) inside ``step_fn``.
- ``log_probs``: (B, V) log-probabilities of the next token (``log_softmax`` of the logits).

Every decoder returns the generated tokens (start tokens excluded), padded after ``eos_id`` with
``pad_id`` (default: ``eos_id``), and their scores (sums of the model's log-probabilities).
``max_len`` is one limit for every row or one per row, a (B,) tensor or list: a row's output then
does not depend on the other rows it is decoded with (a translator caps each sentence by its own length).

Example:
    >>> import torch
    >>> table = torch.log_softmax(torch.randn(6, 6), dim=-1)        # a Markov "model" over 6 tokens
    >>> step_fn = lambda tokens, state: (table[tokens[:, -1]], state)
    >>> tokens, scores = greedy_search(step_fn, torch.tensor([0, 3]), max_len=5)
    >>> tokens.shape, scores.shape
    (torch.Size([2, 5]), torch.Size([2]))
    >>> tokens, scores = beam_search(step_fn, torch.tensor([0, 3]), beam_size=4, max_len=5, eos_id=1,
    ...                              num_return=2)
    >>> tokens.shape[:2], scores.shape
    (torch.Size([2, 2]), torch.Size([2, 2]))
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

StepFn = Callable[[torch.Tensor, Any], "tuple[torch.Tensor, Any]"]


def gnmt_length_penalty(length: int, alpha: float) -> float:
    """GNMT's length penalty (Wu et al. 2016): ``lp(Y) = (5 + |Y|)^alpha / 6^alpha``.

    Beam search ranks hypotheses by ``sum log p / lp(Y)``; ``alpha = 0`` ranks by the raw sum,
    larger ``alpha`` favours longer outputs. ``|Y|`` counts the generated tokens including eos.
    """
    return ((5.0 + length) / 6.0) ** alpha


def reorder_state(state: Any, index: torch.Tensor) -> Any:
    """Selects rows ``index`` (along dim 0) of every tensor in a (nested) state.

    Args:
        state: None, a tensor, or a tuple / list / namedtuple / dict nesting tensors (batch first).
        index: (B',) long row indices.

    Returns:
        The same structure with every tensor ``t`` replaced by ``t.index_select(0, index)``.
    """
    if isinstance(state, torch.Tensor):
        return state.index_select(0, index)
    if isinstance(state, dict):
        return {key: reorder_state(value, index) for key, value in state.items()}
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(reorder_state(value, index) for value in state))
    if isinstance(state, (tuple, list)):
        return type(state)(reorder_state(value, index) for value in state)
    return state


def sampling_distribution(log_probs: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                          top_p: float | None = None) -> torch.Tensor:
    """The distribution :func:`sample` draws from: tempered, then top-k, then top-p (nucleus) filtered.

    Args:
        log_probs: (B, V) next-token log-probabilities (or logits).
        temperature: divides the logits; < 1 sharpens, > 1 flattens; must be > 0.
        top_k: keep the k most probable tokens (ties with the k-th are kept too).
        top_p: keep the smallest set of most probable tokens whose probability sums to >= top_p
            (Holtzman et al. 2020).

    Returns:
        (B, V) log-probabilities, renormalised over the kept tokens, ``-inf`` elsewhere.
    """
    _check_sampling_arguments(temperature, top_k, top_p)
    log_probs = torch.log_softmax(log_probs / temperature, dim=-1)
    if top_k is not None and top_k < log_probs.shape[-1]:
        kth_best = log_probs.topk(top_k, dim=-1).values[:, -1:]              # (B, 1)
        log_probs = torch.log_softmax(log_probs.masked_fill(log_probs < kth_best, -math.inf), dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_log_probs, order = log_probs.sort(dim=-1, descending=True)
        probs = sorted_log_probs.exp()
        mass_before = probs.cumsum(dim=-1) - probs                            # (B, V) mass of better tokens
        drop_sorted = mass_before >= top_p                                    # the set already reached top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)                    # back to vocabulary order
        log_probs = torch.log_softmax(log_probs.masked_fill(drop, -math.inf), dim=-1)
    return log_probs


def greedy_search(step_fn: StepFn, start_tokens: torch.Tensor, max_len: int, eos_id: int | None = None,
                  state: Any = None, pad_id: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Generates by taking the most probable token at every step.

    Args:
        step_fn: the model, see the module docstring.
        start_tokens: (B,) or (B, t0) long, e.g. the BOS token of each row.
        max_len: maximum number of generated tokens: an int, or one per row ((B,) tensor or list).
        eos_id: a row ends after generating this token; decoding stops when all rows ended.
        state: initial state passed to the first ``step_fn`` call.
        pad_id: token after a row's eos (default: ``eos_id``).

    Returns:
        tokens: (B, L) long, L <= max_len, padded after eos.
        scores: (B,) sum of the log-probabilities of each row's tokens up to and including eos.
    """
    return _generate(step_fn, start_tokens, max_len, eos_id, pad_id, state,
                     choose=lambda log_probs: log_probs.argmax(dim=-1))


def sample(step_fn: StepFn, start_tokens: torch.Tensor, max_len: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
           eos_id: int | None = None, state: Any = None,
           pad_id: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Generates by drawing each token from the (tempered, filtered) model distribution.

    Args:
        step_fn, start_tokens, max_len, eos_id, state, pad_id: as in :func:`greedy_search`.
        temperature, top_k, top_p: see :func:`sampling_distribution`.
        generator: a ``torch.Generator`` (on the tokens' device) for reproducible draws.

    Returns:
        tokens: (B, L) long, padded after eos.
        scores: (B,) sum of the **model's** log-probabilities of the drawn tokens (before
        temperature and filtering), so sampled and searched outputs are comparable.
    """
    _check_sampling_arguments(temperature, top_k, top_p)

    def draw(log_probs: torch.Tensor) -> torch.Tensor:
        probs = sampling_distribution(log_probs, temperature, top_k, top_p).exp()
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    return _generate(step_fn, start_tokens, max_len, eos_id, pad_id, state, choose=draw)


def beam_search(step_fn: StepFn, start_tokens: torch.Tensor, beam_size: int, max_len: int, eos_id: int | None,
                length_penalty: float = 0.6, early_stopping: bool = True, state: Any = None, num_return: int = 1,
                pad_id: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Beam search with GNMT length normalisation, batched over all B * beam_size hypotheses.

    Each step extends every live hypothesis by every token, keeps the ``2 * beam_size`` best
    extensions per batch item, moves those ending in ``eos_id`` and ranked within the first
    ``beam_size`` to the item's finished hypotheses (scored ``sum log p / lp(length)``, see
    :func:`gnmt_length_penalty`; the best ``beam_size`` are kept) and continues with the best
    ``beam_size`` others. Hypotheses still live at ``max_len`` are finished there without eos.

    Args:
        step_fn: the model, see the module docstring; it is called on B * beam_size rows, the
            ``beam_size`` hypotheses of batch item b in rows ``b * beam_size ...``.
        start_tokens: (B,) or (B, t0) long.
        beam_size: hypotheses kept per batch item.
        max_len: maximum number of generated tokens: an int, or one per batch item ((B,) tensor or list).
        eos_id: the end token (None: every hypothesis runs to max_len).
        length_penalty: GNMT's alpha; 0 ranks by the raw sum of log-probabilities.
        early_stopping: True: a batch item is done once it has ``beam_size`` finished hypotheses
            (the usual, fast rule). False: it is done only when no live hypothesis can still beat
            the worst kept finished one (the bound uses log-probabilities <= 0 and the length
            penalty at the remaining lengths), so the search is exhaustive within the beam.
        state: initial state for B rows; it is expanded to B * beam_size rows.
        num_return: number of best hypotheses returned per batch item (<= beam_size).
        pad_id: token after eos (default: ``eos_id``).

    Returns:
        tokens: (B, num_return, L) long, best first, padded after eos.
        scores: (B, num_return) length-normalised scores (``-inf`` where fewer hypotheses exist).
    """
    if not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"Expected beam_size to be a positive integer. Received: beam_size={beam_size!r}")
    if not isinstance(num_return, int) or not 1 <= num_return <= beam_size:
        raise ValueError(f"Expected 1 <= num_return <= beam_size={beam_size}. Received: num_return={num_return!r}")
    tokens = _start_tokens(start_tokens)
    batch_size, start_len = tokens.shape
    beams, device = beam_size, tokens.device
    limits, ends = _limits(max_len, batch_size, device)
    longest = max(ends)
    pad = _pad_value(eos_id, pad_id)

    row_batch = torch.arange(batch_size, device=device).repeat_interleave(beams)    # (B*K,)
    tokens = tokens.index_select(0, row_batch)                                        # (B*K, t0)
    state = reorder_state(state, row_batch)
    # Only the first copy of each item is live at first, so step 1 does not propose K identical beams.
    beam_scores = torch.full((batch_size, beams), -math.inf, device=device)
    beam_scores[:, 0] = 0.0                                                            # (B, K) raw sums
    finished = _Finished(batch_size, beams, longest, pad, device)
    done = torch.zeros(batch_size, dtype=torch.bool, device=device)
    first_row = torch.arange(batch_size, device=device).unsqueeze(1) * beams          # (B, 1)
    within_beam = torch.arange(2 * beams, device=device) < beams                      # (2K,)

    for step in range(longest):
        length = step + 1                                                              # tokens per hypothesis
        log_probs, state = step_fn(tokens, state)                                      # (B*K, V)
        vocab = log_probs.shape[-1]
        candidates = (beam_scores.reshape(-1, 1) + log_probs).reshape(batch_size, beams * vocab)
        top_scores, top_index = candidates.topk(min(2 * beams, beams * vocab), dim=1)   # (B, 2K) sorted
        source_beam, next_token = top_index // vocab, top_index % vocab               # (B, 2K) each
        generated = tokens[:, start_len:].reshape(batch_size, beams, step)             # (B, K, step)
        if eos_id is not None:
            is_eos = next_token == eos_id
            ended_scores = (top_scores / gnmt_length_penalty(length, length_penalty))
            ended_scores = ended_scores.masked_fill(~(is_eos & within_beam[:top_scores.shape[1]]), -math.inf)
            ended = generated.gather(1, source_beam.unsqueeze(2).expand(-1, -1, step))  # (B, 2K, step)
            finished.add(torch.cat([ended, next_token.unsqueeze(2)], dim=2), ended_scores)
            top_scores = top_scores.masked_fill(is_eos, -math.inf)
        # At most K of the 2K candidates end in eos (one per beam), so K live ones always remain.
        alive_scores, alive = top_scores.topk(beams, dim=1)                            # (B, K)
        rows = (first_row + source_beam.gather(1, alive)).reshape(-1)                  # (B*K,)
        tokens = torch.cat([tokens.index_select(0, rows), next_token.gather(1, alive).reshape(-1, 1)], dim=1)
        state = reorder_state(state, rows)
        done = done | _batch_done(finished.scores, alive_scores[:, 0], length, limits, length_penalty,
                                  early_stopping)
        if length in ends and length < longest:  # items at their max_len (the longest finish after the loop)
            at_limit = limits == length  # they finish their live hypotheses now, as they would alone
            live = tokens[:, start_len:].reshape(batch_size, beams, length)
            ending = (done | ~at_limit).unsqueeze(1)
            finished.add(live, alive_scores.masked_fill(ending, -math.inf) / gnmt_length_penalty(length, length_penalty))
            done = done | at_limit
        beam_scores = alive_scores.masked_fill(done.unsqueeze(1), -math.inf)           # done items stay dead
        if bool(done.all()):  # host sync: once per generated token, ends the search early
            break

    # Items still searching at the end finish their live hypotheses without eos.
    live = tokens[:, start_len:].reshape(batch_size, beams, -1)                        # (B, K, steps run)
    finished.add(live, beam_scores / gnmt_length_penalty(live.shape[2], length_penalty))
    return finished.best(num_return)


class _Finished:
    """The ``keep`` best finished hypotheses of each batch item, sorted best first."""

    def __init__(self, batch_size: int, keep: int, max_len: int, pad: int, device: torch.device):
        self.keep, self.max_len, self.pad = keep, max_len, pad
        self.scores = torch.full((batch_size, keep), -math.inf, device=device)                    # (B, K)
        self.tokens = torch.full((batch_size, keep, max_len), pad, dtype=torch.long, device=device)  # (B, K, max_len)
        self.lengths = torch.zeros((batch_size, keep), dtype=torch.long, device=device)             # (B, K)

    def add(self, tokens: torch.Tensor, scores: torch.Tensor) -> None:
        """Merges candidates tokens (B, M, length) with scores (B, M) (-inf: not a candidate)."""
        length = tokens.shape[2]
        tokens = F.pad(tokens, (0, self.max_len - length), value=self.pad)                 # (B, M, max_len)
        lengths = torch.full(scores.shape, length, dtype=torch.long, device=scores.device)  # (B, M)
        self.scores, best = torch.cat([self.scores, scores], dim=1).topk(self.keep, dim=1)  # (B, K) each
        self.tokens = torch.cat([self.tokens, tokens], dim=1).gather(1, best.unsqueeze(2).expand(-1, -1, self.max_len))
        self.lengths = torch.cat([self.lengths, lengths], dim=1).gather(1, best)

    def best(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = self.lengths[:, :count].masked_fill(self.scores[:, :count] == -math.inf, 0)
        length = int(lengths.max()) if lengths.numel() else 0  # host sync: once, to trim the padding
        return self.tokens[:, :count, :length], self.scores[:, :count]


def _batch_done(finished_scores: torch.Tensor, best_alive: torch.Tensor, length: int, limits: torch.Tensor,
                alpha: float, early_stopping: bool) -> torch.Tensor:
    """(B,) bool: which batch items need no more steps (``limits``: each item's max_len)."""
    full = finished_scores[:, -1] > -math.inf                       # K finished hypotheses
    no_live = best_alive == -math.inf
    if early_stopping:
        return full | no_live
    # A live hypothesis only loses log-probability (<= 0) as it grows; normalised by a length in
    # (length, max_len], its score is at most the best of the two extreme lengths (lp is monotone).
    bound = torch.maximum(best_alive / gnmt_length_penalty(length + 1, alpha),
                          best_alive / gnmt_length_penalty(limits, alpha))
    # At its max_len an item's live hypotheses are finished after this step: only no_live matters there.
    return torch.where(length >= limits, no_live, (full & (finished_scores[:, -1] >= bound)) | no_live)


def _generate(step_fn: StepFn, start_tokens: torch.Tensor, max_len: int, eos_id: int | None,
              pad_id: int | None, state: Any, choose: Callable[[torch.Tensor], torch.Tensor]):
    """Token-by-token generation with ``choose(log_probs (B, V)) -> (B,)`` picking each next token."""
    tokens = _start_tokens(start_tokens)
    start_len = tokens.shape[1]
    limits, ends = _limits(max_len, tokens.shape[0], tokens.device)
    longest = max(ends)
    stops_early = eos_id is not None or len(ends) > 1
    pad = _pad_value(eos_id, pad_id)
    scores = torch.zeros(tokens.shape[0], device=tokens.device)
    ended = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    for step in range(longest):
        log_probs, state = step_fn(tokens, state)                                  # (B, V)
        next_token = choose(log_probs)                                             # (B,)
        token_log_prob = log_probs.gather(1, next_token.unsqueeze(1)).squeeze(1)  # (B,)
        scores = scores + token_log_prob.masked_fill(ended, 0.0)
        next_token = next_token.masked_fill(ended, pad)
        tokens = torch.cat([tokens, next_token.unsqueeze(1)], dim=1)
        if eos_id is not None:
            ended = ended | (next_token == eos_id)
        ended = ended | (limits <= step + 1)
        if stops_early and bool(ended.all()):  # host sync: once per generated token, ends decoding early
            break
    return tokens[:, start_len:], scores


def _limits(max_len: Any, batch_size: int, device: torch.device) -> tuple[torch.Tensor, set[int]]:
    """``max_len`` as (B,) long limits on ``device``, and the set of their values (read once, so that the
    decoding loop needs no host sync to know which step ends which items)."""
    if isinstance(max_len, int) and not isinstance(max_len, bool):
        limits = torch.full((batch_size,), max_len, dtype=torch.long, device=device)
    elif isinstance(max_len, (torch.Tensor, list, tuple)):
        limits = torch.as_tensor(max_len, device=device)
        if limits.shape != (batch_size,) or limits.is_floating_point() or limits.dtype == torch.bool:
            raise ValueError(f"Expected max_len to be a positive integer or one integer per batch item, shape "
                             f"({batch_size},). Received: max_len of shape {tuple(limits.shape)}, {limits.dtype}")
        limits = limits.long()
    else:
        raise ValueError(f"Expected max_len to be a positive integer. Received: max_len={max_len!r}")
    ends = set(limits.tolist()) or {1}  # an empty batch: one step decodes nothing
    if min(ends) < 1:
        raise ValueError(f"Expected max_len to be a positive integer (each of them). Received: max_len={max_len!r}")
    return limits, ends


def _start_tokens(start_tokens: torch.Tensor) -> torch.Tensor:
    if not isinstance(start_tokens, torch.Tensor) or start_tokens.dim() not in (1, 2) \
            or start_tokens.is_floating_point():
        shown = tuple(start_tokens.shape) if isinstance(start_tokens, torch.Tensor) else type(start_tokens).__name__
        raise ValueError(f"Expected start_tokens to be an integer tensor of shape (B,) or (B, t0). "
                         f"Received: start_tokens={shown}")
    tokens = start_tokens.long()
    return tokens.unsqueeze(1) if tokens.dim() == 1 else tokens


def _pad_value(eos_id: int | None, pad_id: int | None) -> int:
    if pad_id is not None:
        return pad_id
    return eos_id if eos_id is not None else 0


def _check_sampling_arguments(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not temperature > 0:
        raise ValueError(f"Expected temperature > 0 (use greedy_search for temperature 0). "
                         f"Received: temperature={temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"Expected top_k to be a positive integer or None. Received: top_k={top_k!r}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"Expected 0 < top_p <= 1 or None. Received: top_p={top_p!r}")
