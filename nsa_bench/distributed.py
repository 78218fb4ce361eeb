"""The process group of a run launched by torchrun (or accelerate launch): which rank this process is,
how many there are, and the few collectives the commands need. One process (no launcher) is rank 0 of 1
and every call here is a no-op, so the one-process path needs no process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


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
    """The device this rank uses: cuda:LOCAL_RANK on a GPU machine (or when 'cuda' is asked), else the one asked."""
    ranks = launched_ranks()
    name = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and ranks.distributed:
        return torch.device("cuda", ranks.local_rank)
    return torch.device(name)


def init(device: torch.device) -> Ranks:
    """Join the launcher's process group (NCCL on CUDA, gloo on the CPU) when there is more than one
    process; returns this process's ranks."""
    ranks = launched_ranks()
    if ranks.distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda" else None)
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


def shard(items: list, ranks: Ranks) -> list:
    """This rank's share of items: every world_size-th one from its rank (the whole list in one process)."""
    return items[ranks.rank :: ranks.world_size]
