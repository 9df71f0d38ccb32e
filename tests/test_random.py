"""deepzen.random: Keras's seeding rules (int seeds repeat, SeedGenerators advance) and the distributions."""

import doctest

import numpy as np
import pytest
import torch
from scipy import stats

from deepzen import random


def test_int_seed_repeats_and_seed_generator_advances_reproducibly():
    assert torch.equal(random.normal((5,), seed=3), random.normal((5,), seed=3))
    first, second = random.SeedGenerator(11), random.SeedGenerator(11)
    a, b = random.uniform((5,), seed=first), random.uniform((5,), seed=first)
    assert not torch.equal(a, b)
    assert torch.equal(a, random.uniform((5,), seed=second)) and torch.equal(b, random.uniform((5,), seed=second))
    torch.manual_seed(0)
    unseeded = random.normal((3,))
    torch.manual_seed(0)
    assert torch.equal(unseeded, random.normal((3,)))  # seed=None: torch's global generator


@pytest.mark.parametrize("draw, distribution", [
    (lambda: random.normal((20000,), mean=2.0, stddev=3.0, seed=1), stats.norm(2.0, 3.0)),
    (lambda: random.uniform((20000,), minval=-1.0, maxval=4.0, seed=2), stats.uniform(-1.0, 5.0)),
    (lambda: random.truncated_normal((20000,), mean=1.0, stddev=0.5, seed=3), stats.truncnorm(-2, 2, 1.0, 0.5)),
])
def test_samples_follow_their_distribution(draw, distribution):
    assert stats.kstest(draw().double().numpy(), distribution.cdf).pvalue > 1e-3


def test_randint_dropout_shuffle():
    values = random.randint((1000,), 3, 7, seed=0)
    assert values.dtype == torch.int32 and set(values.tolist()) == {3, 4, 5, 6}
    x = torch.ones(10000)
    dropped = random.dropout(x, 0.25, seed=0)
    assert torch.allclose(dropped.unique(), torch.tensor([0.0, 4 / 3]))
    assert abs((dropped == 0).float().mean().item() - 0.25) < 0.02
    shuffled = random.shuffle(torch.arange(10), seed=0)
    assert sorted(shuffled.tolist()) == list(range(10)) and shuffled.tolist() != list(range(10))
    with pytest.raises(ValueError, match="seed must be None, an int or a deepzen.random.SeedGenerator"):
        random.normal((2,), seed="x")


def test_docstring_examples():
    result = doctest.testmod(random)
    assert result.attempted > 0 and result.failed == 0
