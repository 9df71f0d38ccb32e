import importlib.util
import json

import pytest
import torch

from deepzen.recipes import RECIPES, run_recipe
from deepzen.rl import evaluate, load_agent, record_episode
from deepzen.rl.agents import Agent
from deepzen.runs import RunError

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


def balance_by_hand(agent):
    """Sets the weights of an agent with one hidden layer so that it pushes towards the side the pole leans to
    (test_agents.balance, returns about 25-45): hidden units 0 and 1 get +-angle, the others nothing, action 1
    scores unit 0 minus unit 1 (relu and tanh keep the sign), action 0 scores 0."""
    weights = agent.network.state_dict()
    hidden, output = [key for key in weights if key.endswith(".weight")][:2]  # DQN: dense, dense_1; A2C: body, policy
    with torch.no_grad():
        for value in weights.values():
            value.zero_()
        weights[hidden][0, 2], weights[hidden][1, 2] = 1.0, -1.0
        weights[output][1, 0], weights[output][1, 1] = 1.0, -1.0


@pytest.mark.parametrize("name", sorted(TINY))
def test_cli_evaluate_reports_the_returns_of_the_saved_agent_without_training(tmp_path, name, monkeypatch, capsys):
    from deepzen import cli

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the recipe's setting would outlive the test
    record_gif = importlib.util.find_spec("pygame") is not None
    settings = {**TINY[name], "eval_interval": "400", "eval_episodes": "3", "final_eval_episodes": "20",
                "record_gif": str(record_gif).lower(), "verbose": "0", "seed": "3"}
    run_dir = tmp_path / "run"
    assert cli.main(["train", name, "--run-dir", str(run_dir),
                     *(arg for key, value in settings.items() for arg in ("--set", f"{key}={value}"))]) == 0
    trained = json.loads((run_dir / "metrics.json").read_text())
    # a better agent in agent.dz than the run trained: evaluate must report the file's agent, not retrain or rebuild
    agent = load_agent(run_dir / "agent.dz")
    balance_by_hand(agent)
    agent.save(run_dir / "agent.dz")
    saved = load_agent(run_dir / "agent.dz")
    returns = evaluate(saved, 20, seed=3 + 1_000_000)  # the recipe's final evaluation, done independently
    assert trained["final_eval_mean_return"] < 20 < returns.mean()  # so reporting the trained agent would show
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    monkeypatch.setattr(Agent, "learn", lambda *args, **kwargs: pytest.fail("deepzen evaluate trained an agent"))
    capsys.readouterr()

    # the verb's handler, so that a refusal raises its error instead of becoming exit code 2
    assert cli.command_evaluate(cli.build_parser().parse_args(["evaluate", str(run_dir)])) == 0

    out = capsys.readouterr().out
    replayed = json.loads(out[out.index("{"):])
    assert replayed["final_eval_episodes"] == 20
    assert replayed["final_eval_mean_return"] == returns.mean()
    assert replayed["final_eval_std_return"] == returns.std()
    assert replayed["final_eval_min_return"] == returns.min()
    assert set(replayed) == {"final_eval_mean_return", "final_eval_std_return", "final_eval_min_return",
                             "final_eval_episodes"} | ({"gif_episode_return"} if record_gif else set())
    if record_gif:  # the replay records its episode of the saved agent too (in a scratch folder)
        episode = record_episode(saved, tmp_path / "episode.gif", seed=3 + 2_000_000)
        assert replayed["gif_episode_return"] == episode["return"]
        assert (tmp_path / "episode.gif").read_bytes()[:6] == b"GIF89a"
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before  # agent.dz included: nothing written

    (run_dir / "agent.dz").unlink()  # without the agent there is nothing to replay: refused, not retrained
    with pytest.raises(RunError, match="has no agent.dz"):
        cli.command_evaluate(cli.build_parser().parse_args(["evaluate", str(run_dir)]))
