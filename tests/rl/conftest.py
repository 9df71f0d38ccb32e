"""RL tests use one torch thread: their networks are tiny, and on a shared 2-core machine OpenMP's
per-op synchronisation made a DQN training phase 15x slower with two threads than with one."""

import pytest
import torch

pytest.importorskip("gymnasium")


@pytest.fixture(autouse=True)
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
