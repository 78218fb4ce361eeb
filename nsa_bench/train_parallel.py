"""Training over several processes with PyTorch's own engines: DistributedDataParallel (a replica per
rank, gradients averaged) or FSDP2 (`fully_shard`: parameters, gradients and optimizer state sharded).

Checkpoints stay those of one process (the full model, and an optimizer state keyed by parameter
index as torch.optim writes it), so a run resumes at any world size and with either engine.
"""

from __future__ import annotations

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

from nsa_bench.distributed import Ranks
from nsa_bench.models import Transformer

_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def wrap(model: Transformer, ranks: Ranks, fsdp: bool) -> torch.nn.Module:
    """What the training step calls: model itself in one process, else DDP around it, or (fsdp) model
    with each block and then the whole sharded in place by fully_shard."""
    if not ranks.distributed:
        return model
    if fsdp:
        for block in model.blocks:
            fully_shard(block)
        return fully_shard(model)
    device = model.embed.weight.device
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def engine(ranks: Ranks, fsdp: bool) -> str:
    """The engine's name, for the CSV."""
    return "none" if not ranks.distributed else "fsdp" if fsdp else "ddp"


def _names(model: torch.nn.Module, opt: torch.optim.Optimizer) -> list[str]:
    """The optimizer's parameters' names in its index order (its groups' parameters, in turn)."""
    name_of = {id(p): n for n, p in model.named_parameters()}
    return [name_of[id(p)] for group in opt.param_groups for p in group["params"]]


def full_states(model: Transformer, opt: torch.optim.Optimizer, sharded: bool) -> tuple[dict, dict]:
    """The whole model's state dict and the optimizer's (index-keyed, as one process writes it); under
    FSDP every rank must call this (the shards are gathered; rank 0 gets them, on the CPU)."""
    if not sharded:
        return model.state_dict(), opt.state_dict()
    weights = get_model_state_dict(model, options=_FULL)
    by_name = get_optimizer_state_dict(model, opt, options=_FULL)
    index = {name: i for i, name in enumerate(_names(model, opt))}
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in by_name.get("param_groups", [])]
    return weights, {"state": {index[n]: s for n, s in by_name.get("state", {}).items()}, "param_groups": groups}


def load_optimizer(model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict, sharded: bool) -> None:
    """Load an index-keyed optimizer state (as full_states returns) into opt, sharding it under FSDP."""
    if not sharded:
        opt.load_state_dict(state)
        return
    names = _names(model, opt)
    by_name = {"state": {names[i]: s for i, s in state["state"].items()},
               "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]}
    set_optimizer_state_dict(model, opt, by_name, options=StateDictOptions(full_state_dict=True))


def plain_copy(model: Transformer, weights: dict) -> Transformer:
    """A one-process model (on the CPU) holding weights, to write as a checkpoint."""
    with torch.device("meta"):
        plain = Transformer(model.cfg, nsa_impl=model.nsa_impl)
    plain.load_state_dict(weights, assign=True)
    plain.head.weight = plain.embed.weight  # assign replaced the tied parameter
    return plain
