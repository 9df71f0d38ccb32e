import numpy as np
import pytest
import torch

from deepzen.rl import ReplayBuffer


def fill(buffer, count):
    for i in range(count):
        buffer.add([i, -i], action=i % 3, reward=float(i), next_observation=[i + 1, -i - 1], terminated=i % 4 == 0)


def test_add_stores_fields_and_wraps_around():
    buffer = ReplayBuffer(capacity=5, observation_shape=(2,), seed=0)
    fill(buffer, 7)  # transitions 5 and 6 overwrite slots 0 and 1
    assert len(buffer) == 5 and buffer.position == 2
    expected = [5, 6, 2, 3, 4]
    assert buffer.observations.tolist() == [[i, -i] for i in expected]
    assert buffer.next_observations.tolist() == [[i + 1, -i - 1] for i in expected]
    assert buffer.actions.tolist() == [i % 3 for i in expected]
    assert buffer.rewards.tolist() == [float(i) for i in expected]
    assert buffer.terminated.tolist() == [float(i % 4 == 0) for i in expected]


def test_sample_draws_only_stored_transitions_uniformly():
    buffer = ReplayBuffer(capacity=100, observation_shape=(2,), seed=1)
    fill(buffer, 10)  # slots 10..99 are empty zeros and must never be drawn
    batch = buffer.sample(20_000)
    ids = batch.observations[:, 0].long()
    assert ids.min() >= 0 and ids.max() <= 9
    counts = torch.bincount(ids, minlength=10).double()
    assert (counts.sub(2000).abs() < 200).all()  # about 4.5 binomial standard deviations
    # every field of a sampled row belongs to the same transition
    assert torch.equal(batch.next_observations[:, 0], batch.observations[:, 0] + 1)
    assert torch.equal(batch.actions, ids % 3)
    assert torch.equal(batch.rewards, ids.float())
    assert torch.equal(batch.terminated, (ids % 4 == 0).float())


def test_sample_after_wrap_uses_every_slot():
    buffer = ReplayBuffer(capacity=4, observation_shape=(2,), seed=2)
    fill(buffer, 6)
    ids = set(buffer.sample(1000).observations[:, 0].long().tolist())
    assert ids == {2, 3, 4, 5}


def test_sampling_is_reproducible_with_a_seed_and_typed():
    first, second = (ReplayBuffer(8, (2,), seed=3) for _ in range(2))
    for buffer in (first, second):
        fill(buffer, 8)
    a, b = first.sample(16), second.sample(16)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert a.observations.dtype == torch.float32 and a.actions.dtype == torch.int64
    assert a.observations.shape == (16, 2) and a.rewards.shape == (16,)


def test_numpy_writes_reach_the_tensors():
    buffer = ReplayBuffer(3, (2, 2))
    buffer.add(np.ones((2, 2), dtype=np.float32), 1, 0.5, np.full((2, 2), 2.0), True)
    assert torch.equal(buffer.observations[0], torch.ones(2, 2))
    assert torch.equal(buffer.next_observations[0], torch.full((2, 2), 2.0))


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0, (2,))
    with pytest.raises(ValueError, match="empty buffer"):
        ReplayBuffer(3, (2,)).sample(2)
