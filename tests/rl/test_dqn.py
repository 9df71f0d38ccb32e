import copy
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepzen.rl import DQN, DQNConfig, LinearSchedule, evaluate, q_learning_targets, update_target


def test_linear_schedule_matches_the_formula():
    schedule = LinearSchedule(1.0, 0.04, duration=16_000)  # rl-zoo's CartPole epsilon over a 100k budget
    for step in (0, 1, 4000, 8000, 15_999):
        assert schedule(step) == pytest.approx(1.0 + (0.04 - 1.0) * step / 16_000)
    assert schedule(16_000) == schedule(99_999) == 0.04
    assert LinearSchedule(0.5, 0.1, duration=0)(0) == 0.1


def test_epsilon_schedule_spans_the_exploration_fraction_of_the_budget():
    agent = DQN("CartPole-v1", DQNConfig(hidden_units=(8,), exploration_fraction=0.25,
                                         exploration_initial_eps=0.9, exploration_final_eps=0.1), seed=0)
    agent.start_session(total_steps=1000)
    agent.end_session()
    assert agent.epsilon(0) == pytest.approx(0.9)
    assert agent.epsilon(125) == pytest.approx(0.5)
    assert agent.epsilon(250) == agent.epsilon(999) == pytest.approx(0.1)


def test_dqn_and_double_dqn_targets_by_hand():
    rewards = torch.tensor([1.0, 0.0, 2.0])
    next_q_target = torch.tensor([[1.0, 3.0], [2.0, 0.0], [5.0, 4.0]])
    next_q_online = torch.tensor([[4.0, 1.0], [0.0, 2.0], [1.0, 0.0]])
    terminated = torch.tensor([0.0, 0.0, 1.0])
    # DQN: max_a Q_target(s', a) = [3, 2, 5]; the third next state is terminal
    plain = q_learning_targets(rewards, next_q_target, terminated, 0.9)
    assert torch.allclose(plain, torch.tensor([1.0 + 0.9 * 3.0, 0.0 + 0.9 * 2.0, 2.0]))
    # Double DQN: the online net picks a* = [0, 1, 0]; the target net rates them [1, 0, 5]
    double = q_learning_targets(rewards, next_q_target, terminated, 0.9, next_q_online)
    assert torch.allclose(double, torch.tensor([1.0 + 0.9 * 1.0, 0.0 + 0.9 * 0.0, 2.0]))


def test_soft_and_hard_target_updates():
    online, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in target.parameters()]
    update_target(target, online, tau=0.25)
    for new, old, source in zip(target.parameters(), before, online.parameters()):
        assert torch.allclose(new, 0.75 * old + 0.25 * source)
    update_target(target, online, tau=1.0)
    assert all(torch.equal(t, o) for t, o in zip(target.parameters(), online.parameters()))


REFERENCE_LOSSES = {  # DQNConfig's (loss, huber_delta) -> torch's computation of that loss
    ("huber", 1.0): lambda q, y: F.huber_loss(q, y, delta=1.0),
    ("huber", 0.5): lambda q, y: F.huber_loss(q, y, delta=0.5),  # not smooth_l1_loss(beta=0.5): that is huber / 0.5
    ("mse", 1.0): F.mse_loss,
}


@pytest.mark.parametrize("loss_name, huber_delta", sorted(REFERENCE_LOSSES))
@pytest.mark.parametrize("double_dqn", [False, True])
def test_train_phase_takes_the_reference_gradient_step(double_dqn, loss_name, huber_delta):
    config = DQNConfig(hidden_units=(16,), batch_size=8, gradient_steps=1, double_dqn=double_dqn, gamma=0.9,
                       max_grad_norm=0.5, learning_rate=0.01, loss=loss_name, huber_delta=huber_delta)
    agent = DQN("CartPole-v1", config, seed=0)
    agent.start_session(total_steps=1000)
    agent.end_session()
    generator = torch.Generator().manual_seed(5)
    for _ in range(50):  # rewards in [-2, 2]: TD errors on both sides of every delta tested
        agent.buffer.add(torch.randn(4, generator=generator), int(torch.randint(2, (), generator=generator)),
                         float(4 * torch.rand((), generator=generator) - 2), torch.randn(4, generator=generator),
                         bool(torch.rand((), generator=generator) < 0.3))
    update_target(agent.target_network, agent.network, 1.0)
    with torch.no_grad():  # make the target net differ from the online net, so DQN and Double DQN differ
        for p in agent.target_network.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator))
    reference = copy.deepcopy(agent.network)
    state = agent.buffer.generator.get_state()
    batch = agent.buffer.sample(8)
    agent.buffer.generator.set_state(state)  # the phase will draw the same batch

    loss = agent.train_phase()

    with torch.no_grad():
        next_q = agent.target_network(batch.next_observations)
        if double_dqn:
            chosen = reference(batch.next_observations).argmax(1)
        else:
            chosen = next_q.argmax(1)
        targets = batch.rewards + 0.9 * (1 - batch.terminated) * next_q[torch.arange(8), chosen]
    q_taken = reference(batch.observations)[torch.arange(8), batch.actions]
    td_errors = (q_taken - targets).abs()
    assert (td_errors < huber_delta).any() and (td_errors > huber_delta).any()  # both branches of the Huber loss
    expected_loss = REFERENCE_LOSSES[loss_name, huber_delta](q_taken, targets)
    if loss_name == "mse":  # the case would be vacuous if MSE and Huber agreed on this batch
        assert not torch.allclose(expected_loss, F.huber_loss(q_taken, targets, delta=huber_delta))
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.01, eps=1e-7)
    expected_loss.backward()
    torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
    optimizer.step()
    assert loss == pytest.approx(expected_loss.item(), rel=1e-6)
    for new, expected in zip(agent.network.parameters(), reference.parameters()):
        assert torch.allclose(new, expected, atol=1e-6)


def test_config_errors_name_the_setting():
    with pytest.raises(ValueError, match="tau"):
        DQNConfig(tau=0.0)
    with pytest.raises(ValueError, match=re.escape("expects loss in ('huber', 'mse'). Received: loss='hinge'")):
        DQNConfig(loss="hinge")
    for delta in (0.0, -1.0, float("nan")):  # refused when the config is made, not at the first training phase
        with pytest.raises(ValueError, match=re.escape(f"expects huber_delta > 0. Received: huber_delta={delta!r}")):
            DQNConfig(huber_delta=delta)
    with pytest.raises(TypeError, match="DQNConfig"):
        DQN("CartPole-v1", config={"tau": 1.0})


def test_short_cartpole_training_beats_random_play():
    """Random play averages about 22 on CartPole; 8000 steps of DQN (seed 0) keep a greedy policy scoring
    over 100 on 50 fresh episodes (observed: 149; the evaluations during training read 99, 146, 132, 144)."""
    config = DQNConfig(hidden_units=(64, 64), learning_starts=500, train_freq=64, gradient_steps=32,
                       exploration_fraction=0.2)
    agent = DQN("CartPole-v1", config, seed=0)
    rng = np.random.default_rng(0)
    random_returns = evaluate(lambda obs: rng.integers(2, size=len(obs)), 50, env_id="CartPole-v1", seed=1)
    history = agent.learn(8000, eval_interval=2000, eval_episodes=20, keep_best=True, verbose=0)
    returns = evaluate(agent, 50, seed=1)
    assert random_returns.mean() < 30
    best = history.eval_steps.index(history.best_eval_step)  # keep_best restored that evaluation's weights:
    assert evaluate(agent, 20, seed=10_000 * (best + 1)).mean() == max(history.eval_mean_returns)
    assert returns.mean() >= 100, (returns.mean(), history.eval_mean_returns)
