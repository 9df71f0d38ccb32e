"""Augment(seed=s) under DDP: rank r draws from seed s + r, so the processes augment differently."""

import pytest
import torch

from deepzen.training import distributed
from deepzen.vision.augment import Augment, RandomCrop, RandomFlip


def augmented_as(monkeypatch, rank, images, seed=5):
    monkeypatch.setattr(distributed, "rank", lambda: rank)
    augment = Augment(RandomCrop(6, padding=2), RandomFlip("horizontal"), seed=seed)
    return augment(images), augment.generator(images.device).initial_seed()


def reference(images, seed):
    """The two transforms applied in order with one generator seeded ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return RandomFlip("horizontal")(RandomCrop(6, padding=2)(images, generator), generator)


@pytest.mark.parametrize("rank", [0, 1, 3])
def test_rank_r_draws_from_seed_plus_r(monkeypatch, rank):
    images = torch.rand(32, 3, 6, 6)
    output, initial_seed = augmented_as(monkeypatch, rank, images)
    assert initial_seed == 5 + rank
    assert torch.equal(output, reference(images, 5 + rank))


def test_rank_zero_matches_a_single_process_and_other_ranks_differ(monkeypatch):
    images = torch.rand(32, 3, 6, 6)
    single = Augment(RandomCrop(6, padding=2), RandomFlip("horizontal"), seed=5)(images)  # no torchrun
    assert torch.equal(augmented_as(monkeypatch, 0, images)[0], single)
    assert not torch.equal(augmented_as(monkeypatch, 1, images)[0], single)
