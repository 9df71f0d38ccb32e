"""Data-parallel training on PyTorch DDP, launched by ``torchrun``.

Every process runs the same script. ``fit`` notices ``torchrun``'s environment (``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), joins the process group (gloo on CPU,
NCCL on GPU), and then:

- ``batch_size`` stays the *global* batch: every step, each process takes its slice of the same
  global batch, drawn from the same seeded permutation, so the union of the local batches is the
  batch one process would have used. A recipe's hyperparameters mean the same on 1 or N processes.
- the model is wrapped in ``DistributedDataParallel``, which averages the gradients;
- the epoch losses and metric states are summed over the processes before they are logged, so
  every process sees the same logs (and EarlyStopping decides the same everywhere);
- only rank 0 prints and writes files.

Batch normalization uses each process's own slice of the batch, unless synchronised: per layer with
``BatchNormalization(synchronized=True)`` (Keras's argument), or for every batch-norm layer with
:func:`set_sync_batchnorm` (``deepzen train --sync-batchnorm``, Lightning's ``sync_batchnorm``).

Example (two processes on one machine)::

    torchrun --standalone --nproc_per_node 2 train.py      # or: deepzen train RECIPE --nproc 2
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

from deepzen.data.arrays import ArrayData


_sync_batchnorm = False  # set_sync_batchnorm(True): wrap() synchronises every batch-norm layer


def _launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init() -> bool:
    """Joins the process group described by torchrun's environment variables (once).

    Picks NCCL when CUDA is available (and makes ``cuda`` mean this process's ``LOCAL_RANK`` GPU),
    gloo otherwise. Returns True when running with more than one process.
    """
    if not _launched_by_torchrun() or not dist.is_available():
        return False
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    return dist.get_world_size() > 1


def active() -> bool:
    """True inside a multi-process run (joining torchrun's process group on the first call)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    return init()


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_rank_zero() -> bool:
    """True in the process that prints and writes files (always true without torchrun)."""
    return rank() == 0


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# -- data -----------------------------------------------------------------------------------------------
class ShardedData(ArrayData):
    """This process's share of an :class:`ArrayData` (which keeps all samples on every process).

    Args:
        data: the full data.
        whole_batches: training: each global batch of ``batch_size`` samples (in the shared order) is
            split over the processes, so all of them take the same number of steps; a last global
            batch with fewer samples than processes is dropped. Evaluation (False): each process
            takes a contiguous block of the samples and batches it itself; every sample is used once.
    """

    def __init__(self, data: ArrayData, whole_batches: bool):
        self.__dict__.update(vars(data))
        self.rank, self.world = rank(), world_size()
        self.whole_batches = whole_batches
        if self.n < self.world:
            raise ValueError(f"{self.world} processes need at least {self.world} samples. Received: {self.n}")

    def num_batches(self, batch_size: int) -> int:
        if self.whole_batches:
            full, rest = divmod(self.n, batch_size)
            return full + (rest >= self.world)
        own = len(torch.tensor_split(torch.arange(self.n), self.world)[self.rank])
        return -(-own // batch_size)

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None):
        if not self.whole_batches:
            own = torch.tensor_split(torch.arange(self.n, device=self.device), self.world)[self.rank]
            for start in range(0, len(own), batch_size):
                yield self._take(own[start:start + batch_size])
            return
        if batch_size < self.world:
            raise ValueError(f"batch_size is the global batch, split over {self.world} processes; it must be at "
                             f"least {self.world}. Received: batch_size={batch_size}")
        if shuffle:
            order = torch.randperm(self.n, device=generator.device if generator is not None else self.device,
                                   generator=generator).to(self.device)
        else:
            order = torch.arange(self.n, device=self.device)
        for step in range(self.num_batches(batch_size)):
            global_batch = order[step * batch_size:(step + 1) * batch_size]
            yield self._take(torch.tensor_split(global_batch, self.world)[self.rank])  # (~batch_size / world,)


def shard(data: Any, whole_batches: bool = False) -> Any:
    """This process's share of ``data`` (see :class:`ShardedData`); other iterables pass through
    unchanged (give a DataLoader a ``DistributedSampler`` yourself)."""
    if isinstance(data, ShardedData) or not isinstance(data, ArrayData):
        return data
    return ShardedData(data, whole_batches)


# -- the model ------------------------------------------------------------------------------------------
def set_sync_batchnorm(enabled: bool) -> None:
    """Makes the fits that follow under torchrun synchronise the statistics of every batch-norm layer across
    the processes (``deepzen train --sync-batchnorm``): each training batch is normalized with the mean and
    variance of the global batch, and the moving statistics track those, as on one process.

    deepzen's ``BatchNormalization`` layers get ``synchronized = True`` (their saved config is unchanged);
    torch's own ``nn.BatchNorm*`` modules inside a model become ``nn.SyncBatchNorm`` (same parameters and
    state-dict keys), which torch runs on GPUs only.
    """
    global _sync_batchnorm
    _sync_batchnorm = bool(enabled)


def synchronize_batchnorm(model: torch.nn.Module) -> None:
    """Synchronises the statistics of all of ``model``'s batch-norm layers across the processes, in place
    (see :func:`set_sync_batchnorm`)."""
    from deepzen.layers.normalization import BatchNormalization

    for module in model.modules():
        if isinstance(module, BatchNormalization):
            module.synchronized = True
    torch_norms = [name for name, module in model.named_modules()
                   if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
                   and not isinstance(module, torch.nn.SyncBatchNorm)]
    if torch_norms:
        device = next(model.parameters()).device
        if device.type == "cpu":
            raise ValueError(f"torch.nn.SyncBatchNorm runs on GPUs only, and this model trains on the CPU with torch "
                             f"batch-norm modules ({', '.join(name or 'the model' for name in torch_norms)}). Use "
                             f"deepzen.layers.BatchNormalization, which synchronises on gloo too, or train without "
                             f"sync_batchnorm")
        for name, child in list(model.named_children()):  # replaces the modules below each child in place
            model.add_module(name, torch.nn.SyncBatchNorm.convert_sync_batchnorm(child))


def wrap(engine) -> None:
    """Makes the engine's training forward a ``DistributedDataParallel`` of its model (once), with its
    batch-norm layers synchronised when :func:`set_sync_batchnorm` asked for it.

    Evaluation keeps calling the bare model: it needs no gradient synchronisation, and processes
    may evaluate different numbers of batches.
    """
    from torch.nn.parallel import DistributedDataParallel

    if getattr(engine, "distributed_model", None) is not None:
        return
    if _sync_batchnorm:
        synchronize_batchnorm(engine.model)
    device = next(engine.model.parameters()).device
    ddp = DistributedDataParallel(engine.model, device_ids=[device] if device.type == "cuda" else None)
    engine.distributed_model = ddp
    engine.train_forward = torch.compile(ddp) if engine.jit else ddp


# -- reductions -----------------------------------------------------------------------------------------
def reduce_results(loss_sum: torch.Tensor, count: Any, metrics: list) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Sums the loss, the sample count and every metric's state over the processes.

    Metric states are sums (counts, totals, confusion matrices), so the summed state gives the
    metric over all processes' samples. The metrics' own states are left as they were.

    Returns:
        ``(loss_sum, count, [metric results])``, the same on every process.
    """
    totals = torch.stack([loss_sum.detach().double().reshape(()),
                          torch.as_tensor(count, dtype=torch.float64, device=loss_sum.device).reshape(())])
    dist.all_reduce(totals)
    results = []
    for metric in metrics:
        own = metric.state
        if own is None:
            raise RuntimeError(f"Metric '{metric.name}' saw no batch on rank {rank()}")
        metric.state = {key: value.clone() for key, value in own.items()}
        for value in metric.state.values():
            dist.all_reduce(value)
        results.append(metric.result().float())
        metric.state = own
    return totals[0], totals[1], results


def all_gather_object(value: Any) -> list[Any]:
    """``value`` from every process, in rank order (``[value]`` without torchrun)."""
    if not active():
        return [value]
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` on every process (``value`` itself without torchrun)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if active():
        dist.barrier()


__all__ = ["init", "active", "rank", "world_size", "is_rank_zero", "shutdown", "ShardedData", "shard",
           "set_sync_batchnorm", "synchronize_batchnorm", "wrap", "reduce_results", "all_gather_object", "broadcast_object", "barrier"]
