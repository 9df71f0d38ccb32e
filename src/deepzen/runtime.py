"""Process-wide settings: the default device and seeding for reproducible runs."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def default_device() -> torch.device:
    """cuda if available, then mps, then cpu; ``DEEPZEN_DEVICE`` overrides."""
    chosen = os.environ.get("DEEPZEN_DEVICE")
    if chosen:
        return torch.device(chosen)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed(value: int, *, deterministic: bool = False) -> None:
    """Seeds Python, NumPy and torch (all devices) so that a run can be repeated exactly.

    Args:
        value: the seed.
        deterministic: also ask torch for deterministic kernels (slower on GPU; CPU kernels are
            deterministic already).
    """
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"seed expects a non-negative integer. Received: {value!r}")
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
