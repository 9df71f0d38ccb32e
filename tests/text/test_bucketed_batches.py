"""The one length-bucketed batcher (deepzen.data.text.BucketedBatches) serves translation's pairs too."""

from __future__ import annotations

import numpy as np
import torch

from deepzen.data.text import length_buckets
from deepzen.text.translation import IGNORE_INDEX, ParallelBatches, teacher_forcing_tensors


def reference_pairs(source, target_in, target_out, batch_size, seed, epoch, pad_index=0):
    """Brute force: group by target length, cut the source to its longest and both targets to theirs."""
    source_lengths = (source != pad_index).sum(1).numpy()
    target_lengths = (target_out != IGNORE_INDEX).sum(1).numpy()
    for indices in length_buckets(target_lengths, batch_size, shuffle=True, seed=seed + epoch):
        index = torch.from_numpy(indices)
        s, t = max(int(source_lengths[indices].max()), 1), int(target_lengths[indices].max())
        yield ((source[:, :s].index_select(0, index), target_in[:, :t].index_select(0, index)),
               target_out[:, :t].index_select(0, index))


def test_pairs_are_grouped_by_target_length_and_cut_to_each_tensors_longest():
    rng = np.random.default_rng(0)
    sources = [list(rng.integers(4, 50, rng.integers(1, 12))) for _ in range(200)]
    targets = [list(rng.integers(4, 50, rng.integers(1, 15))) for _ in range(200)]
    tensors = teacher_forcing_tensors(sources, targets)
    batches = ParallelBatches(*tensors, batch_size=16, seed=3)
    for epoch in range(2):  # a new grouping each epoch, as the reference draws it
        got, expected = list(batches), list(reference_pairs(*tensors, 16, 3, epoch))
        assert len(got) == len(expected) == 13
        for ((source, target_in), target_out), ((s, t_in), t_out) in zip(got, expected):
            assert torch.equal(source, s) and torch.equal(target_in, t_in) and torch.equal(target_out, t_out)
