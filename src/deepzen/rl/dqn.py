"""Deep Q-learning (Mnih et al. 2015) with the Double-DQN target (van Hasselt et al. 2016) as an option.

The agent learns ``Q(s, a)``, the discounted return of taking action ``a`` in state ``s`` and acting
greedily afterwards, by regressing ``Q(s, a)`` on the one-step target

    y = r + gamma * (1 - terminated) * Q_target(s', argmax_a' Q_choose(s', a'))

where ``Q_target`` is a slowly updated copy of the network (the *target network*) and ``Q_choose``
is the target network (DQN) or the online network (Double DQN, which reduces DQN's
overestimation). Transitions come from a replay buffer; actions are epsilon-greedy with epsilon
decaying linearly.

The loop follows stable-baselines3's DQN so that its tuned hyperparameters carry over: random
actions for the first ``learning_starts`` steps, then every ``train_freq`` environment steps
``gradient_steps`` minibatch updates; the target network is updated every
``target_update_interval`` *environment* steps (a copy for ``tau=1``, Polyak averaging for
``tau<1``); episodes cut by the time limit are not treated as terminal.

Per environment step the loop does one forward pass on a single observation (under ``no_grad``),
one ``env.step`` and one buffer write; the minibatches of a training phase are drawn with one
sampling call.

Example:
    >>> agent = DQN("CartPole-v1", DQNConfig(hidden_units=(32,), learning_starts=100), seed=0)
    >>> history = agent.learn(300, verbose=0)
    >>> agent.act([[0.0, 0.0, 0.05, 0.0]]).shape
    (1,)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deepzen import losses, optimizers
from deepzen.layers import Dense
from deepzen.models import Sequential
from deepzen.rl.agents import Agent, LearningHistory, register_agent
from deepzen.rl.replay import ReplayBuffer

LOSS_NAMES = ("huber", "mse")


@dataclass
class DQNConfig:
    """DQN hyperparameters; the defaults are rl-baselines3-zoo's tuned values for CartPole-v1.

    Args:
        hidden_units: sizes of the Q-network's hidden ReLU layers.
        learning_rate: Adam's step size.
        batch_size: transitions per gradient step.
        buffer_size: replay buffer capacity.
        learning_starts: environment steps of uniformly random actions before learning starts.
        gamma: discount factor.
        target_update_interval: environment steps between target-network updates.
        tau: target update ``target <- (1 - tau) * target + tau * online``; 1.0 copies (hard update).
        train_freq: environment steps between training phases.
        gradient_steps: gradient steps per training phase.
        exploration_fraction: fraction of the ``learn`` budget over which epsilon decays linearly.
        exploration_initial_eps / exploration_final_eps: epsilon at the start and after the decay.
        double_dqn: use the Double-DQN target (the online network picks the next action).
        loss: "huber" (with ``huber_delta``) or "mse".
        huber_delta: where the Huber loss turns from quadratic to linear.
        max_grad_norm: clip the gradients' global L2 norm to this (None: no clipping).
    """

    hidden_units: tuple[int, ...] = (256, 256)
    learning_rate: float = 2.3e-3
    batch_size: int = 64
    buffer_size: int = 100_000
    learning_starts: int = 1000
    gamma: float = 0.99
    target_update_interval: int = 10
    tau: float = 1.0
    train_freq: int = 256
    gradient_steps: int = 128
    exploration_fraction: float = 0.16
    exploration_initial_eps: float = 1.0
    exploration_final_eps: float = 0.04
    double_dqn: bool = False
    loss: str = "huber"
    huber_delta: float = 1.0
    max_grad_norm: float | None = 10.0

    def __post_init__(self):
        self.hidden_units = tuple(int(units) for units in self.hidden_units)
        checks = {
            "hidden_units": (all(u > 0 for u in self.hidden_units), "positive layer sizes"),
            "batch_size": (self.batch_size > 0, "batch_size > 0"),
            "buffer_size": (self.buffer_size > 0, "buffer_size > 0"),
            "learning_starts": (self.learning_starts >= 0, "learning_starts >= 0"),
            "gamma": (0 <= self.gamma <= 1, "0 <= gamma <= 1"),
            "target_update_interval": (self.target_update_interval > 0, "target_update_interval > 0"),
            "tau": (0 < self.tau <= 1, "0 < tau <= 1"),
            "train_freq": (self.train_freq > 0, "train_freq > 0"),
            "gradient_steps": (self.gradient_steps > 0, "gradient_steps > 0"),
            "exploration_fraction": (0 <= self.exploration_fraction <= 1, "0 <= exploration_fraction <= 1"),
            "loss": (self.loss in LOSS_NAMES, f"loss in {LOSS_NAMES}"),
            "huber_delta": (self.huber_delta > 0, "huber_delta > 0"),
            "max_grad_norm": (self.max_grad_norm is None or self.max_grad_norm > 0, "max_grad_norm > 0 or None"),
        }
        for name, (valid, expected) in checks.items():
            if not valid:
                raise ValueError(f"DQNConfig expects {expected}. Received: {name}={getattr(self, name)!r}")


class LinearSchedule:
    """A value going linearly from ``start`` to ``end`` over ``duration`` steps, then staying at ``end``.

    Example:
        >>> epsilon = LinearSchedule(1.0, 0.1, duration=100)
        >>> epsilon(0), epsilon(50), epsilon(100), epsilon(1000)
        (1.0, 0.55, 0.1, 0.1)
    """

    def __init__(self, start: float, end: float, duration: int):
        if duration < 0:
            raise ValueError(f"LinearSchedule expects duration >= 0. Received: duration={duration!r}")
        self.start, self.end, self.duration = float(start), float(end), int(duration)

    def __call__(self, step: int) -> float:
        if step >= self.duration:
            return self.end
        return self.start + (self.end - self.start) * step / self.duration


def q_learning_targets(rewards: torch.Tensor, next_q_target: torch.Tensor, terminated: torch.Tensor, gamma: float,
                       next_q_online: torch.Tensor | None = None) -> torch.Tensor:
    """The one-step targets ``r + gamma * (1 - terminated) * Q_target(s', a*)``.

    Args:
        rewards: (B,) rewards.
        next_q_target: (B, A) target-network values of the next states.
        terminated: (B,) 1.0 where the next state is terminal.
        gamma: discount factor.
        next_q_online: (B, A) online-network values of the next states for Double DQN, where
            ``a* = argmax Q_online(s', .)``; None for DQN, where ``a* = argmax Q_target(s', .)``.

    Returns:
        (B,) targets (no gradient flows through them when the inputs carry none).
    """
    if next_q_online is None:
        next_values = next_q_target.max(dim=1).values                                     # (B,)
    else:
        chosen = next_q_online.argmax(dim=1, keepdim=True)                                # (B, 1)
        next_values = next_q_target.gather(1, chosen).squeeze(1)                          # (B,)
    return rewards + gamma * (1.0 - terminated) * next_values


@torch.no_grad()
def update_target(target: nn.Module, online: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) * target + tau * online`` for every parameter; ``tau=1`` copies exactly."""
    target_parameters, online_parameters = list(target.parameters()), list(online.parameters())
    # torch's lerp computes end - (end - start) * (1 - weight) for weight >= 0.5, which is exact at 1
    torch._foreach_lerp_(target_parameters, online_parameters, tau)


def q_network(observation_size: int, num_actions: int, hidden_units: tuple[int, ...]) -> nn.Module:
    """An MLP ``(N, observation_size) -> (N, num_actions)`` Q-values, ReLU hidden layers, built."""
    sizes = (observation_size, *hidden_units)
    layers = [Dense(units, activation="relu", input_dim=fan_in) for fan_in, units in zip(sizes, hidden_units)]
    network = Sequential([*layers, Dense(num_actions, input_dim=sizes[-1])], name="q_network")
    network.build()
    return network


@register_agent
class DQN(Agent):
    """A DQN agent for environments with flat observations and discrete actions.

    Args: see :class:`~deepzen.rl.agents.Agent`; ``config`` is a :class:`DQNConfig`.
    """

    config_class = DQNConfig

    def build_network(self) -> nn.Module:
        if len(self.observation_shape) != 1:
            raise ValueError(f"DQN's MLP expects flat observations. Received: observation shape "
                             f"{self.observation_shape} from {self.env_id}")
        return q_network(self.observation_shape[0], self.num_actions, self.config.hidden_units)

    def greedy_actions(self, observations: torch.Tensor) -> torch.Tensor:
        return self.network(observations).argmax(dim=1)

    def start_session(self, total_steps: int) -> None:
        import gymnasium as gym

        config = self.config
        self.env = gym.make(self.env_id)
        self.observation, _ = self.env.reset(seed=self.seed)
        self.episode_return = 0.0
        self.buffer = ReplayBuffer(config.buffer_size, self.observation_shape, seed=self.seed)
        self.rng = np.random.default_rng(self.seed)
        self.epsilon = LinearSchedule(config.exploration_initial_eps, config.exploration_final_eps,
                                      int(config.exploration_fraction * total_steps))
        self.target_network = copy.deepcopy(self.network).requires_grad_(False)
        self.optimizer = optimizers.get("adam", learning_rate=config.learning_rate).build(self.network.parameters())
        self.loss_fn = losses.get("huber", delta=config.huber_delta) if config.loss == "huber" else losses.get("mse")

    def end_session(self) -> None:
        self.env.close()

    def train_until(self, step: int, history: LearningHistory) -> None:
        config, env, buffer, rng = self.config, self.env, self.buffer, self.rng
        observation = self.observation
        while self.steps_done < step:
            if self.steps_done < config.learning_starts or rng.random() < self.epsilon(self.steps_done):
                action = int(rng.integers(self.num_actions))
            else:
                with torch.no_grad():
                    q_values = self.network(torch.as_tensor(observation, device=self.device).unsqueeze(0))  # (1, A)
                    action = int(q_values.argmax())  # host sync: the environment needs the action now
            next_observation, reward, terminated, truncated, _ = env.step(action)
            buffer.add(observation, action, reward, next_observation, terminated)
            self.steps_done += 1
            self.episode_return += reward
            if terminated or truncated:
                history.add_episode(self.steps_done, self.episode_return)
                self.episode_return = 0.0
                next_observation, _ = env.reset()
            observation = next_observation
            if self.steps_done % config.target_update_interval == 0:
                update_target(self.target_network, self.network, config.tau)
            if self.steps_done % config.train_freq == 0 and self.steps_done > config.learning_starts:
                history.loss_steps.append(self.steps_done)
                history.losses.append(self.train_phase())
        self.observation = observation

    def train_phase(self) -> float:
        """``gradient_steps`` minibatch updates; returns their mean loss."""
        config = self.config
        steps, size = config.gradient_steps, config.batch_size
        batch = self.buffer.sample(steps * size, self.device)  # one gather for the whole phase
        observations = batch.observations.view(steps, size, *self.observation_shape)
        next_observations = batch.next_observations.view(steps, size, *self.observation_shape)
        actions = batch.actions.view(steps, size, 1)
        rewards, terminated = batch.rewards.view(steps, size), batch.terminated.view(steps, size)
        parameters = list(self.network.parameters())
        total = torch.zeros((), device=self.device)
        for k in range(steps):
            with torch.no_grad():
                next_q_online = self.network(next_observations[k]) if config.double_dqn else None
                targets = q_learning_targets(rewards[k], self.target_network(next_observations[k]), terminated[k],
                                             config.gamma, next_q_online)                    # (B,)
            q_taken = self.network(observations[k]).gather(1, actions[k]).squeeze(1)          # (B,)
            loss = self.loss_fn(targets, q_taken)  # Keras's order: loss(y_true, y_pred)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.max_grad_norm is not None:
                optimizers.clip_gradients(parameters, global_clipnorm=config.max_grad_norm)
            self.optimizer.step()
            total += loss.detach()
        return float(total) / steps  # host sync: once per training phase
