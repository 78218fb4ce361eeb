"""Banded attention in Triton: each query token sees one contiguous range of key indices.

Both the compression branch and the sliding window are of this form, so they share these
kernels. For query token t the visible key indices are

    hi(t) = (t - OFF) // STRIDE   (none when t < OFF)
    lo(t) = hi(t) - WIN + 1       (0 when WIN == 0, i.e. no lower limit)

compressed keys: OFF = l - 1, STRIDE = d, WIN = 0 (block i is usable once it has ended);
sliding window:  OFF = 0, STRIDE = 1, WIN = w.

Query rows are packed group-centric: a program holds BT consecutive tokens times the G query
heads of one KV head (row r = token * G + head), so each key tile it loads serves BT * G rows.
Softmax runs in base 2; the saved log-sum-exp `lse` is base 2 and +inf for rows with no key.
Tensors are token-major: q [B,T,HQ,dk] and the branch's output gradient contiguous;
keys/values [B,NK,H,dk|dv] through their token and head strides, so per-branch slices are read
in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .triton_common import dot_precision, kv_strides, new_output, next_pow2
from .triton_gates import store_gated_sum
from .triton_tiles import (
    add_key_grads, dkv_update, dq_update, key_grad_tile, kv_offsets, load_grad_rows, load_rows, load_tile,
    softmax_result, softmax_state, softmax_update, store_dq, store_rows,
)

LOG2E = 1.4426950408889634


@dataclass(frozen=True)
class Band:
    """The visible key range of a branch: see the module docstring."""

    name: str  # "cmp" or "win": picks the launch settings
    off: int
    stride: int
    win: int  # 0: no lower limit

    @classmethod
    def compressed(cls, config) -> "Band":
        return cls("cmp", config.cmp_block - 1, config.cmp_stride, 0)

    @classmethod
    def window(cls, config) -> "Band":
        return cls("win", 0, 1, config.window)


@triton.jit
def _band_hi(t, OFF: tl.constexpr, STRIDE: tl.constexpr):
    """Last visible key index for token(s) t, -1 when none."""
    return tl.where(t >= OFF, (t - OFF) // STRIDE, -1)


@triton.jit
def _band_lo(hi, WIN: tl.constexpr):
    """First visible key index given the last one."""
    if WIN > 0:
        lo = hi - WIN + 1
    else:
        lo = hi * 0
    return lo


@triton.jit
def _band_query_rows(T, HQ: tl.constexpr, H: tl.constexpr, G: tl.constexpr, BT: tl.constexpr):
    """This program's batch b, KV head h, first token t0, and its BT * G rows: token t [BM],
    row mask [BM] and flat row index into [B*T*HQ] [BM]."""
    BM: tl.constexpr = BT * G
    pid_t = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    t0 = pid_t * BT
    r = tl.arange(0, BM)
    t = t0 + r // G  # [BM]
    rmask = t < T  # [BM]
    row = (b * T + t).to(tl.int64) * HQ + h * G + r % G  # [BM]
    return b, h, t0, t, rmask, row


@triton.jit
def _band_keys(t, t0, T, BT: tl.constexpr, BN: tl.constexpr, OFF: tl.constexpr, STRIDE: tl.constexpr,
               WIN: tl.constexpr):
    """Each row's visible keys lo..hi [BM], and the key range start..end (exclusive) the
    program's tiles of BN keys walk."""
    hi = _band_hi(t, OFF, STRIDE)  # [BM]
    lo = _band_lo(hi, WIN)  # [BM]
    t_last = tl.minimum(t0 + BT, T) - 1
    hi_max = _band_hi(t_last, OFF, STRIDE)
    lo_min = tl.maximum(_band_lo(_band_hi(t0, OFF, STRIDE), WIN), 0)
    start = (lo_min // BN) * BN
    return hi, lo, start, hi_max + 1


@triton.jit
def _band_fwd_kernel(
    Q, K, V, O, LSE, OC, OS, GC, GS, GW, OUT, T, NK, qk_scale, s_g_t,
    s_k_t: tl.constexpr, s_k_h: tl.constexpr, s_v_t: tl.constexpr, s_v_h: tl.constexpr,
    HQ: tl.constexpr, H: tl.constexpr, G: tl.constexpr,
    DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr,
    BT: tl.constexpr, BN: tl.constexpr, OFF: tl.constexpr, STRIDE: tl.constexpr, WIN: tl.constexpr, PREC: tl.constexpr,
):
    """O and LSE of BT tokens x the G query heads of one KV head (each skipped if None); with OUT,
    also the gated sum OUT = GC * OC + GS * OS + GW * O of those rows (gates token-major, token
    stride s_g_t). Grid (cdiv(T, BT), B * H)."""
    BM: tl.constexpr = BT * G
    b, h, t0, t, rmask, row = _band_query_rows(T, HQ, H, G, BT)
    offk = tl.arange(0, BDK)
    offv = tl.arange(0, BDV)
    q = load_rows(Q, row, rmask, offk, DK)  # [BM, BDK]
    hi, lo, start, end = _band_keys(t, t0, T, BT, BN, OFF, STRIDE, WIN)
    m_i, l_i, acc = softmax_state(BM, BDV)  # [BM], [BM], [BM, BDV]
    for n0 in range(start, end, BN):
        kk = n0 + tl.arange(0, BN)  # [BN]
        kmask = kk < NK  # [BN]
        k = load_tile(K, kv_offsets(b, kk, NK, h, s_k_t, s_k_h), kmask, offk, DK)  # [BN, BDK]
        s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale  # [BM, BN]
        vis = (kk[None, :] <= hi[:, None]) & (kk[None, :] >= lo[:, None])  # [BM, BN]
        voff = kv_offsets(b, kk, NK, h, s_v_t, s_v_h)  # [BN]
        m_i, l_i, acc = softmax_update(s, vis, V, voff, kmask, offv, m_i, l_i, acc, DV, PREC)
    o, lse = softmax_result(m_i, l_i, acc)  # [BM, BDV], [BM]
    if O is not None:
        store_rows(O, row, rmask, offv, o, DV)
        tl.store(LSE + row, lse, mask=rmask)
    if OUT is not None:
        store_gated_sum(OUT, OC, OS, GC, GS, GW, row, rmask, offv, o, s_g_t, HQ, DV)


@triton.jit
def _band_dq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ_IN, DQ_OUT, T, NK, qk_scale, sm_scale,
    s_k_t: tl.constexpr, s_k_h: tl.constexpr, s_v_t: tl.constexpr, s_v_h: tl.constexpr,
    HQ: tl.constexpr, H: tl.constexpr, G: tl.constexpr,
    DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr,
    BT: tl.constexpr, BN: tl.constexpr, OFF: tl.constexpr, STRIDE: tl.constexpr, WIN: tl.constexpr, PREC: tl.constexpr,
):
    """DQ_OUT = DQ_IN (None: zero) + this branch's dq of BT tokens x the G query heads of one
    KV head; DO is the branch's output gradient (gate * dO). Grid (cdiv(T, BT), B * H)."""
    BM: tl.constexpr = BT * G
    b, h, t0, t, rmask, row = _band_query_rows(T, HQ, H, G, BT)
    offk = tl.arange(0, BDK)
    offv = tl.arange(0, BDV)
    q, do, lse, delta = load_grad_rows(Q, DO, LSE, DELTA, row, rmask, offk, offv, DK, DV)
    hi, lo, start, end = _band_keys(t, t0, T, BT, BN, OFF, STRIDE, WIN)
    dq = tl.zeros([BM, BDK], tl.float32)  # [BM, BDK]
    for n0 in range(start, end, BN):
        kk = n0 + tl.arange(0, BN)  # [BN]
        kmask = kk < NK  # [BN]
        k = load_tile(K, kv_offsets(b, kk, NK, h, s_k_t, s_k_h), kmask, offk, DK)  # [BN, BDK]
        v = load_tile(V, kv_offsets(b, kk, NK, h, s_v_t, s_v_h), kmask, offv, DV)  # [BN, BDV]
        s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale  # [BM, BN]
        vis = (kk[None, :] <= hi[:, None]) & (kk[None, :] >= lo[:, None])  # [BM, BN]
        dq = dq_update(s, vis, k, v, do, lse, delta, dq, PREC)
    store_dq(DQ_IN, DQ_OUT, row, rmask, offk, dq, sm_scale, DK)


@triton.jit
def _band_dkv_kernel(
    Q, K, V, DO, LSE, DELTA, DK_ACC, DV_ACC, T, NK, SEG, qk_scale, sm_scale,
    s_k_t: tl.constexpr, s_k_h: tl.constexpr, s_v_t: tl.constexpr, s_v_h: tl.constexpr,
    HQ: tl.constexpr, H: tl.constexpr, G: tl.constexpr,
    DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr,
    BT: tl.constexpr, BN: tl.constexpr, OFF: tl.constexpr, STRIDE: tl.constexpr, WIN: tl.constexpr, PREC: tl.constexpr,
):
    """DK_ACC/DV_ACC (fp32) += this branch's dk/dv of one tile of BN keys, from one segment of
    SEG query tokens; segments of one tile meet through fp32 atomic adds.
    Grid (cdiv(NK, BN), B * H, cdiv(T, SEG))."""
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    i0 = pid_n * BN
    t_start = i0 * STRIDE + OFF + tl.program_id(2) * SEG
    if WIN > 0:
        t_end = tl.minimum(T, (i0 + BN - 1 + WIN) * STRIDE + OFF)
    else:
        t_end = T
    t_end = tl.minimum(t_end, t_start + SEG)
    if t_start < t_end:  # the segment sees this tile's keys
        BM: tl.constexpr = BT * G
        kk = i0 + tl.arange(0, BN)  # [BN]
        krow, kmask, offk, offv, k, v, dk, dv = key_grad_tile(K, V, b, h, kk, NK, s_k_t, s_k_h, s_v_t, s_v_h,
                                                              H, BN, DK, DV, BDK, BDV)
        r = tl.arange(0, BM)
        for t0 in range(t_start, t_end, BT):
            t = t0 + r // G  # [BM]
            rmask = t < T  # [BM]
            row = (b * T + t).to(tl.int64) * HQ + h * G + r % G  # [BM]
            q, do, lse, delta = load_grad_rows(Q, DO, LSE, DELTA, row, rmask, offk, offv, DK, DV)
            hi = _band_hi(t, OFF, STRIDE)  # [BM]
            lo = _band_lo(hi, WIN)  # [BM]
            st = tl.dot(k, tl.trans(q), input_precision=PREC) * qk_scale  # [BN, BM]
            vis = (kk[:, None] <= hi[None, :]) & (kk[:, None] >= lo[None, :]) & rmask[None, :]  # [BN, BM]
            dk, dv = dkv_update(st, vis, v, q, do, lse, delta, dk, dv, PREC)
        add_key_grads(DK_ACC, DV_ACC, krow, kmask, offk, offv, dk, dv, sm_scale, DK, DV)


# Launch settings per branch ("cmp"/"win") and kernel: query rows per program (tokens * G),
# keys per tile, warps, pipeline stages, and for dkv the query tokens per program (segment),
# halved down to min_seg while the grid has fewer than min_programs programs (at short lengths
# the compressed branch has few key tiles, and half its segments are empty: causal).
# Chosen on the H200 by scripts/gpu_check_kernels.py --tune (B=1, HQ=64, H=4, d=128, T=64k;
# results/tune_h200.log, and for the dk/dv kernels results/tune_h200_dkv.log).
LAUNCH = {
    "cmp_fwd": {"rows": 64, "keys": 64, "warps": 4, "stages": 3},
    "win_fwd": {"rows": 64, "keys": 64, "warps": 4, "stages": 3},
    "cmp_dq": {"rows": 64, "keys": 64, "warps": 4, "stages": 2},
    "win_dq": {"rows": 64, "keys": 64, "warps": 4, "stages": 2},
    "cmp_dkv": {"rows": 64, "keys": 128, "warps": 8, "stages": 3, "seg": 2048, "min_programs": 1024, "min_seg": 256},
    # head dims above 128: the tiles above need more shared memory than sm_90 has (dk=192: 246784
    # bytes > 232448), so these take the settings tuned before (64 keys, 4 warps, 2 stages)
    "cmp_dkv_wide": {"rows": 64, "keys": 64, "warps": 4, "stages": 2,
                     "seg": 2048, "min_programs": 1024, "min_seg": 256},
    "win_dkv": {"rows": 64, "keys": 64, "warps": 4, "stages": 2, "seg": 1 << 30},
}


def _launch_args(q, k, v, band: Band, kind: str):
    """(launch settings, tokens per program BT, the kernels' shared constexpr arguments)."""
    hq, dk = q.shape[2], q.shape[3]
    h, dv = k.shape[2], v.shape[3]
    key = f"{band.name}_{kind}"
    wide = f"{key}_wide" if max(next_pow2(dk), next_pow2(dv)) > 128 else key
    cfg = LAUNCH.get(wide, LAUNCH[key])
    bt = max(1, cfg["rows"] // (hq // h))  # tokens * G = rows, at least one token
    consts = dict(HQ=hq, H=h, G=hq // h, DK=dk, DV=dv, BDK=next_pow2(dk), BDV=next_pow2(dv), BT=bt,
                  BN=cfg["keys"], OFF=band.off, STRIDE=band.stride, WIN=band.win, PREC=dot_precision(q.dtype),
                  num_warps=cfg["warps"], num_stages=cfg["stages"])
    return cfg, bt, consts


def band_attn_fwd(q, k, v, band: Band, scale: float):
    """Output [B,T,HQ,dv] (dtype of q) and base-2 lse [B,T,HQ] fp32 of banded attention."""
    o, lse = branch_outputs(q, v)
    _band_fwd(q, k, v, band, scale, O=o, LSE=lse)
    return o, lse


def band_attn_fwd_gated(q, k, v, band: Band, scale: float, o_cmp, o_slc, g_cmp, g_slc, g_win, keep: bool):
    """This band's attention (the window's) and, in its epilogue, the gated sum of the three
    branches: (out [B,T,HQ,dv], this branch's output and lse, or None, None unless keep). The
    gates are token-major with equal strides (parallel.py's _Prepared sees to it)."""
    o, lse = branch_outputs(q, v) if keep else (None, None)
    out = new_output((*q.shape[:3], v.shape[3]), q.dtype, q.device)
    _band_fwd(q, k, v, band, scale, O=o, LSE=lse, OC=o_cmp, OS=o_slc, GC=g_cmp, GS=g_slc, GW=g_win, OUT=out,
              s_g_t=g_cmp.stride(1))
    return out, o, lse


def branch_outputs(q, v):
    """Empty output [B,T,HQ,dv] (dtype of q) and lse [B,T,HQ] fp32 of a branch."""
    return (new_output((*q.shape[:3], v.shape[3]), q.dtype, q.device),
            new_output(q.shape[:3], torch.float32, q.device))


def _band_fwd(q, k, v, band: Band, scale: float, **outputs):
    """Launch _band_fwd_kernel with these of its output arguments (the others None)."""
    bsz, seq = q.shape[:2]
    nk, h = k.shape[1], k.shape[2]
    _, bt, consts = _launch_args(q, k, v, band, "fwd")
    args = {**dict(O=None, LSE=None, OC=None, OS=None, GC=None, GS=None, GW=None, OUT=None, s_g_t=0), **outputs}
    _band_fwd_kernel[(triton.cdiv(seq, bt), bsz * h)](
        Q=q, K=k, V=v, T=seq, NK=nk, qk_scale=scale * LOG2E, **args, **kv_strides(k, v), **consts,
    )


def band_attn_bwd_dq(q, k, v, do, lse, delta, band: Band, scale: float, dq_out, dq_in=None):
    """dq_out = dq_in + this branch's dq (dq_in None: the branch's dq alone; it may be dq_out;
    dq_out fp32 or q's dtype). do is the branch's output gradient (gate * dO of the gated sum,
    contiguous); delta is rowsum(do * o_branch)."""
    bsz, seq = q.shape[:2]
    _, bt, consts = _launch_args(q, k, v, band, "dq")
    _band_dq_kernel[(triton.cdiv(seq, bt), bsz * k.shape[2])](
        Q=q, K=k, V=v, DO=do, LSE=lse, DELTA=delta, DQ_IN=dq_in, DQ_OUT=dq_out, T=seq, NK=k.shape[1],
        qk_scale=scale * LOG2E, sm_scale=scale, **kv_strides(k, v), **consts,
    )


def band_attn_bwd_dkv(q, k, v, do, lse, delta, band: Band, scale: float, dk_acc, dv_acc):
    """dk_acc, dv_acc (fp32) += this branch's dk, dv (same arguments as band_attn_bwd_dq)."""
    bsz, seq = q.shape[:2]
    nk = k.shape[1]
    if nk == 0:
        return
    cfg, bt, consts = _launch_args(q, k, v, band, "dkv")
    tiles, heads = triton.cdiv(nk, cfg["keys"]), bsz * k.shape[2]
    seg = min(cfg["seg"], seq)
    while seg // 2 >= cfg.get("min_seg", seq) and tiles * heads * triton.cdiv(seq, seg) < cfg.get("min_programs", 0):
        seg //= 2
    seg = max(bt, seg // bt * bt)
    _band_dkv_kernel[(tiles, heads, triton.cdiv(seq, seg))](
        Q=q, K=k, V=v, DO=do, LSE=lse, DELTA=delta, DK_ACC=dk_acc, DV_ACC=dv_acc, T=seq, NK=nk,
        qk_scale=scale * LOG2E, sm_scale=scale, SEG=seg, **kv_strides(k, v), **consts,
    )
