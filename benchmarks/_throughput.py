"""Training throughput as a fraction of the machine's measured matmul peak (for the benchmarks' speed rows).

The peak is what a big float32 matrix product reaches here (the best of a few timed products): the
most this CPU does with the threads torch uses. A training step's floating-point work is counted by
``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products, forward and backward;
element-wise work is not counted), and the step is timed through ``Model.fit``, so the fraction
includes everything the engine does around the kernels.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of the fastest of ``repeats`` float32 ``size x size`` products (2 * size^3 flops each)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up: thread pool, allocations
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def step_flops(model, loss, x: np.ndarray, y: np.ndarray) -> float:
    """Floating-point operations of one training step (forward, loss, backward) on the batch ``(x, y)``."""
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        value = loss(torch.as_tensor(y), model(torch.as_tensor(x)))
        value.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def training_throughput(model, loss, x: np.ndarray, y: np.ndarray, batch_size: int, steps: int = 20,
                        repeats: int = 3) -> dict[str, float]:
    """Samples/s and GFLOP/s of ``Model.fit`` on ``x, y`` (compiled with Adam and ``loss``), the median of
    ``repeats`` timed fits of ``steps`` steps each after a warm-up fit.

    Returns:
        ``{"samples_per_second", "gflops_per_step", "gflops_per_second"}``.
    """
    count = batch_size * steps
    x, y = x[:count], y[:count]
    flops = step_flops(model, loss, x[:batch_size], y[:batch_size])
    model.compile(optimizer="adam", loss=loss)
    model.fit(x[:batch_size * 2], y[:batch_size * 2], batch_size=batch_size, epochs=1, verbose=0)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    return {"samples_per_second": count / seconds, "gflops_per_step": flops / 1e9,
            "gflops_per_second": flops * steps / seconds / 1e9}
