"""Multi-process helpers: who am I, split work across ranks, gather results back in order.

They read ``torch.distributed`` (initialised by ``torchrun``, ``accelerate launch`` or
``accelerate.debug_launcher`` through accelerate's state) and are no-ops in a single process, so the
same evaluation code runs under any launcher. Evaluation shards its utterances round-robin
(``items[rank::world]``) and every rank gets the full, ordered result back, so metrics computed from
it are identical to a single-process run over the same utterances.
"""
from __future__ import annotations

from typing import Callable, Sequence, TypeVar

import torch.distributed as dist

T = TypeVar("T")


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return rank_and_world()[0] == 0


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items``: every world-th item starting at its rank."""
    rank, world = rank_and_world()
    return list(items[rank::world])


def gather(local: Sequence[T], n: int) -> list[T]:
    """Inverse of `shard`: every rank's results, back in the original order of the ``n`` items."""
    rank, world = rank_and_world()
    if world == 1:
        return list(local)
    parts: list = [None] * world
    dist.all_gather_object(parts, list(local))
    out: list = [None] * n
    for r, part in enumerate(parts):
        if len(part) != len(range(r, n, world)):
            raise RuntimeError(f"rank {r} returned {len(part)} results for {len(range(r, n, world))} items")
        out[r::world] = part
    return out


def map_sharded(fn: Callable[[list[T]], Sequence], items: Sequence[T]) -> list:
    """``fn`` over this rank's share of ``items``; the gathered results of all ranks, in order."""
    return gather(fn(shard(items)), len(items))


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()
