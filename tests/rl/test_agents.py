import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from deepzen.rl import (A2C, DQN, A2CConfig, DQNConfig, LearningHistory, RenderingUnavailable, evaluate, load_agent,
                        plot_learning_curve, record_episode)
from deepzen.training.serialization import ModelFileError, read_tensors, write_tensors


def balance(observations):
    """A crude CartPole controller: push towards the side the pole leans to (returns vary, about 25-45)."""
    return (np.asarray(observations)[:, 2] > 0).astype(np.int64)


def play_one(env_id, policy, seed):
    env = gym.make(env_id)
    observation, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        observation, reward, terminated, truncated, _ = env.step(int(policy(observation[None])[0]))
        total += reward
        done = terminated or truncated
    env.close()
    return total


def test_evaluate_matches_playing_each_episode_alone():
    returns = evaluate(balance, 6, env_id="CartPole-v1", seed=3, vectorization_mode="sync")
    expected = [play_one("CartPole-v1", balance, 3 + i) for i in range(6)]
    assert returns.tolist() == expected
    assert len(set(expected)) > 1  # the episodes differ, so a wrong seed or episode count would show


def test_evaluate_with_the_vectorized_cartpole_is_seeded():
    first = evaluate(balance, 20, env_id="CartPole-v1", seed=7)
    assert np.array_equal(first, evaluate(balance, 20, env_id="CartPole-v1", seed=7))
    assert first.shape == (20,) and first.min() >= 1 and first.max() <= 500
    with pytest.raises(TypeError, match="env_id"):
        evaluate(balance, 3)


@pytest.mark.parametrize("cls, config", [(DQN, DQNConfig(hidden_units=(32, 16), double_dqn=True)),
                                         (A2C, A2CConfig(hidden_units=(16,), num_envs=2))])
def test_save_load_round_trip_acts_identically(tmp_path, cls, config):
    agent = cls("CartPole-v1", config, seed=4)
    with torch.no_grad():  # move the weights away from the seeded initial ones
        for p in agent.network.parameters():
            p.add_(torch.randn_like(p))
    agent.save(tmp_path / "agent.dz")
    loaded = load_agent(tmp_path / "agent.dz")
    assert type(loaded) is cls and loaded.config == config and loaded.env_id == "CartPole-v1"
    observations = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    assert np.array_equal(loaded.act(observations), agent.act(observations))
    assert len(set(agent.act(observations).tolist())) == 2  # both actions occur, so the check means something
    for a, b in zip(agent.network.state_dict().values(), loaded.network.state_dict().values()):
        assert torch.equal(a, b)
    assert np.array_equal(evaluate(loaded, 10, seed=1), evaluate(agent, 10, seed=1))


def test_load_agent_refuses_other_files(tmp_path):
    write_tensors(tmp_path / "model.dz", {"w": torch.zeros(2)}, {"model": None})
    with pytest.raises(ModelFileError, match="not an agent file"):
        load_agent(tmp_path / "model.dz")
    DQN("CartPole-v1", DQNConfig(hidden_units=(8,))).save(tmp_path / "agent.dz")
    data = bytearray((tmp_path / "agent.dz").read_bytes())
    data[-3] ^= 0xFF
    (tmp_path / "broken.dz").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="altered or damaged"):
        load_agent(tmp_path / "broken.dz")


@pytest.mark.parametrize("env_id", ["planted_env_module:Planted-v0", "NoSuchEnv-v9", 42])
def test_load_agent_imports_no_environment_module_named_in_the_file(tmp_path, monkeypatch, env_id):
    """gymnasium.make("module:Env") imports the module: a file may name only a registered environment id."""
    marker = tmp_path / "imported"
    (tmp_path / "planted_env_module.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    DQN("CartPole-v1", DQNConfig(hidden_units=(8,))).save(tmp_path / "agent.dz")
    tensors, metadata = read_tensors(tmp_path / "agent.dz")
    write_tensors(tmp_path / "agent.dz", tensors, {**metadata, "env_id": env_id})
    with pytest.raises(ModelFileError, match="not a registered gymnasium id"):
        load_agent(tmp_path / "agent.dz")
    assert not marker.exists()


def test_load_agent_refuses_a_broken_config_as_a_file_error(tmp_path):
    DQN("CartPole-v1", DQNConfig(hidden_units=(8,))).save(tmp_path / "agent.dz")
    tensors, metadata = read_tensors(tmp_path / "agent.dz")
    write_tensors(tmp_path / "agent.dz", tensors, {**metadata, "config": {"hidden_units": "x", "explode": 1}})
    with pytest.raises(ModelFileError, match="agent.dz"):
        load_agent(tmp_path / "agent.dz")


def test_agents_refuse_continuous_actions():
    with pytest.raises(ValueError, match="Discrete action space"):
        DQN("Pendulum-v1")


def test_record_episode_without_pygame_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pygame", None)  # makes `import pygame` fail
    monkeypatch.setitem(sys.modules, "pygame.gfxdraw", None)
    with pytest.raises(RenderingUnavailable, match="pip install pygame"):
        record_episode(balance, tmp_path / "episode.gif", env_id="CartPole-v1")


def test_record_episode_writes_frames(tmp_path):
    pytest.importorskip("pygame")
    from PIL import Image

    result = record_episode(balance, tmp_path / "episode.gif", env_id="CartPole-v1", seed=2, frame_skip=3)
    assert result["return"] == play_one("CartPole-v1", balance, 2)
    with Image.open(tmp_path / "episode.gif") as gif:
        assert gif.n_frames == result["frames"] == -(-int(result["return"]) // 3)
    frames = record_episode(balance, tmp_path / "frames", env_id="CartPole-v1", seed=2, frame_skip=10)
    assert sorted(p.name for p in (tmp_path / "frames").iterdir())[:2] == ["frame_00000.png", "frame_00001.png"]
    assert len(list((tmp_path / "frames").iterdir())) == frames["frames"]


def test_plot_learning_curve_writes_a_png(tmp_path):
    history = LearningHistory(episode_steps=list(range(10, 310, 10)), episode_returns=[float(i) for i in range(30)],
                              eval_steps=[100, 200, 300], eval_mean_returns=[5.0, 9.0, 20.0],
                              eval_std_returns=[1.0, 2.0, 3.0])
    path = plot_learning_curve(history, tmp_path / "curve.png", title="test", solved_return=25)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("module", ["deepzen.rl", "deepzen.rl.replay", "deepzen.rl.dqn", "deepzen.rl.a2c"])
def test_docstring_examples(module):
    import doctest
    import importlib

    assert doctest.testmod(importlib.import_module(module)).failed == 0
