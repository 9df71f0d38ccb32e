"""TextWindows under DDP: each process takes its slice of the same seeded global batch."""

import pytest
import torch

from deepzen.training import distributed
from deepzen.text.language_model import TextWindows

IDS = torch.arange(500) * 7


def batches_as(monkeypatch, rank, world, batch_size=10):
    monkeypatch.setattr(distributed, "rank", lambda: rank)
    monkeypatch.setattr(distributed, "world_size", lambda: world)
    return list(TextWindows(IDS, seq_len=6, batch_size=batch_size, steps=4, seed=3))


@pytest.mark.parametrize("world", [2, 3])
def test_the_ranks_batches_partition_the_global_batch(monkeypatch, world):
    single = batches_as(monkeypatch, 0, 1)
    ranks = [batches_as(monkeypatch, rank, world) for rank in range(world)]
    for step, (x, y) in enumerate(single):
        assert x.shape == (10, 6)
        parts = [batches[step] for batches in ranks]
        assert [len(part_x) for part_x, _ in parts] == [len(chunk) for chunk in torch.arange(10).tensor_split(world)]
        assert torch.equal(torch.cat([part_x for part_x, _ in parts]), x)
        assert torch.equal(torch.cat([part_y for _, part_y in parts]), y)


def test_a_global_batch_smaller_than_the_world_is_refused(monkeypatch):
    with pytest.raises(ValueError, match="batch_size=2"):
        batches_as(monkeypatch, 0, 3, batch_size=2)
