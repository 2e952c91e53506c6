"""Data-parallel training under torchrun: the pieces the chain and the emotion trainers share.

A program started by ``utils/torchrun.sh`` (torchrun) sees ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; :func:`start` reads them, picks this rank's device (one GPU per rank) and joins
the process group (on GPUs NCCL for CUDA tensors and gloo for CPU ones, such as counts and pickled
objects; gloo on CPU); :func:`stop` leaves it.  Started as one plain process, ``WORLD_SIZE`` is
unset and every helper here is the identity (no process group), so the single-process numbers do
not change.

Both trainers take every ``world``-th example of each GLOBAL minibatch (:func:`shard`) -- the
minibatch one process would make -- so N ranks together make the single-process updates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

import torch
import torch.distributed as dist

from ser.device import resolve_device

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: ``rank`` of ``world`` (``local_rank`` on its node)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Ranks":
        """torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (one process when unset)."""
        return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                   int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(device: str | torch.device, local_rank: int) -> torch.device:
    """resolve_device, with this rank's GPU (``LOCAL_RANK``) when no index is given."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    return dev


def start(device: str | torch.device) -> tuple[Ranks, torch.device]:
    """(ranks, device) of this process; joins the process group when torchrun started several."""
    ranks = Ranks.from_env()
    dev = pick_device(device, ranks.local_rank)
    if ranks.world > 1 and not is_distributed():
        # CUDA tensors through NCCL; CPU ones (counts, figures, pickled objects) through gloo
        dist.init_process_group("cpu:gloo,cuda:nccl" if dev.type == "cuda" else "gloo")
    return ranks, dev


def stop() -> None:
    """Wait for every rank, then leave the process group (call after dropping the DDP wrapper)."""
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_(t: torch.Tensor, op: Any = None) -> torch.Tensor:
    """In-place all-reduce (sum unless ``op``); the identity in one process."""
    if is_distributed():
        dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t


class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks whose backward sums the gradients over the ranks (the gradient of the
    sum of every rank's loss with respect to this rank's input)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return all_reduce_(t.clone())

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return all_reduce_(grad.clone())


def all_reduce_with_grad(t: torch.Tensor) -> torch.Tensor:
    """Out-of-place, differentiable all-reduce (sum), e.g. synchronised BatchNorm statistics
    (ser.nnet.tdnnf.KaldiBatchNorm.sync_ranks); a copy in one process."""
    return _AllReduceSum.apply(t)


def all_gather(obj: T) -> list[T]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in one process."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: T) -> T:
    """Rank 0's ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def shard(n: int, rank: int, world: int) -> range:
    """Positions of this rank's examples among ``n``: every ``world``-th from ``rank``."""
    return range(rank, n, world)


def sharded_map(fn: Callable[[Sequence[T]], list[R]], items: Sequence[T]) -> list[R]:
    """``fn(items)`` with the work split over the ranks: each computes ``fn`` on its
    :func:`shard` of ``items``; the results are gathered on every rank, in ``items``' order."""
    world = world_size()
    if world == 1:
        return fn(items)
    mine = fn([items[i] for i in shard(len(items), rank(), world)])
    out: list[Any] = [None] * len(items)
    for r, part in enumerate(all_gather(mine)):
        for i, res in zip(shard(len(items), r, world), part):
            out[i] = res
    return out
