"""Process-wide settings: the default device and seeding for reproducible runs."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from deepzen.training import distributed


def default_device() -> torch.device:
    """cuda if available, then mps, then cpu; ``DEEPZEN_DEVICE`` overrides.

    Under ``torchrun`` (which sets ``LOCAL_RANK``) with CUDA, it is this process's GPU,
    ``cuda:LOCAL_RANK``, so that the processes on one machine do not all train on the first GPU.
    """
    chosen = os.environ.get("DEEPZEN_DEVICE")
    if chosen:
        return torch.device(chosen)
    if torch.cuda.is_available():
        local_rank = os.environ.get("LOCAL_RANK")
        return torch.device("cuda", int(local_rank)) if local_rank is not None else torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed(value: int, *, deterministic: bool = False) -> None:
    """Seeds Python, NumPy and torch (all devices) so that a run can be repeated exactly.

    Under ``torchrun`` every process calls ``seed(value)`` with the same value, and:

    - Python's and NumPy's generators get ``value`` on every process, so data preparation that
      draws from them (splits, subsets) picks the same samples everywhere;
    - torch's generators get ``value + rank``, so dropout, noise and augmentation that draw from
      torch's global generator differ between the processes (rank 0 draws what a single process
      would). The weights each process initialises differ too, but DDP copies rank 0's to all of
      them when it wraps the model;
    - the shuffle order of ``fit`` depends on neither: rank 0 draws a shuffle seed and sends it to
      all processes, and each epoch's permutation comes from a private generator seeded with
      ``shuffle_seed + epoch``, so every process shuffles identically (the sharding relies on it).

    Args:
        value: the seed.
        deterministic: also ask torch for deterministic kernels (slower on GPU; CPU kernels are
            deterministic already).
    """
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"seed expects a non-negative integer. Received: {value!r}")
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value + distributed.rank())
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
