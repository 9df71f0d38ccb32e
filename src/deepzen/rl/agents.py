"""What every deepzen agent shares: construction from an environment id, the ``learn`` driver with
periodic evaluation, the learning history, and saving/loading.

An agent owns a policy network (a plain ``nn.Module``) for a gymnasium environment with a flat
``Box`` observation space and a ``Discrete`` action space. Subclasses (:class:`deepzen.rl.DQN`,
:class:`deepzen.rl.A2C`) build the network and write the training loop; this module runs that loop
in chunks, pausing the training clock to evaluate between chunks, so the wall time reported to reach
a return counts training only.

An agent file is one safetensors file (via :func:`deepzen.training.serialization.write_tensors`):
the policy network's weights, and in its JSON header the agent class, the environment id and the
agent's config. Optimizer state, replay buffer and target network are not saved: a loaded agent acts
exactly as the saved one, and ``learn`` on it starts a new session from its weights.

Why agents keep their own loop instead of ``Model.fit`` (where GANs and other custom steps train): an
agent's data does not exist before training. It collects its transitions from the environment with
the policy being trained, interleaving environment steps, buffer writes and gradient steps (DQN every
``train_freq`` steps, A2C after each rollout), and its budget is environment steps, not epochs over a
dataset, so there is nothing for ``fit`` to batch. The pieces are the core's: ``deepzen.optimizers``
(and ``clip_gradients``), the layers, the safetensors file format.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from deepzen._registry import Registry

AGENTS: Registry[type] = Registry("agent")


def register_agent(cls: type) -> type:
    """Lets :func:`load_agent` rebuild agents of class ``cls`` by its name."""
    AGENTS.register(cls.__name__, cls)
    return cls


@dataclass
class LearningHistory:
    """What happened during ``learn``: training episodes, evaluations, losses and timings.

    Steps are environment steps (summed over parallel environments); times are seconds of training,
    evaluation excluded: wall-clock, and the process's CPU time (steadier on a shared machine).
    """

    episode_steps: list[int] = field(default_factory=list)      # env step at which each episode ended
    episode_returns: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_mean_returns: list[float] = field(default_factory=list)
    eval_std_returns: list[float] = field(default_factory=list)
    eval_wall_times: list[float] = field(default_factory=list)  # training seconds at each evaluation
    loss_steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    solved_step: int | None = None
    solved_wall_time: float | None = None
    solved_cpu_time: float | None = None
    best_eval_step: int | None = None
    train_wall_time: float = 0.0
    train_cpu_time: float = 0.0
    total_steps: int = 0

    def add_episode(self, step: int, episode_return: float) -> None:
        self.episode_steps.append(step)
        self.episode_returns.append(float(episode_return))

    def recent_mean_return(self, episodes: int = 20) -> float:
        """The mean return of the last ``episodes`` training episodes (nan before the first one ends)."""
        recent = self.episode_returns[-episodes:]
        return float(np.mean(recent)) if recent else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_spaces(env_id: str, env) -> tuple[tuple[int, ...], int]:
    import gymnasium as gym

    observation_space, action_space = env.observation_space, env.action_space
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(f"deepzen's agents expect an environment with a Discrete action space. "
                         f"Received: {env_id} with action space {action_space}")
    if not isinstance(observation_space, gym.spaces.Box):
        raise ValueError(f"deepzen's agents expect an environment with a Box observation space. "
                         f"Received: {env_id} with observation space {observation_space}")
    return tuple(observation_space.shape), int(action_space.n)


class Agent:
    """Base class of the agents.

    Args:
        env_id: a gymnasium environment id, e.g. ``"CartPole-v1"``.
        config: the agent's hyperparameters (an instance of the subclass's ``config_class``;
            default: its defaults).
        seed: seeds the network's initial weights, the environments and the agent's random draws.
        device: where the network lives (default: the CPU, which is the fast choice for the small
            networks and single-observation steps of classic-control tasks).

    Subclasses set ``config_class`` and implement :meth:`build_network`, :meth:`greedy_actions`,
    :meth:`start_session`, :meth:`train_until` and :meth:`end_session`.
    """

    config_class: type

    def __init__(self, env_id: str, config: Any = None, *, seed: int = 0, device: torch.device | str | None = None):
        import gymnasium as gym

        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} expects config to be a {self.config_class.__name__}. "
                            f"Received: {type(config).__name__}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"{type(self).__name__} expects seed to be a non-negative integer. "
                             f"Received: seed={seed!r}")
        self.env_id = env_id
        self.config = config
        self.seed = seed
        self.device = torch.device(device or "cpu")
        probe = gym.make(env_id)
        self.observation_shape, self.num_actions = _check_spaces(env_id, probe)
        probe.close()
        with torch.random.fork_rng(devices=[]):  # the initial weights depend on `seed` only
            torch.manual_seed(seed)
            self.network = self.build_network().to(self.device)
        self.steps_done = 0  # environment steps of the current learn session

    # -- implemented by subclasses ------------------------------------------------------------------
    def build_network(self) -> nn.Module:
        """The policy network, with its parameters created (not lazy)."""
        raise NotImplementedError

    def greedy_actions(self, observations: torch.Tensor) -> torch.Tensor:
        """(N, *observation_shape) -> (N,) int64: the action the agent rates best in each state."""
        raise NotImplementedError

    def start_session(self, total_steps: int) -> None:
        """Creates the environments, buffers and optimizer of a ``learn`` call of ``total_steps`` steps."""
        raise NotImplementedError

    def train_until(self, step: int, history: LearningHistory) -> None:
        """Interacts and learns until ``self.steps_done >= step``; records finished episodes in ``history``."""
        raise NotImplementedError

    def end_session(self) -> None:
        """Closes the environments of the session."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------------
    def act(self, observations: Any) -> np.ndarray:
        """The greedy actions for a batch of observations, (N, *observation_shape) -> (N,) int64 array."""
        observations = torch.as_tensor(np.asarray(observations, dtype=np.float32), device=self.device)
        with torch.no_grad():
            return self.greedy_actions(observations).cpu().numpy()  # host sync: the env needs the actions

    def learn(self, total_steps: int, *, eval_interval: int | None = None, eval_episodes: int = 100,
              solved_return: float | None = None, stop_when_solved: bool = False, keep_best: bool = False,
              log_interval: int = 10_000, verbose: int = 1) -> LearningHistory:
        """Trains for ``total_steps`` environment steps, evaluating every ``eval_interval`` steps.

        Each call starts a new session (environments, buffers, optimizer, exploration schedule) from
        the current weights.

        Args:
            total_steps: the environment-step budget.
            eval_interval: evaluate the greedy policy on ``eval_episodes`` fresh episodes every this
                many steps (None: no evaluation). The training clock stops while evaluating.
            eval_episodes: the episodes per evaluation.
            solved_return: the mean evaluation return that counts as solved; the first step and
                training time at which an evaluation reaches it are recorded.
            stop_when_solved: end training at the first evaluation that reaches ``solved_return``.
            keep_best: end with the weights of the best evaluation (the first of equals) instead of
                the last ones; value-based agents' greedy policies often get worse again for a while.
            log_interval: without evaluations, print progress every this many steps.
            verbose: 0 silent, 1 one line per evaluation or log interval.

        Returns:
            The :class:`LearningHistory` of the session.
        """
        from deepzen.rl.evaluation import evaluate

        if not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"learn expects total_steps to be a positive integer. "
                             f"Received: total_steps={total_steps!r}")
        if stop_when_solved and (solved_return is None or eval_interval is None):
            raise ValueError("learn(stop_when_solved=True) expects solved_return and eval_interval. "
                             f"Received: solved_return={solved_return!r}, eval_interval={eval_interval!r}")
        history = LearningHistory(total_steps=total_steps)
        best_weights = None
        chunk = eval_interval or log_interval
        self.steps_done = 0
        self.start_session(total_steps)
        try:
            while self.steps_done < total_steps:
                started, cpu_started = time.perf_counter(), time.process_time()
                self.train_until(min(self.steps_done + chunk, total_steps), history)
                history.train_wall_time += time.perf_counter() - started
                history.train_cpu_time += time.process_time() - cpu_started
                message = f"step {self.steps_done:>7d} | train return (last 20) {history.recent_mean_return():7.1f}"
                if eval_interval is not None:
                    returns = evaluate(self, eval_episodes, seed=self.seed + 10_000 * (len(history.eval_steps) + 1))
                    history.eval_steps.append(self.steps_done)
                    history.eval_mean_returns.append(float(returns.mean()))
                    history.eval_std_returns.append(float(returns.std()))
                    history.eval_wall_times.append(history.train_wall_time)
                    message += f" | eval return {returns.mean():6.1f} +/- {returns.std():5.1f}"
                    if returns.mean() > max(history.eval_mean_returns[:-1], default=-float("inf")):
                        history.best_eval_step = self.steps_done
                        if keep_best:
                            best_weights = {k: v.detach().clone() for k, v in self.network.state_dict().items()}
                    if solved_return is not None and history.solved_step is None and returns.mean() >= solved_return:
                        history.solved_step, history.solved_wall_time = self.steps_done, history.train_wall_time
                        history.solved_cpu_time = history.train_cpu_time
                        message += " | solved"
                if verbose:
                    print(f"{message} | {history.train_wall_time:6.1f} s", flush=True)
                if stop_when_solved and history.solved_step is not None:
                    break
        finally:
            self.end_session()
        if best_weights is not None:
            self.network.load_state_dict(best_weights)
        history.total_steps = self.steps_done
        return history

    def config_dict(self) -> dict[str, Any]:
        """The agent's config as JSON-ready values (only the fields of ``config_class``)."""
        return {f.name: getattr(self.config, f.name) for f in dataclasses.fields(self.config_class)}

    def save(self, path: str | os.PathLike) -> None:
        """Writes the network's weights, the environment id and the config to ``path`` (safetensors)."""
        from deepzen.training.serialization import write_tensors

        write_tensors(path, self.network.state_dict(),
                      {"agent": type(self).__name__, "env_id": self.env_id, "seed": self.seed,
                       "config": self.config_dict(), "observation_shape": list(self.observation_shape),
                       "num_actions": self.num_actions})


def load_agent(path: str | os.PathLike, device: torch.device | str | None = None) -> Agent:
    """Rebuilds an agent saved with :meth:`Agent.save`; it acts exactly as the saved one.

    Raises:
        deepzen.training.serialization.ModelFileError: for a missing, damaged or non-agent file.
    """
    from deepzen.training.serialization import ModelFileError, building_from, read_tensors

    tensors, metadata = read_tensors(path)
    if "agent" not in metadata:
        raise ModelFileError(f"{path} is a deepzen model file but not an agent file (no 'agent' entry in its header)")
    import gymnasium as gym

    env_id = metadata.get("env_id")
    # gymnasium.make("module:Env") imports the module: only an id already registered is accepted from a file.
    if not isinstance(env_id, str) or ":" in env_id or env_id not in gym.registry:
        raise ModelFileError(f"{path} names the environment {env_id!r:.80}, which is not a registered gymnasium id")
    with building_from(path):
        cls = AGENTS.get(metadata["agent"])
        agent = cls(metadata["env_id"], cls.config_class(**metadata["config"]), seed=metadata["seed"], device=device)
        if list(agent.observation_shape) != metadata["observation_shape"] or \
                agent.num_actions != metadata["num_actions"]:
            raise ModelFileError(f"{path} was saved for {metadata['env_id']} with observations "
                                 f"{metadata['observation_shape']} and {metadata['num_actions']} actions; the "
                                 f"environment now has {list(agent.observation_shape)} and {agent.num_actions}")
        agent.network.load_state_dict(tensors)
    return agent
