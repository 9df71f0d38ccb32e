"""DDP: sharding gives every process its slice of the same global batches, and a 2-process run
(``deepzen train --nproc 2``, torchrun + gloo) reaches the single-process weights and logs."""

from __future__ import annotations

import csv

import pytest
import torch

from subprocesses import run_deepzen
from deepzen.data.arrays import ArrayData
from deepzen.training.distributed import ShardedData, shard
from deepzen.training.serialization import read_tensors


def as_process(monkeypatch, rank: int, world: int) -> None:
    """Makes distributed.rank()/world_size() answer as process ``rank`` of ``world`` (no process group)."""
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world))


@pytest.mark.parametrize("n, batch_size, world", [(40, 8, 2), (41, 8, 2), (37, 9, 3), (30, 8, 4)])
def test_the_local_batches_of_all_processes_make_up_the_single_process_batches(monkeypatch, n, batch_size, world):
    data = ArrayData(torch.arange(n).float()[:, None], torch.arange(n))
    single = [y for _, y, _ in data.batches(batch_size, shuffle=True, generator=torch.Generator().manual_seed(5))]
    per_process = []
    for rank in range(world):
        as_process(monkeypatch, rank, world)
        sharded = shard(data, whole_batches=True)
        batches = [y for _, y, _ in sharded.batches(batch_size, True, torch.Generator().manual_seed(5))]
        assert len(batches) == sharded.num_batches(batch_size)
        per_process.append(batches)
    assert len({len(batches) for batches in per_process}) == 1  # every process takes the same number of steps
    for step, parts in enumerate(zip(*per_process)):
        assert torch.equal(torch.cat(parts), single[step])  # rank order: the union is the global batch
        assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1
    dropped = sum(len(b) for b in single[len(per_process[0]):])
    assert dropped < world  # only a last global batch smaller than the number of processes is dropped


def test_evaluation_shards_cover_every_sample_once(monkeypatch):
    data = ArrayData(torch.zeros(23, 1), torch.arange(23))
    seen = []
    for rank in range(3):
        as_process(monkeypatch, rank, 3)
        sharded = ShardedData(data, whole_batches=False)
        batches = [y for _, y, _ in sharded.batches(4)]
        assert len(batches) == sharded.num_batches(4)
        seen += [int(i) for batch in batches for i in batch]
    assert sorted(seen) == list(range(23))


def test_two_ddp_processes_train_one_epoch_to_the_single_process_weights(tmp_path, tiny_recipe):
    from deepzen import cli

    settings = ["--set", "dropout=0", "--set", "epochs=1"]  # no dropout, no batch norm: the same arithmetic
    single, double = tmp_path / "single", tmp_path / "ddp"
    assert cli.main(["train", "tiny-mlp", "--run-dir", str(single), *settings]) == 0
    two = run_deepzen("train", "tiny-mlp", "--run-dir", str(double), "--nproc", "2", *settings, timeout=240)
    assert two.returncode == 0, two.stderr
    assert "--nproc_per_node=2" in two.stdout
    assert two.stdout.count("Training tiny-mlp") == 1  # only rank 0 prints
    expected, received = read_tensors(single / "model.dz")[0], read_tensors(double / "model.dz")[0]
    for key in expected:
        assert torch.allclose(received[key], expected[key], rtol=0, atol=1e-5), key
    logs = [next(csv.DictReader(open(folder / "history.csv"))) for folder in (single, double)]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):  # reduced over both processes
        assert float(logs[1][key]) == pytest.approx(float(logs[0][key]), abs=1e-5)
    environment = (double / "environment.json").read_text()
    assert '"processes": 2' in environment
    assert sorted(p.name for p in double.iterdir()) == sorted(p.name for p in single.iterdir())


def test_sync_batchnorm_uses_the_statistics_of_the_global_batch_across_two_processes(tmp_path):
    """torchrun + gloo, one step of a batch-norm model: off, each process's moving mean is its own slice's;
    on, it is the global batch's on both, and the weights are those of one process on the whole batch."""
    import subprocess
    import sys

    from ddp_batchnorm import LEARNING_RATE, MOMENTUM, step_data
    from subprocesses import HERE, cli_environment

    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                str(HERE / "ddp_batchnorm.py"), str(tmp_path)]
    finished = subprocess.run(launcher, env=cli_environment(), capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    saved = {name: torch.load(tmp_path / f"{name}.pt") for name in ("own-rank0", "own-rank1", "sync-rank0", "sync-rank1")}
    x, y = step_data()

    def moving(batch):  # Keras momentum: moving = m * moving + (1 - m) * batch, from mean 0 and variance 1
        return (1 - MOMENTUM) * batch.mean(0), MOMENTUM + (1 - MOMENTUM) * batch.var(0)  # unbiased variance

    for rank in range(2):
        own, sync = saved[f"own-rank{rank}"], saved[f"sync-rank{rank}"]
        mean, variance = moving(x[4 * rank:4 * rank + 4])
        assert torch.allclose(own["batch_normalization.running_mean"], mean, atol=1e-6)
        assert torch.allclose(own["batch_normalization.running_var"], variance, atol=1e-5)
        mean, variance = moving(x)
        assert torch.allclose(sync["batch_normalization.running_mean"], mean, atol=1e-6)
        assert torch.allclose(sync["batch_normalization.running_var"], variance, atol=1e-5)
    weight, bias = torch.ones(3, requires_grad=True), torch.zeros(3, requires_grad=True)  # one process, whole batch
    out = torch.nn.functional.batch_norm(x, None, None, weight, bias, training=True, eps=1e-3)
    torch.nn.functional.mse_loss(out, y).backward()
    for rank in range(2):
        sync = saved[f"sync-rank{rank}"]
        assert torch.allclose(sync["batch_normalization.weight"], weight.detach() - LEARNING_RATE * weight.grad, atol=1e-6)
        assert torch.allclose(sync["batch_normalization.bias"], bias.detach() - LEARNING_RATE * bias.grad, atol=1e-6)


def test_sync_batchnorm_keeps_the_saved_config_and_refuses_torch_batchnorm_on_the_cpu():
    from deepzen.layers import BatchNormalization, Dense
    from deepzen.models import Sequential
    from deepzen.training.distributed import synchronize_batchnorm

    model = Sequential([Dense(4, input_dim=3), BatchNormalization()])
    model(torch.zeros(2, 3))  # builds the layers
    keys = list(model.state_dict())
    synchronize_batchnorm(model)
    norm = model.layers[-1]
    assert norm.synchronized and norm.get_config()["synchronized"] is False
    assert list(model.state_dict()) == keys
    with pytest.raises(ValueError, match="GPUs only.*1"):
        synchronize_batchnorm(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)))


def test_nproc_passes_sync_batchnorm_and_restart_on_to_torchrun(monkeypatch):
    import subprocess

    from deepzen import cli

    launched = []

    class Launcher:
        def __init__(self, command, **options):
            launched.append(command)

        def wait(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", Launcher)
    assert cli.main(["train", "--resume", "runs/x", "--restart", "--nproc", "2", "--sync-batchnorm"]) == 0
    assert launched[0][-4:] == ["--resume", "runs/x", "--restart", "--sync-batchnorm"]
