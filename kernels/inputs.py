"""Shape and dtype checks shared by the NSA reference and the Triton kernels."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import NSAConfig


@dataclass(frozen=True)
class NSAShape:
    """Sizes of one NSA call (NSA_SPEC.md notation)."""

    batch: int
    seq_len: int
    q_heads: int
    kv_heads: int
    dk: int
    dv: int
    n_cmp: int

    @property
    def group(self) -> int:
        return self.q_heads // self.kv_heads


def _expect(t: torch.Tensor, name: str, shape: tuple, ref: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(t).__name__}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {shape}")
    if t.dtype != ref.dtype:
        raise ValueError(f"{name} has dtype {t.dtype}, expected {ref.dtype} like q")
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device}, expected {ref.device} like q")


def check_nsa_inputs(
    q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, config, k_slc=None, v_slc=None, k_win=None, v_win=None
) -> NSAShape:
    """Validate the arguments of nsa_attention(_ref); return their sizes or raise ValueError."""
    if not isinstance(config, NSAConfig):
        raise ValueError(f"config must be an NSAConfig, got {type(config).__name__}")
    if not isinstance(q, torch.Tensor) or q.dim() != 4:
        raise ValueError("q must be a 4-D tensor [B, T, HQ, dk]")
    if not isinstance(k, torch.Tensor) or k.dim() != 4 or not isinstance(v, torch.Tensor) or v.dim() != 4:
        raise ValueError("k and v must be 4-D tensors [B, T, H, dk|dv]")
    batch, seq_len, q_heads, dk = q.shape
    kv_heads, dv = k.shape[2], v.shape[3]
    if kv_heads == 0 or q_heads % kv_heads:
        raise ValueError(f"query heads ({q_heads}) must be a multiple of key/value heads ({kv_heads})")
    n_cmp = config.num_cmp_blocks(seq_len)
    _expect(k, "k", (batch, seq_len, kv_heads, dk), q)
    _expect(v, "v", (batch, seq_len, kv_heads, dv), q)
    _expect(k_cmp, "k_cmp", (batch, n_cmp, kv_heads, dk), q)
    _expect(v_cmp, "v_cmp", (batch, n_cmp, kv_heads, dv), q)
    for name, g in (("g_cmp", g_cmp), ("g_slc", g_slc), ("g_win", g_win)):
        _expect(g, name, (batch, seq_len, q_heads), q)
    for name, t, d in (("k_slc", k_slc, dk), ("v_slc", v_slc, dv), ("k_win", k_win, dk), ("v_win", v_win, dv)):
        if t is not None:
            _expect(t, name, (batch, seq_len, kv_heads, d), q)
    return NSAShape(batch, seq_len, q_heads, kv_heads, dk, dv, n_cmp)
