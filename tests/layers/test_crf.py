import doctest
import itertools

import pytest
import torch

from deepzen.layers import crf as crf_module
from deepzen.layers.crf import CRF, CRFLoss, TransitionConstraints, allowed_transitions

K = 3


def random_crf(num_tags=K, constraints=None, seed=0):
    torch.manual_seed(seed)
    crf = CRF(num_tags, constraints=constraints).double()
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


def path_score(crf, emissions, path):
    """Brute-force score of one path for one sequence: emissions (L, K), path a tuple of L tags."""
    score = crf.start_transitions[path[0]] + crf.end_transitions[path[-1]]
    score = score + sum(emissions[t, y] for t, y in enumerate(path))
    return score + sum(crf.transitions[a, b] for a, b in zip(path, path[1:]))


def all_paths(length, constraints=None):
    """Every tag path of ``length``; with constraints only the allowed ones."""
    for path in itertools.product(range(K), repeat=length):
        if constraints is None or (constraints.start[path[0]] and constraints.end[path[-1]]
                                   and all(constraints.transitions[a, b] for a, b in zip(path, path[1:]))):
            yield path


def batch(lengths=(4, 2, 1, 3), seed=1):
    torch.manual_seed(seed)
    n, t = len(lengths), max(lengths)
    emissions = torch.randn(n, t, K, dtype=torch.float64)
    tags = torch.randint(0, K, (n, t))
    mask = torch.arange(t) < torch.tensor(lengths).unsqueeze(1)
    return emissions, tags, mask, lengths


def test_log_partition_and_nll_match_brute_force():
    crf = random_crf()
    emissions, tags, mask, lengths = batch()
    log_z = crf.log_partition(emissions, mask)
    nll = crf.nll(emissions, tags, mask)
    for i, length in enumerate(lengths):
        scores = torch.stack([path_score(crf, emissions[i, :length], p) for p in all_paths(length)])
        expected_log_z = torch.logsumexp(scores, 0)
        gold = path_score(crf, emissions[i, :length], tuple(tags[i, :length].tolist()))
        torch.testing.assert_close(log_z[i], expected_log_z)
        torch.testing.assert_close(nll[i], expected_log_z - gold)
    assert (nll > 0).all()


def test_viterbi_matches_brute_force_argmax():
    crf = random_crf(seed=3)
    emissions, _, mask, lengths = batch(seed=4)
    tags, scores = crf.decode(emissions, mask, return_scores=True)
    for i, length in enumerate(lengths):
        best = max(all_paths(length), key=lambda p: path_score(crf, emissions[i, :length], p).item())
        assert tags[i, :length].tolist() == list(best)
        assert (tags[i, length:] == -100).all()
        torch.testing.assert_close(scores[i], path_score(crf, emissions[i, :length], best))


def test_padding_values_do_not_change_results():
    crf = random_crf(seed=5)
    emissions, tags, mask, _ = batch(seed=6)
    padding = ~mask.unsqueeze(-1)
    noisy_emissions = emissions.masked_fill(padding, 1e3) + padding * torch.randn_like(emissions)
    noisy_tags = tags.masked_fill(~mask, -100)
    torch.testing.assert_close(crf.nll(noisy_emissions, noisy_tags, mask), crf.nll(emissions, tags, mask))
    assert torch.equal(crf.decode(noisy_emissions, mask), crf.decode(emissions, mask))
    # Each sequence alone (no padding at all) gives the same values as inside the padded batch.
    for i in range(len(mask)):
        length = int(mask[i].sum())
        alone = crf.nll(emissions[i:i + 1, :length], tags[i:i + 1, :length])
        torch.testing.assert_close(alone[0], crf.nll(emissions, tags, mask)[i])


def test_nll_gradcheck_float64():
    crf = random_crf(seed=7)
    emissions, tags, mask, _ = batch(seed=8)

    class NLL(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.crf = crf

        def forward(self, emissions):
            return self.crf.nll(emissions, tags, mask)

    def nll(emissions, transitions, start, end):
        params = {"crf.transitions": transitions, "crf.start_transitions": start, "crf.end_transitions": end}
        return torch.func.functional_call(NLL(), params, (emissions,))

    inputs = [emissions, crf.transitions, crf.start_transitions, crf.end_transitions]
    inputs = [x.detach().clone().requires_grad_() for x in inputs]
    assert torch.autograd.gradcheck(nll, inputs)


def test_mask_must_start_with_true():
    crf = random_crf()
    emissions, tags, mask, _ = batch()
    mask[1, 0] = False
    with pytest.raises(RuntimeError, match=r"mask\[:, 0\]"):
        crf.nll(emissions, tags, mask)


def test_shape_errors_name_the_layer():
    crf = CRF(K, name="tagger_crf")
    with pytest.raises(ValueError, match=r"tagger_crf.*\(N, T, 3\).*Received"):
        crf.nll(torch.randn(2, 4, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="mask"):
        crf.decode(torch.randn(2, 4, 3), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="num_tags"):
        CRF(0)


# -- constraints --------------------------------------------------------------------------------------


def is_valid(constraints, tag_names, sequence):
    index = [tag_names.index(tag) for tag in sequence.split()]
    return bool(constraints.start[index[0]] and constraints.end[index[-1]]
                and all(constraints.transitions[a, b] for a, b in zip(index, index[1:])))


TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
TAGS_IOBES = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]


@pytest.mark.parametrize("scheme, tags, sequence, valid", [
    ("BIO", TAGS, "B-PER I-PER O B-LOC I-LOC I-LOC", True),
    ("BIO", TAGS, "B-PER B-PER B-LOC", True),
    ("BIO", TAGS, "I-PER O", False),
    ("BIO", TAGS, "O I-LOC", False),
    ("BIO", TAGS, "B-LOC I-PER", False),
    ("IOB1", TAGS, "I-PER I-PER B-PER O I-LOC", True),
    ("IOB1", TAGS, "B-PER I-PER", False),
    ("IOB1", TAGS, "O B-LOC", False),
    ("IOB1", TAGS, "I-PER B-LOC", False),
    ("IOBES", TAGS_IOBES, "B-PER I-PER E-PER O S-LOC B-LOC E-LOC", True),
    ("IOBES", TAGS_IOBES, "S-PER S-PER", True),
    ("IOBES", TAGS_IOBES, "B-PER O", False),
    ("IOBES", TAGS_IOBES, "O I-PER E-PER", False),
    ("IOBES", TAGS_IOBES, "B-PER E-LOC", False),
    ("IOBES", TAGS_IOBES, "O B-PER I-PER", False),
    ("IOBES", TAGS_IOBES, "E-PER", False),
])
def test_allowed_transitions_follow_the_scheme(scheme, tags, sequence, valid):
    assert is_valid(allowed_transitions(tags, scheme), tags, sequence) == valid


def test_allowed_transitions_rejects_unknown_tags_and_schemes():
    with pytest.raises(ValueError, match="E-PER"):
        allowed_transitions(["O", "E-PER"], "BIO")
    with pytest.raises(ValueError, match="scheme"):
        allowed_transitions(["O"], "BILOU")


def test_constraints_make_disallowed_paths_impossible():
    tag_names = ["O", "B-X", "I-X"]
    constraints = allowed_transitions(tag_names, "BIO")
    crf = random_crf(constraints=constraints, seed=9)
    emissions, tags, mask, lengths = batch(seed=10)
    emissions[:, :, 2] += 5.0  # emissions favour I-X everywhere, including the forbidden first position
    log_z = crf.log_partition(emissions, mask)
    decoded, scores = crf.decode(emissions, mask, return_scores=True)
    for i, length in enumerate(lengths):
        allowed = list(all_paths(length, constraints))
        path_scores = torch.stack([path_score(crf, emissions[i, :length], p) for p in allowed])
        torch.testing.assert_close(log_z[i], torch.logsumexp(path_scores, 0))
        assert tuple(decoded[i, :length].tolist()) == allowed[int(path_scores.argmax())]
        torch.testing.assert_close(scores[i], path_scores.max())
    # A gold path through a forbidden transition has (numerically) zero probability.
    forbidden = torch.tensor([[0, 2, 2, 2]])
    assert crf.nll(emissions[:1], forbidden).item() > 1e3


def test_constraints_for_wrong_number_of_tags_are_rejected():
    with pytest.raises(ValueError, match="constraints"):
        CRF(4, constraints=allowed_transitions(["O", "B-X", "I-X"]))


def test_config_round_trip_keeps_constraints():
    crf = CRF(3, constraints=allowed_transitions(["O", "B-X", "I-X"]), name="crf")
    clone = CRF.from_config(crf.get_config())
    assert isinstance(clone.get_config()["constraints"], dict)
    assert torch.equal(clone._transition_penalty, crf._transition_penalty)
    assert torch.equal(clone._start_penalty, crf._start_penalty)


# -- use in a model --------------------------------------------------------------------------------------


def test_forward_passes_emissions_and_checks_num_tags():
    crf = CRF(K)
    emissions = torch.randn(2, 4, K)
    assert crf(emissions) is emissions
    with pytest.raises(ValueError, match="emissions"):
        CRF(K)(torch.randn(2, 4, K + 1))


def test_crf_loss_derives_mask_from_ignore_index():
    crf = random_crf(seed=11)
    emissions, tags, mask, _ = batch(seed=12)
    y_true = tags.masked_fill(~mask, -100)
    expected = crf.nll(emissions, tags, mask)
    torch.testing.assert_close(CRFLoss(crf)(y_true, emissions), expected.mean())
    torch.testing.assert_close(CRFLoss(crf, reduction="sum")(y_true, emissions), expected.sum())
    torch.testing.assert_close(CRFLoss(crf, reduction="none")(y_true, emissions), expected)


def test_crf_loss_checks_targets_before_training():
    loss = CRFLoss(CRF(K))
    example = torch.randn(2, 4, K)
    loss.check_targets(example, torch.tensor([[0, 1, 2, -100], [2, -100, -100, -100]]))
    assert loss.prepare_targets([[0.0, 2.0]]).dtype == torch.long
    for y_true, message in [(torch.tensor([[0, 1, 3, -100], [0, 0, 0, 0]]), r"\[0, 3\)"),
                            (torch.tensor([[-100, 1, 2, 0], [0, 0, 0, 0]]), "start"),
                            (torch.zeros(2, 5, dtype=torch.long), r"\(N, 4\)")]:
        with pytest.raises(ValueError, match=message):
            loss.check_targets(example, y_true)
    with pytest.raises(ValueError, match="emissions"):
        loss.check_targets(torch.randn(2, 4, K + 1), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        loss.prepare_targets([[0.5, 1.0]])


def test_transition_constraints_check_their_shapes():
    with pytest.raises(ValueError, match="Received"):
        TransitionConstraints(torch.ones(3, 3, dtype=torch.bool), torch.ones(2, dtype=torch.bool),
                              torch.ones(3, dtype=torch.bool))


def test_training_learns_a_tagging_rule():
    # Emissions say nothing about the tag; only the transitions can learn "tags alternate 0, 1, 0, 1".
    torch.manual_seed(0)
    crf = CRF(2)
    optimizer = torch.optim.Adam(crf.parameters(), lr=0.1)
    tags = torch.tensor([[0, 1, 0, 1, 0], [1, 0, 1, 0, 1]])
    emissions = torch.zeros(2, 5, 2)
    emissions[1, 0, 1] = 1.0  # only the first token of the second sequence hints at its start
    emissions[0, 0, 0] = 1.0
    for _ in range(100):
        optimizer.zero_grad()
        crf.nll(emissions, tags).mean().backward()
        optimizer.step()
    assert torch.equal(crf.decode(emissions), tags)


def test_docstring_examples():
    results = doctest.testmod(crf_module)
    assert results.attempted > 0 and results.failed == 0
