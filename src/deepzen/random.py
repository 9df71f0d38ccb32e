"""Keras's ``keras.random`` on torch: random tensors with Keras's names, arguments and seeding rules.

``seed`` is, as in Keras:

- ``None``: torch's global generator (what ``deepzen.utils.set_random_seed`` seeds);
- an ``int``: the same numbers on every call with that seed;
- a :class:`SeedGenerator`: a generator whose state advances with each call, so that repeated calls (a GAN's
  latent vectors, step after step) differ and a run stays reproducible from the generator's seed.

Example:
    >>> from deepzen import random
    >>> random.normal((2, 3), seed=7).equal(random.normal((2, 3), seed=7))
    True
    >>> generator = random.SeedGenerator(1337)
    >>> random.uniform((2,), seed=generator).equal(random.uniform((2,), seed=generator))
    False
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from deepzen.ops import convert_to_tensor, standardize_dtype


class SeedGenerator:
    """A seeded random state for the functions of this module (Keras's ``keras.random.SeedGenerator``).

    Args:
        seed: an int; None draws one from torch's global generator.
    """

    def __init__(self, seed: int | None = None):
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
        if not isinstance(seed, int):
            raise ValueError(f"SeedGenerator expects an int seed. Received: seed={seed!r}")
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}


def _generator(seed: Any) -> torch.Generator | None:
    if seed is None:
        return None
    if isinstance(seed, SeedGenerator):
        return seed.generator
    if isinstance(seed, int) and not isinstance(seed, bool):
        return torch.Generator().manual_seed(seed)
    raise ValueError(f"seed must be None, an int or a deepzen.random.SeedGenerator. Received: seed={seed!r}")


def _float_dtype(dtype: Any) -> torch.dtype:
    return standardize_dtype(dtype) or torch.get_default_dtype()


def normal(shape: Sequence[int], mean: float = 0.0, stddev: float = 1.0, dtype: Any = None,
           seed: Any = None) -> torch.Tensor:
    """Samples from N(mean, stddev²)."""
    values = torch.randn(tuple(shape), generator=_generator(seed), dtype=_float_dtype(dtype))
    return values * stddev + mean


def uniform(shape: Sequence[int], minval: float = 0.0, maxval: float = 1.0, dtype: Any = None,
            seed: Any = None) -> torch.Tensor:
    """Samples from U[minval, maxval)."""
    values = torch.rand(tuple(shape), generator=_generator(seed), dtype=_float_dtype(dtype))
    return values * (maxval - minval) + minval


def randint(shape: Sequence[int], minval: int, maxval: int, dtype: Any = "int32", seed: Any = None) -> torch.Tensor:
    """Integers in [minval, maxval)."""
    return torch.randint(minval, maxval, tuple(shape), generator=_generator(seed), dtype=standardize_dtype(dtype))


def truncated_normal(shape: Sequence[int], mean: float = 0.0, stddev: float = 1.0, dtype: Any = None,
                     seed: Any = None) -> torch.Tensor:
    """N(mean, stddev²) with values beyond two standard deviations redrawn (Keras's rule)."""
    values = torch.empty(tuple(shape), dtype=_float_dtype(dtype))
    generator = _generator(seed)
    with torch.no_grad():
        # inverse-CDF sampling of the normal restricted to [-2, 2]: exact, with no redraw loop
        low, high = torch.special.ndtr(torch.tensor(-2.0)), torch.special.ndtr(torch.tensor(2.0))
        u = torch.rand(values.shape, generator=generator, dtype=torch.float64) * (high - low) + low
        values.copy_(torch.special.ndtri(u))
    return values * stddev + mean


def dropout(inputs: Any, rate: float, noise_shape: Sequence[int] | None = None, seed: Any = None) -> torch.Tensor:
    """Zeroes each entry with probability ``rate`` and scales the rest by ``1 / (1 - rate)``."""
    if not 0 <= rate < 1:
        raise ValueError(f"dropout expects 0 <= rate < 1. Received: rate={rate}")
    inputs = convert_to_tensor(inputs)
    keep = torch.rand(tuple(noise_shape or inputs.shape), generator=_generator(seed)) >= rate
    return inputs * keep.to(inputs.dtype) / (1 - rate)


def shuffle(x: Any, axis: int = 0, seed: Any = None) -> torch.Tensor:
    """``x`` with its entries along ``axis`` in a random order."""
    x = convert_to_tensor(x)
    order = torch.randperm(x.shape[axis], generator=_generator(seed))
    return x.index_select(axis, order)
