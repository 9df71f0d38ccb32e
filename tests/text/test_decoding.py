import doctest
import itertools
import math

import pytest
import torch

from deepzen.text import decoding
from deepzen.text.decoding import beam_search, greedy_search, reorder_state, sample, sampling_distribution

EOS = 1


def markov_table(vocab=6, seed=0, eos_bias=0.0):
    """Log-probabilities (V, V) of the next token given the last one: a toy autoregressive model."""
    torch.manual_seed(seed)
    logits = 2.0 * torch.randn(vocab, vocab, dtype=torch.float64)
    logits[:, EOS] += eos_bias
    return torch.log_softmax(logits, dim=-1)


def markov_step(table):
    return lambda tokens, state: (table[tokens[:, -1]], state)


def sequence_log_prob(table, start, tokens):
    previous = [start] + list(tokens[:-1])
    return sum(table[a, b].item() for a, b in zip(previous, tokens))


def lp(length, alpha):
    return ((5 + length) / 6) ** alpha


def generated_length(row, eos=EOS):
    """Tokens up to and including the first eos (all of them if there is none)."""
    row = list(row)
    return row.index(eos) + 1 if eos in row else len(row)


def reference_greedy(table, start, max_len, eos):
    tokens, score = [], 0.0
    last = start
    for _ in range(max_len):
        last = int(table[last].argmax())
        tokens.append(last)
        score += table[tokens[-2] if len(tokens) > 1 else start, last].item()
        if last == eos:
            break
    return tokens, score


# -- greedy --------------------------------------------------------------------------------------------


def test_greedy_matches_a_per_row_reference_and_pads_after_eos():
    table = markov_table(seed=1, eos_bias=1.0)
    starts = torch.arange(6)
    tokens, scores = greedy_search(markov_step(table), starts, max_len=7, eos_id=EOS, pad_id=5)
    assert tokens.shape[1] <= 7
    for i, start in enumerate(starts.tolist()):
        expected, expected_score = reference_greedy(table, start, 7, EOS)
        assert tokens[i, :len(expected)].tolist() == expected
        assert (tokens[i, len(expected):] == 5).all()
        assert scores[i].item() == pytest.approx(expected_score)
    # Decoding stops when every row has ended.
    lengths = [generated_length(row) for row in tokens.tolist()]
    assert tokens.shape[1] == max(lengths)


def test_start_tokens_may_be_a_prefix():
    table = markov_table(seed=2)
    seen = []

    def step(tokens, state):
        seen.append(tokens.shape[1])
        return table[tokens[:, -1]], state

    tokens, _ = greedy_search(step, torch.tensor([[0, 2, 3], [4, 4, 5]]), max_len=3)
    assert tokens.shape == (2, 3)
    assert seen == [3, 4, 5]  # step_fn sees the whole prefix, start tokens included
    assert tokens[0, 0] == table[3].argmax() and tokens[1, 0] == table[5].argmax()


# -- beam search ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 0.6])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_size_one_equals_greedy(seed, alpha):
    table = markov_table(seed=seed, eos_bias=1.0)
    starts = torch.arange(6)
    greedy_tokens, greedy_scores = greedy_search(markov_step(table), starts, max_len=6, eos_id=EOS)
    tokens, scores = beam_search(markov_step(table), starts, beam_size=1, max_len=6, eos_id=EOS,
                                 length_penalty=alpha)
    assert torch.equal(tokens[:, 0], greedy_tokens)
    lengths = torch.tensor([generated_length(row) for row in greedy_tokens.tolist()], dtype=torch.float64)
    torch.testing.assert_close(scores[:, 0], greedy_scores / lp(lengths, alpha))


def exhaustive(table, start, max_len, alpha):
    """Every finished sequence (ends in eos, or reaches max_len) with its normalised score, best first."""
    others = [t for t in range(table.shape[0]) if t != EOS]
    sequences = [prefix + (EOS,) for n in range(max_len) for prefix in itertools.product(others, repeat=n)]
    sequences += list(itertools.product(others, repeat=max_len))
    rows = table.tolist()  # plain floats: fast enough for the ~10^5 sequences of these tests
    scored = [(sum(rows[a][b] for a, b in zip((start,) + s[:-1], s)) / lp(len(s), alpha), s) for s in sequences]
    return sorted(scored, reverse=True)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_beam_search_finds_the_exhaustive_best(alpha):
    vocab, max_len = 4, 4
    table = markov_table(vocab=vocab, seed=3, eos_bias=0.5)
    needed = (vocab - 1) ** (max_len - 1) * vocab  # every live prefix kept, every eos candidate ranked in-beam
    starts = torch.tensor([0, 2, 3])
    for beam_size in (needed, needed + 7):
        tokens, scores = beam_search(markov_step(table), starts, beam_size=beam_size, max_len=max_len,
                                     eos_id=EOS, length_penalty=alpha, early_stopping=False, num_return=5,
                                     pad_id=0)
        for i, start in enumerate(starts.tolist()):
            ranked = exhaustive(table, start, max_len, alpha)
            torch.testing.assert_close(scores[i], torch.tensor([score for score, _ in ranked[:5]],
                                                               dtype=torch.float64))
            # The returned hypotheses are 5 distinct sequences with those scores (a Markov chain
            # gives equal scores to sequences using the same transitions in another order).
            found = set()
            for k in range(5):
                row = tokens[i, k].tolist()
                n = generated_length(row)
                assert all(t == 0 for t in row[n:])  # padded after eos
                assert sequence_log_prob(table, start, row[:n]) / lp(n, alpha) == pytest.approx(scores[i, k].item())
                found.add(tuple(row[:n]))
            assert len(found) == 5


def test_scores_are_raw_sums_divided_by_the_gnmt_penalty():
    table = markov_table(seed=4, eos_bias=1.0)
    starts = torch.arange(6)
    for alpha in (0.0, 0.6):
        tokens, scores = beam_search(markov_step(table), starts, beam_size=3, max_len=6, eos_id=EOS,
                                     length_penalty=alpha, num_return=3)
        for i, start in enumerate(starts.tolist()):
            for k in range(3):
                row = tokens[i, k].tolist()
                row = row[:generated_length(row)]
                raw = sequence_log_prob(table, start, row)
                assert scores[i, k].item() == pytest.approx(raw / lp(len(row), alpha))
                assert alpha or scores[i, k].item() == pytest.approx(raw)  # alpha = 0: the raw sum
        assert (scores[:, :-1] >= scores[:, 1:]).all()  # best first


def long_sequence_model():
    """Short outputs are likely, but a run of token 2 wins with a strong length bonus.

    After two steps a search holds two good finished outputs ([eos] and [3, eos]) and the live
    prefix [2, 2] with a poor raw score; only a bound that accounts for the length bonus still
    reachable by max_len keeps searching and finds the run of 2s.
    """
    probs = torch.full((5, 5), 1e-4, dtype=torch.float64)
    probs[0, [EOS, 3, 2]] = torch.tensor([0.55, 0.4, 0.05], dtype=torch.float64)  # start token 0
    probs[3, EOS] = 0.95
    probs[2, 2] = 0.999
    probs[[1, 4]] = 0.2
    return torch.log(probs / probs.sum(-1, keepdim=True))


def test_early_stopping_false_keeps_searching_for_better_long_hypotheses():
    table = long_sequence_model()
    start, max_len, alpha = torch.tensor([0]), 8, 3.0
    best_score, best = exhaustive(table, 0, max_len, alpha)[0]
    assert EOS not in best  # the best output is a long run of 2s

    _, early_scores = beam_search(markov_step(table), start, 2, max_len, EOS, length_penalty=alpha)
    tokens, scores = beam_search(markov_step(table), start, 2, max_len, EOS, length_penalty=alpha,
                                 early_stopping=False)
    assert tokens[0, 0].tolist() == list(best)
    assert scores[0, 0].item() == pytest.approx(best_score)
    assert early_scores[0, 0].item() < best_score


def test_early_stopping_false_stops_when_no_live_hypothesis_can_win():
    table = markov_table(vocab=4, seed=14, eos_bias=3.0)
    max_len, calls = 8, []

    def step(tokens, state):
        calls.append(tokens.shape[1])
        return table[tokens[:, -1]], state

    # Without a length bonus every extension only loses probability: once two finished hypotheses
    # beat the best live one, the search is over before max_len.
    tokens, scores = beam_search(step, torch.tensor([0]), 2, max_len, EOS, length_penalty=0.0, early_stopping=False)
    assert len(calls) < max_len
    best_score, best = exhaustive(table, 0, max_len, 0.0)[0]
    assert tokens[0, 0].tolist() == list(best) and scores[0, 0].item() == pytest.approx(best_score)


def test_beam_search_without_eos_runs_to_max_len():
    table = markov_table(seed=5)
    tokens, scores = beam_search(markov_step(table), torch.tensor([0, 1]), beam_size=3, max_len=4, eos_id=None,
                                 length_penalty=0.0, num_return=3)
    assert tokens.shape == (2, 3, 4)
    for i, start in enumerate([0, 1]):
        for k in range(3):
            assert scores[i, k].item() == pytest.approx(sequence_log_prob(table, start, tokens[i, k].tolist()))


# -- state ---------------------------------------------------------------------------------------------


class TinyRNN:
    """h' = tanh(h A + E[token]); log p = log_softmax(h' O). Stateful and stateless versions agree."""

    def __init__(self, vocab=5, hidden=4, seed=6):
        g = torch.Generator().manual_seed(seed)
        self.A = torch.randn(hidden, hidden, generator=g, dtype=torch.float64)
        self.E = torch.randn(vocab, hidden, generator=g, dtype=torch.float64)
        self.O = 2 * torch.randn(hidden, vocab, generator=g, dtype=torch.float64)
        self.hidden = hidden

    def _cell(self, h, token):
        return torch.tanh(h @ self.A + self.E[token])

    def stateless(self, tokens, state):
        h = torch.zeros(tokens.shape[0], self.hidden, dtype=torch.float64)
        for t in range(tokens.shape[1]):
            h = self._cell(h, tokens[:, t])
        return torch.log_softmax(h @ self.O, dim=-1), state

    def stateful(self, tokens, state):
        if state is None:  # first call: run over the whole start prefix
            h = torch.zeros(tokens.shape[0], self.hidden, dtype=torch.float64)
            for t in range(tokens.shape[1]):
                h = self._cell(h, tokens[:, t])
        else:
            h = self._cell(state["rnn"][0], tokens[:, -1])
            assert state["step"] == "any non-tensor value is kept"
            # The row of each hypothesis must hold the history of exactly that hypothesis.
            torch.testing.assert_close(state["rnn"][1], tokens[:, :-1].sum(1, keepdim=True).double())
        new_state = {"rnn": (h, tokens.sum(1, keepdim=True).double()), "step": "any non-tensor value is kept"}
        return torch.log_softmax(h @ self.O, dim=-1), new_state


def test_beam_search_reorders_the_state_with_the_hypotheses():
    rnn = TinyRNN()
    starts = torch.tensor([[0, 3], [2, 2], [4, 1]])
    stateless = beam_search(rnn.stateless, starts, beam_size=3, max_len=6, eos_id=EOS, num_return=3)
    stateful = beam_search(rnn.stateful, starts, beam_size=3, max_len=6, eos_id=EOS, num_return=3)
    assert torch.equal(stateful[0], stateless[0])
    torch.testing.assert_close(stateful[1], stateless[1])


def test_initial_state_is_expanded_per_beam():
    table = markov_table(vocab=5, seed=7)
    memory = torch.randn(2, 5, dtype=torch.float64)  # e.g. an encoder summary per batch item

    def step(tokens, state):
        return torch.log_softmax(table[tokens[:, -1]] + state, dim=-1), state

    batched, batched_scores = beam_search(step, torch.tensor([0, 0]), beam_size=2, max_len=3, eos_id=None,
                                          state=memory)
    for i in range(2):
        alone, alone_scores = beam_search(step, torch.tensor([0]), beam_size=2, max_len=3, eos_id=None,
                                          state=memory[i:i + 1])
        assert torch.equal(batched[i], alone[0])
        torch.testing.assert_close(batched_scores[i], alone_scores[0])


def test_reorder_state_handles_nested_structures():
    from collections import namedtuple

    Pair = namedtuple("Pair", "h c")
    state = {"a": Pair(torch.arange(3), torch.arange(3) * 10), "b": [torch.arange(3) + 1, 7], "c": None}
    index = torch.tensor([2, 2, 0])
    out = reorder_state(state, index)
    assert isinstance(out["a"], Pair)
    assert out["a"].c.tolist() == [20, 20, 0] and out["b"][0].tolist() == [3, 3, 1]
    assert out["b"][1] == 7 and out["c"] is None


# -- sampling ------------------------------------------------------------------------------------------


def test_top_k_one_sampling_equals_greedy():
    table = markov_table(seed=8, eos_bias=1.0)
    starts = torch.arange(6)
    greedy = greedy_search(markov_step(table), starts, max_len=6, eos_id=EOS)
    sampled = sample(markov_step(table), starts, max_len=6, top_k=1, eos_id=EOS,
                     generator=torch.Generator().manual_seed(0))
    assert torch.equal(sampled[0], greedy[0])
    torch.testing.assert_close(sampled[1], greedy[1])  # scores are the model's log-probabilities


def test_low_temperature_approaches_greedy():
    table = markov_table(seed=9, eos_bias=1.0)
    starts = torch.arange(6).repeat(5)
    greedy_tokens, _ = greedy_search(markov_step(table), starts, max_len=6, eos_id=EOS)
    tokens, _ = sample(markov_step(table), starts, max_len=6, temperature=1e-3, eos_id=EOS,
                       generator=torch.Generator().manual_seed(1))
    assert torch.equal(tokens, greedy_tokens)


def test_top_p_keeps_the_smallest_set_reaching_p():
    torch.manual_seed(10)
    log_probs = torch.log_softmax(torch.randn(8, 10, dtype=torch.float64) * 2, dim=-1)
    for p in (0.05, 0.5, 0.9, 0.999):
        filtered = sampling_distribution(log_probs, top_p=p).exp()
        for row, kept in zip(log_probs.exp(), filtered):
            order = row.argsort(descending=True)
            size = next(m for m in range(1, 11) if row[order[:m]].sum() >= p)
            expected = torch.zeros_like(row)
            expected[order[:size]] = row[order[:size]] / row[order[:size]].sum()
            torch.testing.assert_close(kept, expected)


def test_top_p_set_that_reaches_p_exactly_is_not_extended():
    probs = torch.tensor([[0.25, 0.5, 0.125, 0.125]], dtype=torch.float64)  # exact binary fractions
    kept = sampling_distribution(probs.log(), top_p=0.5).exp()
    torch.testing.assert_close(kept, torch.tensor([[0.0, 1.0, 0.0, 0.0]], dtype=torch.float64))
    kept = sampling_distribution(probs.log(), top_p=0.75).exp()
    torch.testing.assert_close(kept, torch.tensor([[1 / 3, 2 / 3, 0.0, 0.0]], dtype=torch.float64))


def test_temperature_and_top_k_distribution():
    torch.manual_seed(11)
    log_probs = torch.log_softmax(torch.randn(4, 7, dtype=torch.float64), dim=-1)
    torch.testing.assert_close(sampling_distribution(log_probs, temperature=2.0),
                               torch.log_softmax(log_probs / 2.0, dim=-1))
    filtered = sampling_distribution(log_probs, temperature=0.5, top_k=3).exp()
    tempered = torch.softmax(log_probs / 0.5, dim=-1)
    top = tempered.topk(3, dim=-1)
    expected = torch.zeros_like(tempered).scatter(-1, top.indices, top.values / top.values.sum(-1, keepdim=True))
    torch.testing.assert_close(filtered, expected)


def test_sample_draws_from_the_filtered_distribution():
    table = markov_table(seed=12)
    rows = 20000
    tokens, scores = sample(markov_step(table), torch.zeros(rows, dtype=torch.long), max_len=1, top_p=0.8,
                            temperature=1.5, generator=torch.Generator().manual_seed(2))
    expected = sampling_distribution(table[:1], temperature=1.5, top_p=0.8).exp()[0]
    frequencies = torch.bincount(tokens[:, 0], minlength=6).double() / rows
    torch.testing.assert_close(frequencies, expected, atol=0.015, rtol=0)
    torch.testing.assert_close(scores, table[0, tokens[:, 0]])


def test_sampling_pads_after_eos():
    table = markov_table(seed=13, eos_bias=2.0)
    tokens, scores = sample(markov_step(table), torch.zeros(50, dtype=torch.long), max_len=8, eos_id=EOS,
                            pad_id=5, generator=torch.Generator().manual_seed(3))
    ended = 0
    for row, score in zip(tokens.tolist(), scores.tolist()):
        if EOS in row:
            ended += 1
            n = row.index(EOS) + 1
            assert all(t == 5 for t in row[n:])
            assert score == pytest.approx(sequence_log_prob(table, 0, row[:n]))
    assert ended > 0


# -- a limit per batch item ------------------------------------------------------------------------------
@pytest.mark.parametrize("early_stopping", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_per_item_limits_give_each_item_what_it_gets_alone(seed, early_stopping):
    """With one max_len per item, an item's hypotheses and scores are those of a search of it alone at its
    own max_len, whatever the limits of the items beside it."""
    table = markov_table(seed=seed, eos_bias=-1.5)  # eos rare: many hypotheses run into their limit
    step = markov_step(table)
    starts, limits = torch.tensor([0, 2, 4, 5]), [2, 7, 4, 7]
    tokens, scores = beam_search(step, starts, 3, torch.tensor(limits), EOS, early_stopping=early_stopping,
                                 num_return=3)
    for item, (start, limit) in enumerate(zip(starts, limits)):
        alone, alone_scores = beam_search(step, start.view(1), 3, limit, EOS, early_stopping=early_stopping,
                                          num_return=3)
        torch.testing.assert_close(scores[item], alone_scores[0])
        for rank in range(3):
            width = alone.shape[2]
            assert tokens[item, rank, :width].tolist() == alone[0, rank].tolist()
            assert (tokens[item, rank, width:] == EOS).all()  # padding (pad_id defaults to eos)
    for decode in (greedy_search, lambda *args, **kw: sample(*args, top_k=1, **kw)):
        rows, row_scores = decode(step, starts, limits, eos_id=EOS, pad_id=0)
        for item, (start, limit) in enumerate(zip(starts, limits)):
            alone, alone_scores = decode(step, start.view(1), limit, eos_id=EOS, pad_id=0)
            assert rows[item, :alone.shape[1]].tolist() == alone[0].tolist()
            assert (rows[item, alone.shape[1]:] == 0).all()
            torch.testing.assert_close(row_scores[item], alone_scores[0])


# -- arguments -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("call, message", [
    (lambda step: sample(step, torch.tensor([0]), 3, temperature=0.0), "temperature"),
    (lambda step: sample(step, torch.tensor([0]), 3, top_k=0), "top_k"),
    (lambda step: sample(step, torch.tensor([0]), 3, top_p=1.5), "top_p"),
    (lambda step: beam_search(step, torch.tensor([0]), 0, 3, EOS), "beam_size"),
    (lambda step: beam_search(step, torch.tensor([0]), 2, 3, EOS, num_return=3), "num_return"),
    (lambda step: greedy_search(step, torch.tensor([0.5]), 3), "start_tokens"),
    (lambda step: greedy_search(step, torch.tensor([0]), 0), "max_len"),
    (lambda step: greedy_search(step, torch.tensor([0, 1]), torch.tensor([3])), r"one integer per batch item, shape \(2,\)"),
    (lambda step: beam_search(step, torch.tensor([0, 1]), 2, [3, 0], EOS), "max_len"),
    (lambda step: beam_search(step, torch.tensor([0, 1]), 2, torch.tensor([3.0, 2.0]), EOS), "max_len"),
])
def test_invalid_arguments_are_reported(call, message):
    with pytest.raises(ValueError, match=message):
        call(markov_step(markov_table()))


def test_docstring_examples():
    results = doctest.testmod(decoding)
    assert results.attempted > 0 and results.failed == 0


def test_length_penalty_formula():
    assert decoding.gnmt_length_penalty(1, 0.6) == 1.0
    assert decoding.gnmt_length_penalty(7, 0.6) == pytest.approx(math.pow(2.0, 0.6))
