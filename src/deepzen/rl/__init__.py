"""Reinforcement learning: DQN and advantage actor-critic agents on gymnasium environments.

Agents train with ``agent.learn(steps)``, not ``Model.fit``: they collect their own data from the
environment while they learn (see :mod:`deepzen.rl.agents`).

Example:
    >>> from deepzen.rl import DQN, evaluate
    >>> agent = DQN("CartPole-v1", seed=0)
    >>> history = agent.learn(100_000, eval_interval=5000, solved_return=475, stop_when_solved=True)  # doctest: +SKIP
    >>> evaluate(agent, episodes=100).mean()  # doctest: +SKIP
"""

from deepzen.rl.a2c import A2C, A2CConfig, A2CLoss, ActorCritic, a2c_loss, generalized_advantages
from deepzen.rl.agents import AGENTS, Agent, LearningHistory, load_agent, register_agent
from deepzen.rl.dqn import DQN, DQNConfig, LinearSchedule, q_learning_targets, q_network, update_target
from deepzen.rl.evaluation import RenderingUnavailable, evaluate, plot_learning_curve, record_episode
from deepzen.rl.replay import ReplayBuffer, Transitions

__all__ = ["A2C", "A2CConfig", "A2CLoss", "AGENTS", "ActorCritic", "Agent", "DQN", "DQNConfig", "LearningHistory",
           "LinearSchedule", "RenderingUnavailable", "ReplayBuffer", "Transitions", "a2c_loss", "evaluate",
           "generalized_advantages", "load_agent", "plot_learning_curve", "q_learning_targets", "q_network",
           "record_episode", "register_agent", "update_target"]
