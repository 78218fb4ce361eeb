"""Compression of keys/values into block tokens: phi_K / phi_V of NSA_SPEC.md section 1."""

from __future__ import annotations

import torch
from torch import nn

from .config import NSAConfig


def _blocks(x: torch.Tensor, config: NSAConfig) -> torch.Tensor:
    """[B,T,H,d] -> [B,N_cmp,H,l,d]: the l tokens of each compressed block (stride d)."""
    b, t, h, d = x.shape
    n = config.num_cmp_blocks(t)
    if n == 0:
        return x.new_zeros(b, 0, h, config.cmp_block, d)
    return x.unfold(1, config.cmp_block, config.cmp_stride)[:, :n].permute(0, 1, 2, 4, 3)


def mean_pool_compress(x: torch.Tensor, config: NSAConfig) -> torch.Tensor:
    """Parameter-free compression: the mean of each block's l tokens, [B,T,H,d] -> [B,N_cmp,H,d]."""
    return _blocks(x, config).mean(dim=3)


class CompressionMLP(nn.Module):
    """Learnable compression: an MLP over a block's l tokens plus an intra-block position table.

    The output is the block mean plus the MLP's correction; the last layer starts at zero, so an
    untrained module equals mean pooling and training moves it from there.
    """

    def __init__(self, head_dim: int, config: NSAConfig, hidden: int | None = None):
        super().__init__()
        self.config = config
        hidden = hidden or 2 * head_dim
        self.position = nn.Parameter(torch.randn(config.cmp_block, head_dim) * 0.02)
        self.fc1 = nn.Linear(config.cmp_block * head_dim, hidden)
        self.fc2 = nn.Linear(hidden, head_dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B,T,H,d] -> [B,N_cmp,H,d]."""
        blocks = _blocks(x, self.config)
        flat = (blocks + self.position.to(blocks.dtype)).flatten(start_dim=3)
        correction = self.fc2(nn.functional.silu(self.fc1(flat)))
        return blocks.mean(dim=3) + correction
