"""Advantage actor-critic, A2C (the synchronous form of Mnih et al. 2016's A3C).

One network with a shared body and two heads: the policy head gives action logits ``pi(a|s)`` and
the value head the state value ``V(s)``. The agent plays ``n_steps`` steps in each of ``num_envs``
parallel environments (a gymnasium vector environment), estimates each step's advantage
``A_t = R_t - V(s_t)``, and takes one gradient step on

    loss = -mean(A_t * log pi(a_t|s_t)) + value_coef * mean((R_t - V(s_t))^2) - entropy_coef * mean(H(pi(.|s_t)))

The advantages are generalized advantage estimates (Schulman et al. 2016),
``A_t = sum_k (gamma * lam)^k delta_{t+k}`` with ``delta_t = r_t + gamma V(s_{t+1}) - V(s_t)``,
bootstrapped from ``V`` of the observation after the rollout; ``lam=1`` gives the classic n-step
return ``R_t = r_t + gamma r_{t+1} + ... + gamma^(n-t) V(s_n)`` of A2C. The entropy bonus keeps the
policy from collapsing on one action too early.

gymnasium's vector environments reset a finished sub-environment on the *next* ``step`` (its action
is ignored, its reward is 0): that step is stored with weight 0, and the observation returned when an
episode ends is its true last observation, so a time-limit cut bootstraps from ``V`` of it.

Example:
    >>> agent = A2C("CartPole-v1", A2CConfig(num_envs=2, n_steps=4), seed=0)
    >>> history = agent.learn(64, verbose=0)
    >>> agent.act([[0.0, 0.0, 0.05, 0.0]]).shape
    (1,)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepzen import optimizers
from deepzen.initializers import Orthogonal
from deepzen.layers import Dense
from deepzen.models import Sequential
from deepzen.rl.agents import Agent, LearningHistory, register_agent


@dataclass
class A2CConfig:
    """A2C hyperparameters (defaults: stable-baselines3's A2C, with a shared body).

    Args:
        hidden_units: sizes of the shared body's tanh layers.
        num_envs: parallel environments.
        n_steps: steps per environment in each rollout (one gradient step per rollout).
        learning_rate: RMSprop's step size (RMSprop with rho 0.99 and epsilon 1e-5, as in A3C and SB3).
        gamma: discount factor.
        gae_lambda: GAE's lambda; 1.0 gives plain n-step returns.
        value_coef: weight of the value loss.
        entropy_coef: weight of the entropy bonus.
        max_grad_norm: clip the gradients' global L2 norm to this (None: no clipping).
    """

    hidden_units: tuple[int, ...] = (64, 64)
    num_envs: int = 8
    n_steps: int = 5
    learning_rate: float = 7e-4
    gamma: float = 0.99
    gae_lambda: float = 1.0
    value_coef: float = 0.5
    entropy_coef: float = 0.0
    max_grad_norm: float | None = 0.5

    def __post_init__(self):
        self.hidden_units = tuple(int(units) for units in self.hidden_units)
        checks = {
            "hidden_units": (len(self.hidden_units) > 0 and all(u > 0 for u in self.hidden_units),
                             "at least one positive layer size"),
            "num_envs": (self.num_envs > 0, "num_envs > 0"),
            "n_steps": (self.n_steps > 0, "n_steps > 0"),
            "gamma": (0 <= self.gamma <= 1, "0 <= gamma <= 1"),
            "gae_lambda": (0 <= self.gae_lambda <= 1, "0 <= gae_lambda <= 1"),
            "value_coef": (self.value_coef >= 0, "value_coef >= 0"),
            "entropy_coef": (self.entropy_coef >= 0, "entropy_coef >= 0"),
            "max_grad_norm": (self.max_grad_norm is None or self.max_grad_norm > 0, "max_grad_norm > 0 or None"),
        }
        for name, (valid, expected) in checks.items():
            if not valid:
                raise ValueError(f"A2CConfig expects {expected}. Received: {name}={getattr(self, name)!r}")


class ActorCritic(nn.Module):
    """A shared tanh MLP body with a policy head (action logits) and a value head.

    Orthogonal initial weights as in OpenAI Baselines: gain sqrt(2) in the body, 0.01 for the
    policy head (near-uniform initial policy), 1 for the value head.

    Args:
        observation_size: features per observation.
        num_actions: discrete actions.
        hidden_units: sizes of the body's layers.

    Call arguments:
        observations: (N, observation_size).

    Returns:
        ``(logits, values)``: (N, num_actions) and (N,).
    """

    def __init__(self, observation_size: int, num_actions: int, hidden_units: tuple[int, ...] = (64, 64)):
        super().__init__()
        sizes = (observation_size, *hidden_units)
        self.body = Sequential([Dense(units, activation="tanh", kernel_initializer=Orthogonal(math.sqrt(2)),
                                      input_dim=fan_in) for fan_in, units in zip(sizes, hidden_units)], name="body")
        self.policy_head = Dense(num_actions, kernel_initializer=Orthogonal(0.01), input_dim=sizes[-1])
        self.value_head = Dense(1, kernel_initializer=Orthogonal(1.0), input_dim=sizes[-1])
        self(torch.zeros(1, observation_size))  # creates the lazy layers' parameters now

    def forward(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(observations)                                  # (N, H)
        return self.policy_head(features), self.value_head(features).squeeze(-1)  # (N, A), (N,)


def generalized_advantages(rewards: torch.Tensor, values: torch.Tensor, terminated: torch.Tensor,
                           episode_ends: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Generalized advantage estimates over a rollout of T steps in N environments.

    ``delta_t = r_t + gamma * (1 - terminated_t) * V_{t+1} - V_t`` and
    ``A_t = delta_t + gamma * lam * (1 - episode_ends_t) * A_{t+1}``, with ``A_T = 0``.

    Args:
        rewards: (T, N).
        values: (T + 1, N): ``V`` of the observation before each step, then of the one after the last.
        terminated: (T, N) 1.0 where step t ended its episode in a terminal state (no bootstrap).
        episode_ends: (T, N) 1.0 where step t ended its episode (terminal or cut by a time limit).
        gamma: discount factor.
        lam: GAE's lambda; 1.0 gives n-step returns minus ``V_t``, 0.0 the one-step TD error.

    Returns:
        (T, N) advantages; ``advantages + values[:-1]`` are the value targets.
    """
    if values.shape[0] != rewards.shape[0] + 1:
        raise ValueError(f"generalized_advantages expects values with one more step than rewards. "
                         f"Received: rewards {tuple(rewards.shape)}, values {tuple(values.shape)}")
    not_terminal, continues = 1.0 - terminated.float(), 1.0 - episode_ends.float()
    deltas = rewards + gamma * not_terminal * values[1:] - values[:-1]                     # (T, N)
    advantages = torch.empty_like(deltas)
    running = torch.zeros_like(deltas[0])                                                  # (N,)
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * lam * continues[t] * running
        advantages[t] = running
    return advantages


class A2CLoss(NamedTuple):
    """The A2C loss and its terms (scalars): ``total = policy + value_coef * value - entropy_coef * entropy``."""

    total: torch.Tensor
    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor


def a2c_loss(logits: torch.Tensor, values: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor,
             returns: torch.Tensor, weights: torch.Tensor | None = None, value_coef: float = 0.5,
             entropy_coef: float = 0.0) -> A2CLoss:
    """The actor-critic loss of a batch of B transitions.

    Args:
        logits: (B, A) policy logits.
        values: (B,) predicted state values.
        actions: (B,) int64 actions taken.
        advantages: (B,) advantage estimates (treated as constants).
        returns: (B,) value targets (treated as constants).
        weights: (B,) 1.0 for transitions to learn from, 0.0 to ignore (default: all ones); every
            term is the weighted mean over the batch.
        value_coef / entropy_coef: weights of the value loss and the entropy bonus.

    Returns:
        :class:`A2CLoss` with ``policy = -mean(A * log pi(a|s))``, ``value = mean((R - V)^2)``,
        ``entropy = mean(H(pi(.|s)))``.
    """
    log_probs = F.log_softmax(logits, dim=-1)                                  # (B, A)
    taken = log_probs.gather(1, actions.unsqueeze(1)).squeeze(1)               # (B,)
    entropy = -(log_probs.exp() * log_probs).sum(dim=-1)                       # (B,)
    weights = torch.ones_like(values) if weights is None else weights.float()
    weights = weights / weights.sum().clamp_min(1.0)
    policy_loss = -(weights * advantages.detach() * taken).sum()
    value_loss = (weights * (returns.detach() - values).square()).sum()
    entropy_mean = (weights * entropy).sum()
    return A2CLoss(policy_loss + value_coef * value_loss - entropy_coef * entropy_mean, policy_loss, value_loss,
                   entropy_mean)


@register_agent
class A2C(Agent):
    """An advantage actor-critic agent for environments with flat observations and discrete actions.

    ``act`` picks the most likely action (for evaluation); training samples from the policy.

    Args: see :class:`~deepzen.rl.agents.Agent`; ``config`` is an :class:`A2CConfig`.
    """

    config_class = A2CConfig

    def build_network(self) -> nn.Module:
        if len(self.observation_shape) != 1:
            raise ValueError(f"A2C's MLP expects flat observations. Received: observation shape "
                             f"{self.observation_shape} from {self.env_id}")
        return ActorCritic(self.observation_shape[0], self.num_actions, self.config.hidden_units)

    def greedy_actions(self, observations: torch.Tensor) -> torch.Tensor:
        logits, _ = self.network(observations)
        return logits.argmax(dim=1)

    def start_session(self, total_steps: int) -> None:
        import gymnasium as gym

        config = self.config
        self.envs = gym.make_vec(self.env_id, num_envs=config.num_envs)
        if self.envs.metadata.get("autoreset_mode") != gym.vector.AutoresetMode.NEXT_STEP:
            self.envs.close()
            raise ValueError(f"A2C expects a vector environment that resets on the step after an episode ends. "
                             f"Received: {self.env_id} with autoreset_mode={self.envs.metadata.get('autoreset_mode')}")
        self.observations, _ = self.envs.reset(seed=self.seed)
        self.previous_ends = np.zeros(config.num_envs, dtype=bool)
        self.running_returns = np.zeros(config.num_envs)
        self.generator = torch.Generator().manual_seed(self.seed)
        shape, device = (config.n_steps, config.num_envs), self.device
        self.rollout = {
            "observations": torch.zeros((*shape, *self.observation_shape), device=device),
            "actions": torch.zeros(shape, dtype=torch.int64, device=device),
            "rewards": torch.zeros(shape, device=device),
            "terminated": torch.zeros(shape, device=device),
            "episode_ends": torch.zeros(shape, device=device),
            "weights": torch.zeros(shape, device=device),  # 0 for the ignored reset steps
            "values": torch.zeros((config.n_steps + 1, config.num_envs), device=device),
        }
        self.optimizer = optimizers.get("rmsprop", learning_rate=config.learning_rate, rho=0.99,
                                        epsilon=1e-5).build(self.network.parameters())

    def end_session(self) -> None:
        self.envs.close()

    def train_until(self, step: int, history: LearningHistory) -> None:
        total, updates = torch.zeros((), device=self.device), 0
        while self.steps_done < step:
            self.collect_rollout(history)
            total += self.update().total.detach()
            updates += 1
        if updates:
            history.loss_steps.append(self.steps_done)
            history.losses.append(float(total) / updates)  # host sync: once per train_until chunk

    def collect_rollout(self, history: LearningHistory) -> None:
        """Plays ``n_steps`` steps in every environment, filling ``self.rollout``."""
        rollout, observations = self.rollout, self.observations
        for t in range(self.config.n_steps):
            observations_t = torch.as_tensor(observations, device=self.device)             # (N, *obs)
            with torch.no_grad():
                logits, values = self.network(observations_t)                             # (N, A), (N,)
            probabilities = logits.softmax(dim=-1).cpu()  # host sync: the environments need the actions
            actions = torch.multinomial(probabilities, 1, generator=self.generator).squeeze(1)  # (N,)
            observations, rewards, terminated, truncated, _ = self.envs.step(actions.numpy())
            ends = terminated | truncated
            rollout["observations"][t] = observations_t
            rollout["actions"][t] = actions
            rollout["values"][t] = values
            rollout["rewards"][t] = torch.from_numpy(np.asarray(rewards, dtype=np.float32))
            rollout["terminated"][t] = torch.from_numpy(terminated)
            rollout["episode_ends"][t] = torch.from_numpy(ends)
            rollout["weights"][t] = torch.from_numpy(~self.previous_ends)
            self.previous_ends = ends
            self.steps_done += len(ends)
            self.running_returns += rewards
            for i in np.flatnonzero(ends):
                history.add_episode(self.steps_done, self.running_returns[i])
                self.running_returns[i] = 0.0
        with torch.no_grad():
            _, rollout["values"][-1] = self.network(torch.as_tensor(observations, device=self.device))
        self.observations = observations

    def update(self) -> A2CLoss:
        """One gradient step on the stored rollout."""
        config, rollout = self.config, self.rollout
        advantages = generalized_advantages(rollout["rewards"], rollout["values"], rollout["terminated"],
                                            rollout["episode_ends"], config.gamma, config.gae_lambda)  # (T, N)
        returns = advantages + rollout["values"][:-1]
        logits, values = self.network(rollout["observations"].flatten(0, 1))             # (T*N, A), (T*N,)
        loss = a2c_loss(logits, values, rollout["actions"].flatten(), advantages.flatten(), returns.flatten(),
                        rollout["weights"].flatten(), config.value_coef, config.entropy_coef)
        self.optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        if config.max_grad_norm is not None:
            optimizers.clip_gradients(self.network.parameters(), global_clipnorm=config.max_grad_norm)
        self.optimizer.step()
        return loss
