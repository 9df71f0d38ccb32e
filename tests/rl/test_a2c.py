import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Categorical

from deepzen.rl import A2C, A2CConfig, ActorCritic, a2c_loss, generalized_advantages
from deepzen.rl.agents import LearningHistory


def test_n_step_returns_by_hand():
    """lam = 1: advantages + V are the n-step returns r_t + g r_t+1 + ... + g^k V(bootstrap)."""
    rewards = torch.tensor([[1.0], [2.0], [3.0]])            # (T, N) = (3, 1)
    values = torch.tensor([[0.5], [1.0], [1.5], [2.0]])      # (T + 1, N)
    none = torch.zeros(3, 1)
    at_step_1 = torch.tensor([[0.0], [1.0], [0.0]])

    def returns(terminated, ends):
        return (generalized_advantages(rewards, values, terminated, ends, 0.5, 1.0) + values[:-1]).squeeze(1)

    # no episode end: R2 = 3 + .5 * 2 = 4, R1 = 2 + .5 * 4 = 4, R0 = 1 + .5 * 4 = 3
    assert torch.allclose(returns(none, none), torch.tensor([3.0, 4.0, 4.0]))
    # terminal at t=1: R1 = 2, R0 = 1 + .5 * 2 = 2, a new episode starts at t=2: R2 = 4
    assert torch.allclose(returns(at_step_1, at_step_1), torch.tensor([2.0, 2.0, 4.0]))
    # cut by a time limit at t=1: bootstrap from V(s_2) = 1.5: R1 = 2.75, R0 = 1 + .5 * 2.75
    assert torch.allclose(returns(none, at_step_1), torch.tensor([2.375, 2.75, 4.0]))


def direct_gae(rewards, values, terminated, ends, gamma, lam):
    """A_t = sum_k (gamma lam)^k delta_{t+k}, summed up to the end of t's episode or of the rollout."""
    T, N = rewards.shape
    out = np.zeros((T, N))
    for n in range(N):
        deltas = [rewards[t, n] + gamma * (1 - terminated[t, n]) * values[t + 1, n] - values[t, n] for t in range(T)]
        for t in range(T):
            for k in range(t, T):
                out[t, n] += (gamma * lam) ** (k - t) * deltas[k]
                if ends[k, n]:
                    break
    return out


@pytest.mark.parametrize("lam", [0.0, 0.95, 1.0])
def test_gae_matches_the_direct_sum(lam):
    generator = torch.Generator().manual_seed(0)
    T, N = 7, 3
    rewards = torch.randn(T, N, generator=generator)
    values = torch.randn(T + 1, N, generator=generator)
    ends = (torch.rand(T, N, generator=generator) < 0.3).float()
    terminated = ends * (torch.rand(T, N, generator=generator) < 0.5).float()  # some ends are time-limit cuts
    advantages = generalized_advantages(rewards, values, terminated, ends, 0.9, lam)
    expected = direct_gae(rewards.numpy(), values.numpy(), terminated.numpy(), ends.numpy(), 0.9, lam)
    assert np.allclose(advantages.numpy(), expected, atol=1e-5)


def test_gae_rejects_misaligned_values():
    with pytest.raises(ValueError, match="one more step"):
        generalized_advantages(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2), 0.9, 1.0)


def test_a2c_loss_terms_against_categorical():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 3, generator=generator, requires_grad=True)
    values = torch.randn(6, generator=generator, requires_grad=True)
    actions = torch.randint(3, (6,), generator=generator)
    advantages = torch.randn(6, generator=generator, requires_grad=True)
    returns = torch.randn(6, generator=generator)
    weights = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 1.0])  # rows 2 and 4 are ignored reset steps
    loss = a2c_loss(logits, values, actions, advantages, returns, weights, value_coef=0.5, entropy_coef=0.01)

    keep = weights.bool()
    dist = Categorical(logits=logits[keep])
    policy = -(advantages[keep] * dist.log_prob(actions[keep])).mean()
    value = F.mse_loss(values[keep], returns[keep])
    entropy = dist.entropy().mean()
    assert torch.allclose(loss.policy, policy) and torch.allclose(loss.value, value)
    assert torch.allclose(loss.entropy, entropy)
    assert torch.allclose(loss.total, policy + 0.5 * value - 0.01 * entropy)
    loss.total.backward()
    assert advantages.grad is None  # advantages are constants of the policy gradient
    assert logits.grad[~keep].abs().max() == 0 and values.grad[~keep].abs().max() == 0


def test_actor_critic_shares_its_body():
    network = ActorCritic(4, 2, hidden_units=(16, 16))
    observations = torch.randn(5, 4)
    logits, values = network(observations)
    assert logits.shape == (5, 2) and values.shape == (5,)
    assert logits.abs().max() < 0.2  # the policy head's gain 0.01 starts near the uniform policy
    (logits.sum() + values.sum()).backward()
    assert all(p.grad is not None for p in network.parameters())  # both heads reach every body weight


def test_rollouts_mask_reset_steps_and_record_episodes():
    agent = A2C("CartPole-v1", A2CConfig(num_envs=3, n_steps=8, hidden_units=(8,)), seed=0)
    agent.start_session(total_steps=10_000)
    history = LearningHistory()
    ends, weights, rewards = [], [], []
    try:
        for _ in range(15):  # 360 steps: with a random initial policy, several episodes end
            agent.collect_rollout(history)
            ends.append(agent.rollout["episode_ends"].clone())
            weights.append(agent.rollout["weights"].clone())
            rewards.append(agent.rollout["rewards"].clone())
    finally:
        agent.end_session()
    ends, weights, rewards = torch.cat(ends), torch.cat(weights), torch.cat(rewards)   # (T_total, N)
    assert ends.sum() >= 5
    previous_ends = torch.cat([torch.zeros(1, 3), ends[:-1]])
    assert torch.equal(weights, 1.0 - previous_ends)  # exactly the step after an episode end is ignored
    assert (rewards[weights == 0] == 0).all()
    assert len(history.episode_returns) == int(ends.sum())
    finished = torch.cumsum(ends.flip(0), 0).flip(0) > 0   # steps belonging to finished episodes
    assert sum(history.episode_returns) == pytest.approx(float(rewards[finished].sum()))
    assert agent.steps_done == 15 * 8 * 3


def test_update_reduces_the_loss_on_a_fixed_rollout():
    agent = A2C("CartPole-v1", A2CConfig(num_envs=4, n_steps=16, hidden_units=(16,), learning_rate=1e-3), seed=0)
    agent.start_session(total_steps=10_000)
    agent.collect_rollout(LearningHistory())
    agent.end_session()
    first = agent.update().value.item()
    for _ in range(20):
        last = agent.update().value.item()
    assert last < first  # gradient steps on the same rollout fit its value targets
