"""Data-parallel training under ``torchrun``: the process group from the environment, the model
wrapper, and what makes a metric loss see the global batch.

``verikit train`` is the same command with one process or many: when ``WORLD_SIZE > 1`` (set by
``torchrun``) the process group is initialised from the ``env://`` variables, with ``nccl`` on CUDA
and ``gloo`` on CPU. What one process computes on a global batch of ``B``, ``W`` processes compute
with ``B / W`` each:

- :class:`verikit.train.data.EpochSampler` gives each process its slice of the same global batch;
- a metric loss sees only the local batch unless the embeddings are gathered, which changes which
  pairs exist, what the miner picks, and (for ProxyAnchor, whose value is not a mean over
  samples) the loss itself. Every loss is therefore wrapped in pytorch-metric-learning's
  ``DistributedLossWrapper`` (and the miner in ``DistributedMinerWrapper``): they all-gather
  embeddings and labels, so each process computes the loss of the global batch; the gathered
  copies carry no gradient, so each process back-propagates into its own samples only, and the
  wrapper multiplies by ``W`` to undo DDP's gradient averaging;
- loss modules with parameters (the proxies of ProxyAnchor, the weight matrices of normalized
  softmax, CosFace, ArcFace) live outside the DDP-wrapped model, so DDP does not synchronise
  them. Each process gets the *whole* gradient of the global-batch loss for them (the proxies
  meet every gathered embedding), times the wrapper's ``W``: :func:`sync_loss_gradients`
  averages them across processes (identical up to rounding, averaging keeps the processes in
  lockstep) and divides by ``W``. Wrapping model and loss in one DDP module would average them
  too but still leave the factor ``W``; without the gathering, proxy losses that are per-sample
  means (softmax, CosFace, ArcFace) would come out right but ProxyAnchor would not;
- batch-norm statistics are synchronised (``SyncBatchNorm``) on CUDA only: torch has no CPU
  implementation, so on CPU each process normalises with its own batch's statistics.

Only rank 0 validates, logs, checkpoints and saves.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from ..models.embedder import resolve_device


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@contextmanager
def process_group(device: str) -> Iterator[tuple[World, torch.device]]:
    """Yield this process's World and device; joins (and afterwards leaves) the torchrun group when there is one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        yield World(), resolve_device(device)
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)  # one GPU per process
        torch.cuda.set_device(dev)
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    try:
        yield World(dist.get_rank(), dist.get_world_size(), local_rank), dev
    finally:
        if owned:
            dist.destroy_process_group()


def wrap_model(model: nn.Module, world: World, device: torch.device, find_unused: bool = False) -> nn.Module:
    """DistributedDataParallel around ``model`` (the model itself when not distributed)."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # replaces BN children in place, keeps their state
    elif world.is_main and any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules()):
        warnings.warn("batch-norm statistics are per process on CPU (torch has no CPU SyncBatchNorm); "
                      "results differ slightly from one process with the global batch", stacklevel=2)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=find_unused)


def wrap_loss_and_miner(loss_fn: nn.Module, miner: Any, world: World) -> tuple[nn.Module, Any]:
    """Loss and miner that see the global batch (unchanged when not distributed)."""
    if not world.distributed:
        return loss_fn, miner
    from pytorch_metric_learning.utils.distributed import DistributedLossWrapper, DistributedMinerWrapper

    return DistributedLossWrapper(loss_fn), (DistributedMinerWrapper(miner) if miner is not None else None)


def loss_scale(world: World) -> float:
    """Divide a wrapped loss's value by this to report the global batch's loss (the wrapper multiplies by W)."""
    return float(world.world_size) if world.distributed else 1.0


def sync_loss_gradients(params: Iterable[nn.Parameter], world: World) -> None:
    """The gradient of the global-batch loss for parameters outside the DDP model (a loss's proxies).

    Under :func:`wrap_loss_and_miner` every process already holds ``W`` times that gradient (it
    saw every embedding, and the wrapper scales the loss by ``W``): average across processes,
    then divide by ``W``.
    """
    if not world.distributed:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world.world_size * world.world_size


def broadcast_flag(value: bool, world: World, device: torch.device) -> bool:
    """Rank 0's decision (e.g. early stopping) for every process."""
    if not world.distributed:
        return value
    flag = torch.tensor([int(value)], device=device)  # nccl moves only CUDA tensors
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model
