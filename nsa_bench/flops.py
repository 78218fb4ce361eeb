"""FLOP and byte counts for the kernel benchmark, and the speedup ceilings they imply.

Conventions (those of flash-attention's benchmarks, so TFLOP/s compare with published numbers):
- A matmul [m, k] x [k, n] is 2*m*k*n FLOPs. One query attending to S keys costs 2*dk*S (QK^T)
  plus 2*dv*S (PV). Softmax, masking and scaling are not counted.
- Full causal attention counts T^2/2 query-key pairs per head (the causal half of the T x T
  square), so its forward is 4*dk*T^2/2*HQ at dk == dv, times the batch.
- NSA counts, per query position t, the keys of each branch exactly as NSA_SPEC.md "Work per
  query head" defines them (NSAConfig.keys_per_query: N_cmp(t) + selected + window keys),
  summed over t, plus the block-importance scores (2 FLOPs per query head, compressed block and
  overlapping selection block) and the gated sum (5 FLOPs per output element).
- Backward = 2.5x the forward's matmul FLOPs: five matmuls (QK^T recomputed, dP = dO V^T,
  dV = P^T dO, dQ = dS K, dK = dS^T Q) against the forward's two.
- Bytes are the least traffic an implementation can have: every input read once and every
  output written once. For a decode step that is the cached keys/values the step must read
  (T tokens for full attention, keys_per_query(T-1) tokens per KV head for NSA), plus q, the
  gates and the output.
- Ceilings: the speedup at equal hardware efficiency. Forward/backward: full-attention matmul
  FLOPs over NSA attention-matmul FLOPs (compressed + selected + window keys). Decode: bytes over
  bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from nsa_bench.kernels.config import NSAConfig

BACKWARD_MATMUL_FACTOR = 2.5
GATE_FLOPS_PER_ELEMENT = 5  # g_cmp*o_cmp + g_slc*o_slc + g_win*o_win: three products, two sums

DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4, "fp64": 8}


@dataclass(frozen=True)
class Problem:
    """One attention problem of the benchmark (NSA_SPEC.md notation); dtype as 'bf16' etc."""

    seq_len: int
    batch: int
    q_heads: int
    kv_heads: int
    dk: int
    dv: int
    dtype: str = "bf16"

    @property
    def elem(self) -> int:
        return DTYPE_BYTES[self.dtype]


@dataclass(frozen=True)
class NSAKeyCounts:
    """Work of NSA's branches summed over the query positions 0..T-1, for one query head.

    cmp, slc, win: query-key pairs of the three branches; overlaps: (query, compressed block,
    overlapping selection block) triples of the importance scores; candidates: started selection
    blocks, the top-n candidates, summed over queries (per KV head).
    """

    cmp: int
    slc: int
    win: int
    overlaps: int
    candidates: int

    @property
    def keys(self) -> int:
        return self.cmp + self.slc + self.win


def parse_size(text: str) -> int:
    """A token count, the one rule of every command: a positive whole number of tokens, written as
    an integer ('65536') or a number times k (1024) or m (1024 * 1024), case-insensitive ('8k' = 8192,
    '64K', '1m'); a decimal is accepted when the count comes out whole ('1.5k' = 1536, '8.5k' = 8704,
    not '1.3k'). ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([km]?)\s*", text.lower())
    value = float(match.group(1)) * {"": 1, "k": 1024, "m": 1024**2}[match.group(2)] if match else 0.0
    if value < 1 or value != int(value):
        raise ValueError(f"bad size {text!r}: use a positive whole number of tokens, e.g. 4096, 8k, 1.5k, 1m "
                         "(k = 1024)")
    return int(value)


def _per_query_branch_keys(seq_len: int, config: NSAConfig):
    """Arrays over t = 0..T-1 of compressed, selected and window keys (NSA_SPEC.md)."""
    t = np.arange(seq_len, dtype=np.int64)
    n_cmp = np.where(t + 1 >= config.cmp_block, (t + 1 - config.cmp_block) // config.cmp_stride + 1, 0)
    started = t // config.slc_block + 1
    whole = config.slc_count * config.slc_block - (config.slc_block - 1 - t % config.slc_block)
    n_slc = np.where(started <= config.slc_count, t + 1, whole)
    n_win = np.minimum(config.window, t + 1)
    return n_cmp, n_slc, n_win, started


def _overlaps_per_cmp_block(n_blocks: int, config: NSAConfig) -> np.ndarray:
    """Number of selection blocks that compressed block i overlaps, for i < n_blocks."""
    i = np.arange(n_blocks, dtype=np.int64)
    first = i * config.cmp_stride // config.slc_block
    last = (i * config.cmp_stride + config.cmp_block - 1) // config.slc_block
    return last - first + 1


@lru_cache(maxsize=64)
def nsa_key_counts(seq_len: int, config: NSAConfig) -> NSAKeyCounts:
    """NSA's per-branch work over a causal sequence of seq_len tokens, per query head."""
    n_cmp, n_slc, n_win, started = _per_query_branch_keys(seq_len, config)
    cum_overlaps = np.concatenate([[0], np.cumsum(_overlaps_per_cmp_block(int(n_cmp.max(initial=0)), config))])
    return NSAKeyCounts(
        cmp=int(n_cmp.sum()),
        slc=int(n_slc.sum()),
        win=int(n_win.sum()),
        overlaps=int(cum_overlaps[n_cmp].sum()),
        candidates=int(started.sum()),
    )


def _matmul_flops(pairs: float, p: Problem, heads: int | None = None) -> float:
    return 2.0 * (p.dk + p.dv) * pairs * (p.q_heads if heads is None else heads) * p.batch


# ---- full causal attention -------------------------------------------------------------------

def full_attention_flops(p: Problem, mode: str) -> float:
    """FLOPs of full causal GQA attention: fwd, bwd (2.5x fwd) or one decode step over T keys."""
    if mode == "decode":
        return _matmul_flops(p.seq_len, p)
    fwd = _matmul_flops(p.seq_len * p.seq_len / 2, p)
    return fwd if mode == "fwd" else BACKWARD_MATMUL_FACTOR * fwd


def full_attention_bytes(p: Problem, mode: str) -> float:
    """Least bytes moved by full attention (see module docstring)."""
    q = p.batch * p.q_heads * p.dk
    o = p.batch * p.q_heads * p.dv
    kv = p.batch * p.kv_heads * (p.dk + p.dv)
    if mode == "decode":
        return (q + o + p.seq_len * kv) * p.elem
    io = p.seq_len * (q + o + kv)
    lse = 4 * p.seq_len * p.batch * p.q_heads
    if mode == "fwd":
        return io * p.elem + lse
    # read q, k, v, o, dO, lse; write dq, dk, dv
    return (p.seq_len * (2 * q + 2 * o + 2 * kv)) * p.elem + lse


# ---- NSA ---------------------------------------------------------------------------------------

NSA_STAGES = ("compress", "cmp_attn", "importance", "topk", "slc_attn", "win_attn", "gates")


def nsa_stage_flops(p: Problem, config: NSAConfig, stage: str) -> float:
    """Forward FLOPs of one NSA stage (NSA_STAGES); top-n does comparisons, counted as 0 FLOPs."""
    c = nsa_key_counts(p.seq_len, config)
    if stage == "compress":  # mean pooling: cmp_block additions per compressed element
        return float(config.num_cmp_blocks(p.seq_len) * p.kv_heads * p.batch * config.cmp_block * (p.dk + p.dv))
    if stage == "cmp_attn":
        return _matmul_flops(c.cmp, p)
    if stage == "importance":
        return 2.0 * c.overlaps * p.q_heads * p.batch
    if stage == "topk":
        return 0.0
    if stage == "slc_attn":
        return _matmul_flops(c.slc, p)
    if stage == "win_attn":
        return _matmul_flops(c.win, p)
    if stage == "gates":
        return float(GATE_FLOPS_PER_ELEMENT * p.seq_len * p.batch * p.q_heads * p.dv)
    raise ValueError(f"unknown NSA stage {stage!r}; known: {', '.join(NSA_STAGES)}")


def nsa_attention_matmul_flops(p: Problem, config: NSAConfig) -> float:
    """Forward matmul FLOPs of NSA's three attention branches (the ceiling's denominator)."""
    return _matmul_flops(nsa_key_counts(p.seq_len, config).keys, p)


def nsa_flops(p: Problem, config: NSAConfig, mode: str, *, with_compression: bool = True) -> float:
    """FLOPs of the whole NSA: fwd (every stage), bwd (2.5x the attention matmuls plus the
    elementwise stages once more; selection passes no gradient) or one decode step at position T-1."""
    if mode == "decode":
        t = p.seq_len - 1
        overlaps = _overlaps_per_cmp_block(config.num_cmp_blocks(t + 1), config).sum()
        return (_matmul_flops(config.keys_per_query(t), p) + 2.0 * overlaps * p.q_heads * p.batch
                + GATE_FLOPS_PER_ELEMENT * p.batch * p.q_heads * p.dv)
    stages = [s for s in NSA_STAGES if with_compression or s != "compress"]
    fwd = sum(nsa_stage_flops(p, config, s) for s in stages)
    if mode == "fwd":
        return fwd
    matmul = nsa_attention_matmul_flops(p, config)
    elementwise = fwd - matmul - nsa_stage_flops(p, config, "importance")
    return BACKWARD_MATMUL_FACTOR * matmul + elementwise


def nsa_decode_tokens(p: Problem, config: NSAConfig) -> int:
    """Cached tokens one decode step reads per KV head at context T: N_cmp + selected + window."""
    return config.keys_per_query(p.seq_len - 1)


def nsa_bytes(p: Problem, config: NSAConfig, mode: str) -> float:
    """Least bytes moved by NSA (see module docstring): for decode, the cache it must read."""
    q = p.batch * p.q_heads * p.dk
    o = p.batch * p.q_heads * p.dv
    gates = 3 * p.batch * p.q_heads
    kv = p.batch * p.kv_heads * (p.dk + p.dv)
    if mode == "decode":
        return (q + o + gates + nsa_decode_tokens(p, config) * kv) * p.elem
    cmp_kv = config.num_cmp_blocks(p.seq_len) * kv
    io = p.seq_len * (q + o + gates + kv) + 2 * cmp_kv  # compressed k/v written, then read
    if mode == "fwd":
        return io * p.elem
    # read q, k, v, k_cmp, v_cmp, gates, o, dO; write their gradients
    return (p.seq_len * (2 * q + 2 * o + 2 * gates + 2 * kv) + 2 * cmp_kv) * p.elem


# ---- ceilings ----------------------------------------------------------------------------------

def nsa_ceiling(p: Problem, config: NSAConfig, mode: str) -> float:
    """Speedup of NSA over full attention at equal efficiency: FLOP ratio (fwd, bwd), byte ratio (decode)."""
    if mode == "decode":
        return full_attention_bytes(p, mode) / nsa_bytes(p, config, mode)
    return full_attention_flops(p, "fwd") / nsa_attention_matmul_flops(p, config)
