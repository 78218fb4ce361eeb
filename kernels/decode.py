"""nsa_decode: one NSA decode step over an NSACache, in four Triton launches (triton_decode.py).

The step reads N_cmp + n*l' + w cached tokens per KV head and sequence (NSA_SPEC.md,
"Decoding with a KV cache"), split over enough programs to fill the GPU (flash-decoding):
the compressed tokens and the window in slices (one launch: the window needs no selection),
the selected blocks a few to a program, then a small merge. Sequence lengths are read on the
device and the launch sizes depend only on the cache's capacity, so a step is capturable in a
CUDA graph.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from .cache import NSACache
from .config import NSAConfig
from .launch_replay import Replay, current_stream, record, specialization_key
from .triton_common import cache_strides, dot_precision, new_output, next_pow2

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_CANDIDATES = 2048  # entries of the local top-n lists merged per KV head (bounds max_len)
CMP_TILE = 64  # compressed tokens per tile (raised to l'/d when that is larger)


@dataclass(frozen=True)
class DecodePlan:
    """Launch sizes of one decode step, fixed by the cache's capacity (see triton_decode.py)."""

    group: int
    n_sel: int  # selected blocks (config.slc_count)
    bn: int  # compressed tokens per tile
    tiles: int  # tiles per compressed-attention program
    p_cmp: int  # compressed-attention programs per KV head
    n_tiles_cap: int  # tiles over max_len
    bpt: int  # selection blocks starting in one tile
    nbt: int  # selection blocks one tile touches (bpt + spill into the next tile's first blocks)
    bb: int  # selection blocks per _decode_select_kernel program
    p_sel: int  # _decode_select_kernel programs per KV head
    wch: int  # window tokens per program
    p_win: int  # window programs per KV head
    sb: int = 2  # selected blocks per sparse-attention program
    cmp_warps: int = 4  # num_warps of the compressed-attention (+ window) kernel
    cmp_stages: int = 2  # its num_stages
    warps: int = 4  # num_warps of the selected-attention kernel
    stages: int = 2  # its num_stages

    @property
    def merge_cmp_in_select(self) -> bool:
        """Whether _decode_select_kernel merges the compressed partials (each program then takes at
        most 4 query heads; with fewer programs the loop would be a serial latency chain)."""
        return -(-self.group // self.p_sel) <= 4

    @property
    def slc_progs(self) -> int:
        return -(-self.n_sel // self.sb)

    @property
    def n_slots(self) -> int:
        return self.p_cmp + self.slc_progs + self.p_win


def _tile_sizes(config: NSAConfig, cmp_tile: int = CMP_TILE) -> tuple[int, int, int]:
    """(bn, bpt, nbt): compressed tokens per tile, selection blocks starting in a tile, and
    selection blocks a tile touches (bpt plus the spill into the next tile's first blocks)."""
    ratio = config.slc_block // config.cmp_stride
    if ratio & (ratio - 1) or ratio > 256:
        raise ValueError(f"nsa_decode needs slc_block / cmp_stride a power of two up to 256, got {config}")
    bn = max(cmp_tile, ratio)
    bpt = bn // ratio
    nbt = ((bn - 1) * config.cmp_stride + config.cmp_block - 1) // config.slc_block + 1
    if nbt - bpt > bpt:
        raise ValueError(f"nsa_decode needs cmp_block <= {bpt * config.slc_block} for {config}")
    return bn, bpt, nbt


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 132  # the interpreter: plan as for an H100


def decode_plan(cache: NSACache, q_heads: int, *, tiles: int | None = None, block_chunk: int | None = None,
                window_chunk: int = 128, cmp_tile: int = CMP_TILE, blocks_per_program: int = 2,
                cmp_warps: int = 4, cmp_stages: int | None = None, warps: int = 4, stages: int = 2) -> DecodePlan:
    """Launch sizes for a cache and a query-head count. tiles / block_chunk / window_chunk /
    cmp_tile / blocks_per_program / cmp_warps / cmp_stages / warps / stages override the defaults
    (tests use small ones to exercise the splits; benchmarks tune). cmp_stages defaults to 3
    where a compressed-attention program loops over 4 tiles or more, else 2 (H200, B=8, 64k:
    46.8 against 56.5 us a step; at 16k, 2 tiles a program, 33.3 against 32.2 us)."""
    c = cache.config
    bn, bpt, nbt = _tile_sizes(c, cmp_tile)
    bh = cache.batch * cache.kv_heads
    n_tiles_cap = max(1, -(-cache.max_cmp // bn))
    if tiles is None:  # the most tiles per program (up to 8) that still leaves a program per SM
        tiles = 1
        while tiles < 8 and bh * -(-n_tiles_cap // (2 * tiles)) >= _num_sms(cache.device):
            tiles *= 2
    p_cmp = -(-n_tiles_cap // tiles)
    if cmp_stages is None:
        cmp_stages = 3 if tiles >= 4 else 2
    n_blocks = c.num_slc_blocks(cache.max_len)
    n = c.slc_count
    bb = block_chunk or min(128, max(next_pow2(n_blocks), 16))
    bb = max(bb, next_pow2(n))
    p_sel = -(-n_blocks // bb)
    if p_sel * n > MAX_CANDIDATES:
        raise ValueError(f"nsa_decode supports caches of up to {MAX_CANDIDATES // n * bb * c.slc_block} tokens"
                         f" with {c}, got max_len={cache.max_len}")
    wch = min(next_pow2(c.window), window_chunk)
    return DecodePlan(q_heads // cache.kv_heads, n, bn, tiles, p_cmp, n_tiles_cap, bpt, nbt, bb, p_sel,
                      wch, -(-c.window // wch), max(1, min(blocks_per_program, n)), cmp_warps, cmp_stages,
                      warps, stages)


def _workspace(cache: NSACache, plan: DecodePlan) -> dict:
    ws = cache.workspaces.get(plan)
    if ws is None:
        bh, g, dev = cache.batch * cache.kv_heads, plan.group, cache.device
        f32 = torch.float32
        ws = {
            "o": new_output((bh, plan.n_slots, g, cache.dv), f32, dev),
            "o_cmp": new_output((bh, g, cache.dv), f32, dev),
            "m": new_output((bh, plan.n_slots, g), f32, dev),
            "l": new_output((bh, plan.n_slots, g), f32, dev),
            "imp": new_output((bh, plan.n_tiles_cap, g, plan.nbt), f32, dev),
            "imp_m": new_output((bh, plan.n_tiles_cap, g), f32, dev),
            "cand": new_output((bh, plan.p_sel, plan.n_sel), torch.int64, dev),
        }
        cache.workspaces[plan] = ws
    return ws


def _check_inputs(q, cache, g_cmp, g_slc, g_win, config, out=None):
    if not isinstance(cache, NSACache):
        raise ValueError(f"cache must be an NSACache, got {type(cache).__name__}")
    if config is not None and config != cache.config:
        raise ValueError(f"config {config} differs from the cache's {cache.config}")
    if not isinstance(q, torch.Tensor) or q.dim() != 4 or q.shape[0] != cache.batch or q.shape[1] != 1 \
            or q.shape[3] != cache.dk:
        got = tuple(q.shape) if isinstance(q, torch.Tensor) else type(q).__name__
        raise ValueError(f"q must have shape [B={cache.batch}, 1, HQ, dk={cache.dk}], got {got}")
    if q.shape[2] % cache.kv_heads:
        raise ValueError(f"query heads ({q.shape[2]}) must be a multiple of the cache's KV heads ({cache.kv_heads})")
    if q.dtype != cache.dtype or q.device != cache.device:
        raise ValueError(f"q must be {cache.dtype} on {cache.device} like the cache, got {q.dtype} on {q.device}")
    if q.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"nsa_decode supports float16, bfloat16 and float32, got {q.dtype}")
    if q.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(f"nsa_decode needs CUDA tensors (or TRITON_INTERPRET=1 on CPU), got {q.device}")
    for name, g in (("g_cmp", g_cmp), ("g_slc", g_slc), ("g_win", g_win)):
        if not isinstance(g, torch.Tensor) or tuple(g.shape) != (cache.batch, 1, q.shape[2]) or g.device != q.device:
            raise ValueError(f"{name} must be a tensor [B, 1, HQ] = {(cache.batch, 1, q.shape[2])} on {q.device}")
    expect = (cache.batch, 1, q.shape[2], cache.dv)
    if out is not None and not (isinstance(out, torch.Tensor) and tuple(out.shape) == expect and out.device == q.device):
        raise ValueError(f"out must be a tensor {expect} [B, 1, HQ, dv] on {q.device}")


@dataclass
class _RecordedStep:
    """The four launches of a decode step, kept for replay while `key` holds (launch_replay.py)."""

    key: tuple
    cmp_win: Replay  # swaps Q
    select: Replay
    slc: Replay  # swaps Q
    combine: Replay  # swaps GC, GS, GW, O


def _step_key(q, gates, out, scale, plan) -> tuple:
    """What decides the launches of a step besides the cache (a non-tensor matches no recording)."""
    tensors = (q, *gates) if out is None else (q, *gates, out)
    return scale, plan, out is None, specialization_key(*tensors)


def _normalize(q, g_cmp, g_slc, g_win):
    """The layouts the kernels take: q with unit stride over dk, the three gates with equal strides."""
    if q.stride(3) != 1:
        q = q.contiguous()
    if not g_cmp.stride() == g_slc.stride() == g_win.stride():
        g_cmp, g_slc, g_win = (g.contiguous() for g in (g_cmp, g_slc, g_win))
    return q, g_cmp, g_slc, g_win


def nsa_decode(q, cache: NSACache, g_cmp, g_slc, g_win, config: NSAConfig | None = None, *,
               scale: float | None = None, plan: DecodePlan | None = None, out=None,
               return_blocks: bool = False):
    """NSA output [B, 1, HQ, dv] of one new query token per sequence, q [B, 1, HQ, dk], whose own
    key/value is already in the cache (query position = length - 1); gates [B, 1, HQ].

    Equals the last row of nsa_attention_ref over each sequence's cached tokens. No host
    synchronisation: capturable in a CUDA graph. plan: launch sizes (default decode_plan(...)).
    out: tensor to write into. return_blocks: also return the selected blocks [B, 1, H, n]
    (ascending, -1 padded), gathered with torch ops from the kernels' scratch (for checks).
    A step whose inputs have the layout of the cache's previous step replays that step's
    launches (launch_replay.py) instead of going through Triton's dispatch again.
    """
    key = _step_key(q, (g_cmp, g_slc, g_win), out, scale, plan)
    recorded = cache.workspaces.get("step") if isinstance(cache, NSACache) else None
    if recorded is not None and not return_blocks and (config is None or config is cache.config
                                                       or config == cache.config):
        if key == recorded.key:
            q, g_cmp, g_slc, g_win = _normalize(q, g_cmp, g_slc, g_win)
            if out is None:
                out = new_output((q.shape[0], 1, q.shape[2], cache.dv), q.dtype, q.device)
            stream = current_stream(q.device)
            recorded.cmp_win(stream, q)
            recorded.select(stream)
            recorded.slc(stream, q)
            recorded.combine(stream, g_cmp, g_slc, g_win, out)
            return out
    _check_inputs(q, cache, g_cmp, g_slc, g_win, config, out)
    q_heads = q.shape[2]
    if plan is None:  # the default plan, computed once per cache and head count
        plan = cache.workspaces.get(("plan", q_heads))
        if plan is None:
            plan = cache.workspaces[("plan", q_heads)] = decode_plan(cache, q_heads)
    q, g_cmp, g_slc, g_win = _normalize(q, g_cmp, g_slc, g_win)
    if out is None:
        out = new_output((q.shape[0], 1, q_heads, cache.dv), q.dtype, q.device)
    launches = _launch_step(q, cache, g_cmp, g_slc, g_win, out, scale, plan)
    if None not in launches:
        cache.workspaces["step"] = _RecordedStep(key, *launches)
    if return_blocks:
        return out, _selected_blocks(_workspace(cache, plan), plan, q.shape[0], cache.kv_heads)
    return out


def _launch_step(q, cache: NSACache, g_cmp, g_slc, g_win, out, scale, plan: DecodePlan) -> list:
    """Launch the step's four kernels through Triton; their Replays (None under the interpreter)."""
    from . import triton_decode as td  # noqa: PLC0415 (Triton import kept lazy)

    batch, _, q_heads, dk = q.shape
    h, dv = cache.kv_heads, cache.dv
    ws = _workspace(cache, plan)
    c = cache.config
    g, gp = plan.group, max(16, next_pow2(plan.group))
    bdk, bdv = max(16, next_pow2(dk)), max(16, next_pow2(dv))
    prec = dot_precision(q.dtype)
    qk_scale = (1.0 / math.sqrt(dk) if scale is None else scale) * td.LOG2E
    bh = batch * h
    dims = dict(H=h, G=g, GP=gp)
    heads = dict(DK=dk, DV=dv, BDK=bdk, BDV=bdv)
    win = dict(WINDOW=c.window, WCH=plan.wch, BW=min(64, plan.wch))
    q_strides = dict(s_q_b=q.stride(0), s_q_h=q.stride(2))
    cmp_win = record(td._decode_cmp_win_kernel, (bh, plan.p_cmp + plan.p_win), dict(
        Q=q, KC=cache.k_cmp, VC=cache.v_cmp, KW=cache.k_win, VW=cache.v_win, LEN=cache.lengths,
        WO=ws["o"], WM=ws["m"], WL=ws["l"], WIMP=ws["imp"], WIMPM=ws["imp_m"], **q_strides,
        **cache_strides("kc", cache.k_cmp), **cache_strides("vc", cache.v_cmp),
        **cache_strides("kw", cache.k_win), **cache_strides("vw", cache.v_win), qk_scale=qk_scale,
        **dims, **heads, **win, CMP_BLOCK=c.cmp_block, CMP_STRIDE=c.cmp_stride, SLC_BLOCK=c.slc_block,
        N_SLOTS=plan.n_slots, P_CMP=plan.p_cmp, SLC_PROGS=plan.slc_progs, TILES=plan.tiles, BN=plan.bn,
        N_TILES_CAP=plan.n_tiles_cap, BPT=plan.bpt, NBT=plan.nbt, BNBT=max(16, next_pow2(plan.nbt)), PREC=prec,
    ), ("Q",), num_warps=plan.cmp_warps, num_stages=plan.cmp_stages)
    select = record(td._decode_select_kernel, (bh, plan.p_sel), dict(
        LEN=cache.lengths, WO=ws["o"], WM=ws["m"], WL=ws["l"], WIMP=ws["imp"], WIMPM=ws["imp_m"], CAND=ws["cand"],
        OC=ws["o_cmp"],
        **dims, DV=dv, BDV=bdv, CMP_BLOCK=c.cmp_block, CMP_STRIDE=c.cmp_stride, SLC_BLOCK=c.slc_block,
        N_SLOTS=plan.n_slots, P_CMP=plan.p_cmp, BP_CMP=next_pow2(plan.p_cmp),
        BN=plan.bn, N_TILES_CAP=plan.n_tiles_cap, BPT=plan.bpt, NBT=plan.nbt,
        BB=plan.bb, P_SEL=plan.p_sel, N_SEL=plan.n_sel, KP=next_pow2(plan.n_sel),
        MERGE_CMP=plan.merge_cmp_in_select,
    ), (), num_warps=4)
    n_cand = plan.p_sel * plan.n_sel
    slc = record(td._decode_slc_kernel, (bh, plan.slc_progs), dict(
        Q=q, KS=cache.k_slc, VS=cache.v_slc, LEN=cache.lengths, CAND=ws["cand"], WO=ws["o"], WM=ws["m"], WL=ws["l"],
        **q_strides, **cache_strides("k", cache.k_slc), **cache_strides("v", cache.v_slc), qk_scale=qk_scale,
        **dims, **heads, SLC_BLOCK=c.slc_block,
        N_SLOTS=plan.n_slots, P_CMP=plan.p_cmp, SB=plan.sb, N_SEL=plan.n_sel,
        KP=next_pow2(plan.n_sel), N_CAND=n_cand, BCAND=next_pow2(n_cand),
        BS=min(64, max(16, next_pow2(c.slc_block))), PREC=prec,
    ), ("Q",), num_warps=plan.warps, num_stages=plan.stages)
    combine = record(td._decode_combine_kernel, (batch * q_heads,), dict(
        OC=ws["o_cmp"], WO=ws["o"], WM=ws["m"], WL=ws["l"], GC=g_cmp, GS=g_slc, GW=g_win, O=out,
        s_g_b=g_cmp.stride(0), s_g_h=g_cmp.stride(2), s_o_b=out.stride(0), s_o_h=out.stride(2),
        HQ=q_heads, H=h, G=g, DV=dv, BDV=bdv,
        N_SLOTS=plan.n_slots, P_CMP=plan.p_cmp, SLC_PROGS=plan.slc_progs, MERGE_CMP=plan.merge_cmp_in_select,
        BSLOTS=next_pow2(plan.n_slots - (plan.p_cmp if plan.merge_cmp_in_select else 0)),
    ), ("GC", "GS", "GW", "O"), num_warps=4)
    return [cmp_win, select, slc, combine]


def _selected_blocks(ws: dict, plan: DecodePlan, batch: int, kv_heads: int) -> torch.Tensor:
    """The blocks _decode_slc_kernel attends to, [B, 1, H, n] ascending with -1 padding (decoded from
    the int64 keys of triton_decode._rank_key: negative = not started)."""
    top = ws["cand"].view(batch * kv_heads, -1).topk(plan.n_sel, dim=-1).values
    blocks = torch.where(top >= 0, 2147483647 - (top & 0xFFFFFFFF), torch.iinfo(torch.int64).max)
    blocks = blocks.sort(dim=-1).values
    blocks = torch.where(blocks == torch.iinfo(torch.int64).max, -1, blocks)
    return blocks.view(batch, 1, kv_heads, plan.n_sel)


def make_decode_problem(batch: int, seq_len: int, q_heads: int, kv_heads: int, dk: int, dv: int,
                        config: NSAConfig, dtype: torch.dtype, device, *, lengths=None, max_len=None,
                        seed: int = 0):
    """A ready decode step for benchmarks: (q [B,1,HQ,dk], cache, (g_cmp, g_slc, g_win)).

    The cache holds random keys/values (mean-pool compression) for `lengths` tokens per
    sequence (default: all seq_len), capacity max_len (default seq_len); gates are sigmoids
    of normal draws. Call nsa_decode(q, cache, *gates).
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    cache = NSACache(batch, max_len or seq_len, kv_heads, dk, dv, config, dtype=dtype, device=device)
    k = torch.randn(batch, seq_len, kv_heads, dk, generator=gen, device=device, dtype=dtype)
    v = torch.randn(batch, seq_len, kv_heads, dv, generator=gen, device=device, dtype=dtype)
    cache.prefill(k, v, lengths)
    del k, v
    q = torch.randn(batch, 1, q_heads, dk, generator=gen, device=device, dtype=dtype)
    gates = tuple(torch.sigmoid(torch.randn(batch, 1, q_heads, generator=gen, device=device)).to(dtype)
                  for _ in range(3))
    return q, cache, gates
