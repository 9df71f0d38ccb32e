"""Process-wide settings: the default device (one GPU per torchrun process) and per-rank seeding."""

import random

import numpy as np
import pytest
import torch

import deepzen
from deepzen.runtime import default_device


@pytest.fixture
def cuda_machine(monkeypatch):
    """Makes torch report a CUDA device (no GPU is needed: default_device only asks)."""
    monkeypatch.delenv("DEEPZEN_DEVICE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return monkeypatch


def test_default_device_is_this_processs_gpu_under_torchrun(cuda_machine):
    assert default_device() == torch.device("cuda")
    cuda_machine.setenv("LOCAL_RANK", "1")
    assert default_device() == torch.device("cuda", 1)
    cuda_machine.setenv("DEEPZEN_DEVICE", "cpu")  # the explicit choice still wins
    assert default_device() == torch.device("cpu")


def test_default_device_without_cuda_ignores_the_local_rank(monkeypatch):
    monkeypatch.delenv("DEEPZEN_DEVICE", raising=False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")


def draws_as_process(monkeypatch, rank: int) -> tuple:
    """What Python, NumPy and torch draw after ``deepzen.seed(3)`` in process ``rank`` of 2 (no process group)."""
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", "2")
    deepzen.seed(3)
    return random.random(), np.random.rand(4), torch.rand(4)


def test_seed_shares_python_and_numpy_streams_but_gives_each_rank_its_own_torch_stream(monkeypatch):
    rank0, rank1 = draws_as_process(monkeypatch, 0), draws_as_process(monkeypatch, 1)
    assert rank0[0] == rank1[0] and np.array_equal(rank0[1], rank1[1])  # data preparation agrees
    assert not torch.equal(rank0[2], rank1[2])  # dropout / augmentation / noise differ per process
    torch.manual_seed(3)
    assert torch.equal(rank0[2], torch.rand(4))  # rank 0 draws what a single process draws
    assert torch.equal(draws_as_process(monkeypatch, 1)[2], rank1[2])  # and each rank is reproducible
