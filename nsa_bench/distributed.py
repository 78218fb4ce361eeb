"""The process group of a run launched by torchrun (or accelerate launch): which rank this process is,
how many there are, and the few collectives the commands need. One process (no launcher) is rank 0 of 1
and every call here is a no-op, so the one-process path needs no process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.distributed as dist

from nsa_bench.environment import resolve_device


@dataclass(frozen=True)
class Ranks:
    """rank of world_size processes; local_rank picks this process's GPU on its host."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes the results (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_ranks() -> Ranks:
    """The ranks torchrun / accelerate launch set in the environment (RANK, WORLD_SIZE, LOCAL_RANK)."""
    env = os.environ
    return Ranks(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def rank_device(device: str | None) -> torch.device:
    """The device this rank uses: resolve_device's (the one asked, default CUDA when present; UsageError
    for CUDA without a GPU), and for a bare 'cuda' under a launcher this rank's GPU, cuda:LOCAL_RANK."""
    resolved = resolve_device(device)
    ranks = launched_ranks()
    if resolved.type == "cuda" and resolved.index is None and ranks.distributed:
        return torch.device("cuda", ranks.local_rank)
    return resolved


def init(device: torch.device) -> Ranks:
    """Join the launcher's process group (NCCL on CUDA, gloo on the CPU) when there is more than one
    process; returns this process's ranks."""
    ranks = launched_ranks()
    if ranks.distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return ranks


def close() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce(values: list[float], device: torch.device, op: str = "sum") -> list[float]:
    """values summed (op 'sum') or their maximum ('max') over the ranks; unchanged in one process."""
    if not dist.is_initialized():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return tensor.tolist()


def gather_objects(obj) -> list:
    """Every rank's obj, in rank order, on every rank ([obj] in one process)."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    """Rank 0's obj on every rank (obj itself in one process)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def current_ranks() -> Ranks:
    """This process's ranks once it joined a process group, else rank 0 of 1."""
    return launched_ranks() if dist.is_initialized() else Ranks()


def map_in_rounds(items: list, work: Callable) -> Iterator[tuple]:
    """(item, work(item)) for every item, in the items' order, on every rank: in each round the ranks
    take one item each (rank r the r-th), then all results are gathered. Every rank must run it to the end."""
    ranks = current_ranks()
    for start in range(0, len(items), ranks.world_size):
        chunk = items[start : start + ranks.world_size]
        mine = work(chunk[ranks.rank]) if ranks.rank < len(chunk) else None
        yield from zip(chunk, gather_objects(mine))
