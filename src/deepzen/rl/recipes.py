"""Reinforcement-learning recipes: DQN and A2C on CartPole-v1, registered for the command line.

Each recipe trains an agent with periodic greedy evaluations (100 episodes each), keeps the weights
of the best evaluation, evaluates the saved agent again on fresh episodes, and writes into the run
folder::

    agent.dz              the agent (load with deepzen.rl.load_agent)
    learning_curve.png    training-episode returns and evaluation means against environment steps
    learning_history.json the same numbers, plus losses and timings
    episode.gif           one greedy episode (needs pygame; skipped with a message without it)

``deepzen evaluate RUN`` re-evaluates the saved agent instead of training again.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

import deepzen
from deepzen.recipes import register_recipe
from deepzen.rl.a2c import A2C, A2CConfig
from deepzen.rl.agents import load_agent
from deepzen.rl.dqn import DQN, DQNConfig
from deepzen.rl.evaluation import RenderingUnavailable, evaluate, plot_learning_curve, record_episode

AGENT_FILE = "agent.dz"


@dataclass
class Settings:
    """What a run does around the agent's own hyperparameters."""

    env_id: str = "CartPole-v1"  # the gymnasium environment
    total_steps: int = 100_000  # environment steps to train for
    eval_interval: int = 5000  # environment steps between evaluations
    eval_episodes: int = 100  # episodes per evaluation
    solved_return: float = 475.0  # CartPole-v1's threshold
    stop_when_solved: bool = True  # stop once an evaluation reaches solved_return
    final_eval_episodes: int = 100  # the saved agent, on episodes no evaluation during training used
    record_gif: bool = True  # save a GIF of an episode of the trained agent
    num_threads: int = 1  # torch threads; one is fastest for these tiny networks (0: leave torch's setting)
    seed: int = 0
    verbose: int = 1


@dataclass
class CartPoleDQNConfig(Settings, DQNConfig):
    """DQN on CartPole-v1 with rl-baselines3-zoo's tuned hyperparameters (see :class:`DQNConfig`)."""


@dataclass
class CartPoleA2CConfig(Settings, A2CConfig):
    """A2C on CartPole-v1 (see :class:`A2CConfig`); 8 environments x 5 steps per update."""

    total_steps: int = 300_000  # environment steps to train for
    eval_interval: int = 10_000  # environment steps between evaluations
    stop_when_solved: bool = False  # the whole learning curve is the point


def train_and_report(agent_class: type, config: Settings, run_dir: Path) -> dict:
    """Trains (or, when ``deepzen evaluate`` replays a run, loads) an agent and writes the run's files."""
    from deepzen.runs import current_run

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    deepzen.seed(config.seed)
    run = current_run()
    metrics: dict = {}
    if run is not None and run.mode == "replay":  # Run.open checked that the agent file is there
        agent = load_agent(run.path / AGENT_FILE)
    else:
        agent_fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(agent_class.config_class)}
        agent = agent_class(config.env_id, agent_class.config_class(**agent_fields), seed=config.seed)
        history = agent.learn(config.total_steps, eval_interval=config.eval_interval,
                              eval_episodes=config.eval_episodes, solved_return=config.solved_return,
                              stop_when_solved=config.stop_when_solved, keep_best=True, verbose=config.verbose)
        agent.save(run_dir / AGENT_FILE)
        (run_dir / "learning_history.json").write_text(json.dumps(history.as_dict()) + "\n")
        plot_learning_curve(history, run_dir / "learning_curve.png", solved_return=config.solved_return,
                            title=f"{type(agent).__name__} on {config.env_id} (seed {config.seed})")
        metrics.update(train_steps=history.total_steps, train_seconds=round(history.train_wall_time, 1),
                       train_cpu_seconds=round(history.train_cpu_time, 1), solved_at_step=history.solved_step,
                       solved_train_seconds=None if history.solved_wall_time is None
                       else round(history.solved_wall_time, 1),
                       solved_train_cpu_seconds=None if history.solved_cpu_time is None
                       else round(history.solved_cpu_time, 1),
                       best_eval_step=history.best_eval_step,
                       best_eval_mean_return=max(history.eval_mean_returns, default=None))
    returns = evaluate(agent, config.final_eval_episodes, seed=config.seed + 1_000_000)
    metrics.update(final_eval_mean_return=float(returns.mean()), final_eval_std_return=float(returns.std()),
                   final_eval_min_return=float(returns.min()), final_eval_episodes=len(returns))
    if config.record_gif:
        try:
            episode = record_episode(agent, run_dir / "episode.gif", seed=config.seed + 2_000_000)
            metrics["gif_episode_return"] = episode["return"]
        except RenderingUnavailable as error:
            print(f"No episode.gif: {error}")
    return metrics


@register_recipe("cartpole-dqn", CartPoleDQNConfig,
                 "DQN (replay buffer, target network, epsilon-greedy; Double DQN optional) on CartPole-v1: "
                 "solved = mean return >= 475 over 100 episodes, within 100k environment steps",
                 replay_file=AGENT_FILE,
                 dataset="gymnasium CartPole-v1", target="mean return >= 475 over 100 episodes within 100k steps")
def cartpole_dqn(config: CartPoleDQNConfig, run_dir: Path) -> dict:
    return train_and_report(DQN, config, run_dir)


@register_recipe("cartpole-a2c", CartPoleA2CConfig,
                 "Advantage actor-critic (shared body, n-step/GAE advantages, entropy bonus, 8 parallel "
                 "environments) on CartPole-v1, with its learning curve", replay_file=AGENT_FILE,
                 dataset="gymnasium CartPole-v1", target="learning curve; return 475+ (measured from 200k steps)")
def cartpole_a2c(config: CartPoleA2CConfig, run_dir: Path) -> dict:
    return train_and_report(A2C, config, run_dir)
