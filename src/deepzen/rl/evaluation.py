"""Measuring an agent: returns over N episodes, a recorded episode (GIF / PNG frames), learning curves.

:func:`evaluate` plays all N episodes at once in a gymnasium vector environment (for CartPole,
gymnasium's NumPy-vectorized ``CartPoleVectorEnv``), so the policy runs one batched forward pass per
time step instead of one per episode step: 100 CartPole episodes of up to 500 steps take about
500 forward passes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

Policy = Callable[[np.ndarray], Any]  # (N, *observation_shape) observations -> (N,) actions


class RenderingUnavailable(RuntimeError):
    """The environment cannot draw frames here (e.g. CartPole's renderer needs pygame)."""


def _policy_and_env(policy: Any, env_id: str | None) -> tuple[Policy, str]:
    act = getattr(policy, "act", policy)
    env_id = env_id or getattr(policy, "env_id", None)
    if env_id is None or not callable(act):
        raise TypeError(f"evaluate expects an agent, or a callable policy together with env_id. "
                        f"Received: policy={policy!r}, env_id={env_id!r}")
    return act, env_id


def evaluate(policy: Any, episodes: int = 100, *, env_id: str | None = None, seed: int = 0,
             vectorization_mode: str | None = None) -> np.ndarray:
    """The undiscounted return of each of ``episodes`` episodes played by ``policy``.

    Args:
        policy: an agent (its greedy :meth:`~deepzen.rl.agents.Agent.act` is used), or any callable
            mapping a batch of observations ``(N, *observation_shape)`` to ``N`` actions.
        episodes: the number of episodes, all played in parallel.
        env_id: the gymnasium id (default: the agent's ``env_id``).
        seed: seeds the episodes' initial states.
        vectorization_mode: passed to ``gymnasium.make_vec``: None uses the environment's own
            vectorized implementation where it has one, "sync" plays ``episodes`` copies of the
            single environment (the i-th seeded with ``seed + i``).

    Returns:
        (episodes,) float64 array of returns.
    """
    import gymnasium as gym

    if not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"evaluate expects episodes to be a positive integer. Received: episodes={episodes!r}")
    act, env_id = _policy_and_env(policy, env_id)
    envs = gym.make_vec(env_id, num_envs=episodes, vectorization_mode=vectorization_mode)
    if envs.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP) != gym.vector.AutoresetMode.NEXT_STEP:
        raise ValueError(f"evaluate expects a vector environment that resets on the step after an episode ends. "
                         f"Received: {env_id} with autoreset_mode={envs.metadata['autoreset_mode']}")
    try:
        observations, _ = envs.reset(seed=seed)
        returns = np.zeros(episodes)
        running = np.ones(episodes, dtype=bool)  # the first episode of each sub-environment is still going
        while running.any():
            actions = np.asarray(act(observations))
            observations, rewards, terminated, truncated, _ = envs.step(actions)
            returns += np.where(running, rewards, 0.0)
            running &= ~(terminated | truncated)
    finally:
        envs.close()
    return returns


def record_episode(policy: Any, path: str | os.PathLike, *, env_id: str | None = None, seed: int = 0,
                   frame_skip: int = 2) -> dict[str, Any]:
    """Plays one episode with rendering and writes it as an animated GIF or as PNG frames.

    Args:
        policy: an agent or a batch policy, as for :func:`evaluate`.
        path: a ``.gif`` file, or a folder that receives ``frame_00000.png``, ``frame_00001.png``, ...
        env_id: the gymnasium id (default: the agent's ``env_id``).
        seed: seeds the episode's initial state.
        frame_skip: keep every ``frame_skip``-th frame (CartPole renders 50 frames per second).

    Returns:
        ``{"return": episode return, "frames": frames written, "path": path}``.

    Raises:
        RenderingUnavailable: if the environment cannot render here (CartPole needs pygame:
            ``pip install pygame``).
    """
    import gymnasium as gym
    from PIL import Image

    act, env_id = _policy_and_env(policy, env_id)
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        # frames are drawn off-screen; on a machine without a display SDL's default video driver
        # prints an error where its dummy driver works quietly
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    env = gym.make(env_id, render_mode="rgb_array")
    frames, episode_return, done = [], 0.0, False
    try:
        observation, _ = env.reset(seed=seed)
        step = 0
        while not done:
            if step % frame_skip == 0:
                try:
                    frames.append(Image.fromarray(env.render()))
                except gym.error.DependencyNotInstalled as error:
                    raise RenderingUnavailable(f"Cannot record {env_id}: rendering needs a package that is not "
                                               f"installed ({error}). Install it (for CartPole: pip install pygame) "
                                               f"to write episode frames.") from error
            action = np.asarray(act(observation[None]))[0]
            observation, reward, terminated, truncated, _ = env.step(action.item())
            episode_return += float(reward)
            done = terminated or truncated
            step += 1
    finally:
        env.close()
    path = Path(path)
    if path.suffix.lower() == ".gif":
        path.parent.mkdir(parents=True, exist_ok=True)
        fps = env.metadata.get("render_fps", 50) / frame_skip
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    else:
        path.mkdir(parents=True, exist_ok=True)
        for index, frame in enumerate(frames):
            frame.save(path / f"frame_{index:05d}.png")
    return {"return": episode_return, "frames": len(frames), "path": str(path)}


def plot_learning_curve(history: Any, path: str | os.PathLike, *, title: str | None = None,
                        solved_return: float | None = None, window: int = 20) -> Path:
    """Draws training-episode returns (with a ``window``-episode moving mean) and evaluation means
    (+/- one standard deviation) against environment steps, and writes a PNG.

    Args:
        history: a :class:`~deepzen.rl.agents.LearningHistory` (or its ``as_dict()``).
        path: the PNG file.
        title: the figure title.
        solved_return: draws the "solved" threshold as a dashed line.
        window: episodes in the moving mean.
    """
    from deepzen.training.plots import pyplot, save_figure

    logs = history.as_dict() if hasattr(history, "as_dict") else history
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    steps, returns = np.asarray(logs["episode_steps"]), np.asarray(logs["episode_returns"], dtype=float)
    if len(returns):
        axis.plot(steps, returns, ".", alpha=0.25, markersize=3, color="tab:blue", label="training episode")
        if len(returns) >= window:
            moving = np.convolve(returns, np.ones(window) / window, mode="valid")
            axis.plot(steps[window - 1:], moving, color="tab:blue", label=f"training, mean of {window}")
    if logs["eval_steps"]:
        means, stds = np.asarray(logs["eval_mean_returns"]), np.asarray(logs["eval_std_returns"])
        axis.errorbar(logs["eval_steps"], means, yerr=stds, color="tab:orange", marker="o", markersize=4,
                      capsize=3, label="evaluation (greedy)")
    if solved_return is not None:
        axis.axhline(solved_return, color="gray", linestyle="--", linewidth=1, label=f"solved ({solved_return:g})")
    axis.set_xlabel("environment steps")
    axis.set_ylabel("episode return")
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left", fontsize=8)
    if title:
        axis.set_title(title)
    figure.tight_layout()
    return save_figure(figure, path)
