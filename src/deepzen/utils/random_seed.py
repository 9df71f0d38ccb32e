"""``set_random_seed(seed)``: Keras's ``keras.utils.set_random_seed`` — seeds Python, NumPy and torch."""

from __future__ import annotations

from deepzen import runtime


def set_random_seed(seed: int) -> None:
    """Seeds Python's ``random``, NumPy and torch (every device), so a run repeats exactly.

    The same as :func:`deepzen.runtime.seed` (see it for what happens under torchrun).

    Args:
        seed: a non-negative integer.
    """
    runtime.seed(seed)
