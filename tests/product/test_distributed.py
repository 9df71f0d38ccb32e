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
