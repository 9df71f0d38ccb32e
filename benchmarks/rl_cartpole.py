"""DQN on CartPole-v1, side by side: deepzen's ``cartpole-dqn`` recipe and stable-baselines3's DQN with the
same hyperparameters (rl-baselines3-zoo's tuned CartPole values), plus deepzen's A2C learning curve.

Both DQNs get a budget of 100k environment steps and are evaluated every ``--eval-interval`` steps on
100 fresh episodes by the same function (``deepzen.rl.evaluate``, greedy actions, identical seeds);
training stops at the first evaluation whose mean return is >= 475 (CartPole-v1's "solved"). The
training clocks (wall and process CPU time) stop during evaluations. Each run is a fresh
subprocess with the same torch thread count, and the frameworks alternate seed by seed.

    python benchmarks/rl_cartpole.py                    # seeds 0 1 2, plus A2C (seed 0)
    python benchmarks/rl_cartpole.py --seeds 0 --no-a2c

Prints a Markdown table and writes ``benchmarks/results/rl_cartpole.md`` with the learning curves
``rl_cartpole_eval_curves.png`` (evaluation means of every DQN run) and ``rl_cartpole_a2c_curve.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ENV_ID = "CartPole-v1"
SOLVED = 475.0
# rl-baselines3-zoo, hyperparams/dqn.yml, CartPole-v1 (deepzen's DQNConfig defaults are the same values)
ZOO_DQN = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
               target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
               exploration_final_eps=0.04)
NET_ARCH = [256, 256]


def eval_seed(seed: int, index: int) -> int:
    """The seed of the index-th evaluation, as ``deepzen.rl.Agent.learn`` chooses it."""
    return seed + 10_000 * (index + 1)


# -- workers (each runs in its own process) -------------------------------------------------------------
def run_deepzen(args) -> dict:
    from deepzen.recipes import run_recipe
    import deepzen.rl.recipes  # noqa: F401  (registers the recipes)

    run_dir = Path(args.run_dir)
    started = time.perf_counter()
    if args.worker == "deepzen-a2c":
        overrides = {"seed": args.seed, "num_threads": args.threads, "total_steps": args.a2c_steps,
                     "eval_interval": 10_000, "record_gif": False}
        metrics = run_recipe("cartpole-a2c", overrides, run_dir=run_dir)
    else:
        overrides = {"seed": args.seed, "num_threads": args.threads, "total_steps": args.budget,
                     "eval_interval": args.eval_interval, "record_gif": False, "stop_when_solved": True,
                     **ZOO_DQN, "hidden_units": NET_ARCH}
        metrics = run_recipe("cartpole-dqn", overrides, run_dir=run_dir)
    history = json.loads((run_dir / "learning_history.json").read_text())
    return {**metrics, "eval_steps": history["eval_steps"], "eval_mean_returns": history["eval_mean_returns"],
            "wall_seconds": time.perf_counter() - started}


def run_sb3(args) -> dict:
    import numpy as np
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    from deepzen.rl import evaluate

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model = DQN("MlpPolicy", ENV_ID, policy_kwargs=dict(net_arch=NET_ARCH), seed=args.seed, device="cpu", verbose=0,
                **ZOO_DQN)
    policy = lambda observations: model.predict(observations, deterministic=True)[0]  # noqa: E731
    record = {"eval_steps": [], "eval_mean_returns": [], "eval_seconds": 0.0, "eval_cpu_seconds": 0.0,
              "solved_at_step": None}

    class Evaluation(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % args.eval_interval:
                return True
            paused, cpu_paused = time.perf_counter(), time.process_time()
            returns = evaluate(policy, 100, env_id=ENV_ID, seed=eval_seed(args.seed, len(record["eval_steps"])))
            record["eval_steps"].append(self.num_timesteps)
            record["eval_mean_returns"].append(float(returns.mean()))
            record["eval_seconds"] += time.perf_counter() - paused
            record["eval_cpu_seconds"] += time.process_time() - cpu_paused
            if returns.mean() >= SOLVED:
                record["solved_at_step"] = self.num_timesteps
                record["solved_train_seconds"] = time.perf_counter() - learn_started - record["eval_seconds"]
                record["solved_train_cpu_seconds"] = time.process_time() - learn_cpu - record["eval_cpu_seconds"]
                return False
            return True

    learn_started, learn_cpu = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=args.budget, callback=Evaluation())
    train_seconds = time.perf_counter() - learn_started - record["eval_seconds"]
    train_cpu_seconds = time.process_time() - learn_cpu - record["eval_cpu_seconds"]
    returns = evaluate(policy, 100, env_id=ENV_ID, seed=args.seed + 1_000_000)
    return {"solved_at_step": record["solved_at_step"],
            "solved_train_seconds": record.get("solved_train_seconds"),
            "solved_train_cpu_seconds": record.get("solved_train_cpu_seconds"),
            "train_steps": int(model.num_timesteps), "train_seconds": train_seconds,
            "train_cpu_seconds": train_cpu_seconds,
            "best_eval_mean_return": max(record["eval_mean_returns"], default=None),
            "final_eval_mean_return": float(np.mean(returns)), "eval_steps": record["eval_steps"],
            "eval_mean_returns": record["eval_mean_returns"], "wall_seconds": time.perf_counter() - started}


def worker(args) -> None:
    result = run_sb3(args) if args.worker == "sb3" else run_deepzen(args)
    print("RESULT " + json.dumps(result))


# -- driver ---------------------------------------------------------------------------------------------
def launch(kind: str, seed: int, args, run_dir: Path) -> dict:
    command = [sys.executable, __file__, "--worker", kind, "--seed-one", str(seed), "--threads", str(args.threads),
               "--budget", str(args.budget), "--eval-interval", str(args.eval_interval),
               "--a2c-steps", str(args.a2c_steps), "--run-dir", str(run_dir)]
    print(f"[{kind} seed {seed}] {' '.join(command[1:])}", flush=True)
    output = subprocess.run(command, capture_output=True, text=True)
    if output.returncode != 0:
        raise RuntimeError(f"{kind} seed {seed} failed:\n{output.stdout[-3000:]}\n{output.stderr[-3000:]}")
    line = next(line for line in output.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    print(f"[{kind} seed {seed}] solved at {result['solved_at_step']} steps, "
          f"{result.get('solved_train_seconds')} s of training", flush=True)
    return result


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "not solved"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def per_thousand(result: dict, key: str = "train_seconds") -> float:
    return 1000 * result[key] / result["train_steps"]


def table(results: dict[str, list[tuple[int, dict]]]) -> list[str]:
    names = {"deepzen": "deepzen `cartpole-dqn`", "sb3": "stable-baselines3 DQN"}
    lines = ["| framework | seed | solved at step | train s to solve (wall) | train CPU s to solve | "
             "train wall s / 1k steps | train CPU s / 1k steps | best eval mean | fresh 100-episode mean |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind in ("deepzen", "sb3"):
        for seed, r in results[kind]:
            lines.append(f"| {names[kind]} | {seed} | {fmt(r['solved_at_step'])} | {fmt(r['solved_train_seconds'])} | "
                         f"{fmt(r['solved_train_cpu_seconds'])} | {per_thousand(r):.2f} | "
                         f"{per_thousand(r, 'train_cpu_seconds'):.2f} | {fmt(r['best_eval_mean_return'])} | "
                         f"{fmt(r['final_eval_mean_return'])} |")
        solved = [r for _, r in results[kind] if r["solved_at_step"] is not None]
        if len(results[kind]) > 1:
            median = lambda key: statistics.median(r[key] for r in solved) if solved else None  # noqa: E731
            every = lambda key: statistics.median(per_thousand(r, key) for _, r in results[kind])  # noqa: E731
            lines.append(f"| **{names[kind]}, median** | {len(solved)}/{len(results[kind])} solved | "
                         f"{fmt(median('solved_at_step'), 0)} | {fmt(median('solved_train_seconds'))} | "
                         f"{fmt(median('solved_train_cpu_seconds'))} | {every('train_seconds'):.2f} | "
                         f"{every('train_cpu_seconds'):.2f} | | |")
    return lines


def plot_curves(results: dict, a2c: dict | None) -> None:
    from deepzen.training.plots import pyplot

    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    for kind, color in (("deepzen", "tab:blue"), ("sb3", "tab:orange")):
        for i, (seed, r) in enumerate(results[kind]):
            axis.plot(r["eval_steps"], r["eval_mean_returns"], marker="o", markersize=3, color=color, alpha=0.8,
                      label=("deepzen DQN" if kind == "deepzen" else "SB3 DQN") if i == 0 else None)
    if a2c is not None:
        axis.plot(a2c["eval_steps"], a2c["eval_mean_returns"], marker=".", color="tab:green", label="deepzen A2C")
    axis.axhline(SOLVED, color="gray", linestyle="--", linewidth=1, label="solved (475)")
    axis.set_xlabel("environment steps")
    axis.set_ylabel("mean return, 100 greedy episodes")
    axis.set_title("CartPole-v1: evaluations during training")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(RESULTS / "rl_cartpole_eval_curves.png", dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch threads in every worker")
    parser.add_argument("--budget", type=int, default=100_000, help="DQN environment-step budget")
    parser.add_argument("--eval-interval", type=int, default=5000)
    parser.add_argument("--a2c-steps", type=int, default=300_000)
    parser.add_argument("--no-a2c", action="store_true", help="skip the A2C learning curve")
    parser.add_argument("--worker", choices=["deepzen", "sb3", "deepzen-a2c"], help=argparse.SUPPRESS)
    parser.add_argument("--seed-one", type=int, dest="seed", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return

    import gymnasium
    import stable_baselines3
    import torch

    load_before, started = os.getloadavg()[0], time.perf_counter()
    results: dict[str, list] = {"deepzen": [], "sb3": []}
    with tempfile.TemporaryDirectory(prefix="rl-bench-") as scratch:
        for seed in args.seeds:
            for kind in ("deepzen", "sb3"):
                results[kind].append((seed, launch(kind, seed, args, Path(scratch) / f"{kind}-{seed}")))
        a2c = None
        if not args.no_a2c:
            a2c = launch("deepzen-a2c", args.seeds[0], args, Path(scratch) / "a2c")
            RESULTS.mkdir(parents=True, exist_ok=True)
            curve = Path(scratch) / "a2c" / "learning_curve.png"
            (RESULTS / "rl_cartpole_a2c_curve.png").write_bytes(curve.read_bytes())
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot_curves(results, a2c)

    command = "python benchmarks/rl_cartpole.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# DQN on CartPole-v1: deepzen vs stable-baselines3", "",
        f"`{command.strip()}` — {time.strftime('%Y-%m-%d %H:%M')}, torch {torch.__version__}, gymnasium "
        f"{gymnasium.__version__}, stable-baselines3 {stable_baselines3.__version__}, {args.threads} torch thread(s), "
        f"CPU load average {load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end "
        f"({os.cpu_count()} cores; other jobs shared the machine when the load exceeds 1), "
        f"{time.perf_counter() - started:.0f} s in all.", "",
        f"Same hyperparameters on both sides (rl-baselines3-zoo's CartPole-v1 DQN): net {NET_ARCH}, "
        + ", ".join(f"{k} {v:g}" for k, v in ZOO_DQN.items())
        + f", Huber loss, gradient norm clipped to 10, budget {args.budget:,} steps (the epsilon decay spans "
          f"16% of it). Evaluation every {args.eval_interval:,} steps on 100 greedy episodes with the same "
          "function and seeds for both; training stops at the first evaluation with mean >= 475. "
          "Training times exclude evaluations; CPU seconds (the process's user + system time) are the steadier "
          "measure when other jobs share the machine. The last column re-evaluates the agent where training "
          "stopped (deepzen: the best-evaluated weights it saved) on 100 episodes with seeds no evaluation used.", "",
        *table(results), "",
        "Evaluation means during training: `benchmarks/results/rl_cartpole_eval_curves.png`.",
    ]
    if a2c is not None:
        reached = next((s for s, m in zip(a2c["eval_steps"], a2c["eval_mean_returns"]) if m >= SOLVED), None)
        lines += ["", "## deepzen A2C (`cartpole-a2c`, seed " f"{args.seeds[0]})", "",
                  f"{a2c['train_steps']:,} steps in {a2c['train_seconds']:.0f} s of training, "
                  f"{a2c['train_cpu_seconds']:.0f} CPU s ({per_thousand(a2c):.2f} wall s / 1k steps); "
                  f"8 environments x 5 steps per update, RMSprop 7e-4, "
                  f"n-step returns (GAE lambda 1), entropy coefficient 0 (SB3's A2C defaults, shared body). "
                  f"First evaluation >= 475: {fmt(reached)}; best evaluation mean "
                  f"{fmt(a2c['best_eval_mean_return'])}; the kept best weights score "
                  f"{a2c['final_eval_mean_return']:.1f} on 100 fresh episodes.", "",
                  "Evaluations (step: mean of 100 episodes): "
                  + ", ".join(f"{s // 1000}k: {m:.0f}" for s, m in zip(a2c["eval_steps"], a2c["eval_mean_returns"])),
                  "", "Learning curve: `benchmarks/results/rl_cartpole_a2c_curve.png`."]
    report = "\n".join(lines) + "\n"
    (RESULTS / "rl_cartpole.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
