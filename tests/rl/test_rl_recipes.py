import json

import pytest
import torch

from deepzen.recipes import RECIPES, run_recipe
from deepzen.rl import evaluate, load_agent

TINY = {
    "cartpole-dqn": {"total_steps": 1200, "learning_starts": 500, "train_freq": 100, "gradient_steps": 4,
                     "hidden_units": "[16]"},
    "cartpole-a2c": {"total_steps": 800, "num_envs": 4, "hidden_units": "[16]"},
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_recipe_writes_agent_curve_history_and_metrics(tmp_path, name, monkeypatch):
    import deepzen.rl.recipes  # noqa: F401  (registers the recipes)

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the recipe's setting would outlive the test
    overrides = {**TINY[name], "eval_interval": "400", "eval_episodes": "5", "final_eval_episodes": "7",
                 "record_gif": "false", "verbose": "0", "seed": "3"}
    metrics = run_recipe(name, overrides, run_dir=tmp_path)
    assert name in RECIPES
    assert (tmp_path / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    history = json.loads((tmp_path / "learning_history.json").read_text())
    assert history["eval_steps"] == list(range(400, int(TINY[name]["total_steps"]) + 1, 400))
    assert metrics["best_eval_mean_return"] == max(history["eval_mean_returns"])
    assert metrics["final_eval_episodes"] == 7
    agent = load_agent(tmp_path / "agent.dz")
    returns = evaluate(agent, 7, seed=3 + 1_000_000)  # the recipe's final evaluation, repeated on the saved agent
    assert metrics["final_eval_mean_return"] == pytest.approx(returns.mean())
