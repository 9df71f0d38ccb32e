"""Run by ``torchrun --nproc_per_node 2`` (test_distributed.py): one training step of a batch-norm model,
without and then with synchronised statistics; each process saves what its layer holds afterwards.

Usage: ddp_batchnorm.py OUTPUT_FOLDER
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import deepzen
from deepzen.layers import BatchNormalization
from deepzen.models import Sequential
from deepzen.training import distributed

MOMENTUM = 0.5  # Keras's: moving = 0.5 * moving + 0.5 * batch
LEARNING_RATE = 0.1


def step_data() -> tuple[torch.Tensor, torch.Tensor]:
    """(x (8, 3), y (8, 3)): one global batch; with 2 processes, rank r takes samples 4r .. 4r + 3."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, generator=generator) * torch.tensor([1.0, 2.0, 3.0]) + torch.tensor([0.0, 5.0, -2.0])
    return x, torch.randn(8, 3, generator=generator)


def train_one_step(sync: bool) -> dict[str, torch.Tensor]:
    distributed.set_sync_batchnorm(sync)
    model = Sequential([BatchNormalization(momentum=MOMENTUM, input_shape=(3,))])
    model.compile(optimizer=deepzen.optimizers.SGD(learning_rate=LEARNING_RATE), loss="mse")
    x, y = step_data()
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    distributed.init()
    for sync in (False, True):
        state = train_one_step(sync)
        torch.save(state, folder / f"{'sync' if sync else 'own'}-rank{distributed.rank()}.pt")
    distributed.shutdown()
