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
Tensors are token-major and contiguous: q [B,T,HQ,dk], keys/values [B,NK,H,dk|dv].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .triton_common import dot_precision, new_output, next_pow2

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
def _band_fwd_kernel(
    Q, K, V, O, LSE, T, NK, qk_scale,
    HQ: tl.constexpr, H: tl.constexpr, G: tl.constexpr,
    DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr,
    BT: tl.constexpr, BN: tl.constexpr,
    OFF: tl.constexpr, STRIDE: tl.constexpr, WIN: tl.constexpr, PREC: tl.constexpr,
):
    BM: tl.constexpr = BT * G
    pid_t = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    t0 = pid_t * BT
    r = tl.arange(0, BM)
    t = t0 + r // G
    rmask = t < T
    row = (b * T + t).to(tl.int64) * HQ + h * G + r % G
    offk = tl.arange(0, BDK)
    offv = tl.arange(0, BDV)
    q = tl.load(Q + row[:, None] * DK + offk[None, :], mask=rmask[:, None] & (offk[None, :] < DK), other=0.0)
    hi = _band_hi(t, OFF, STRIDE)
    lo = _band_lo(hi, WIN)
    t_last = tl.minimum(t0 + BT, T) - 1
    hi_max = _band_hi(t_last, OFF, STRIDE)
    lo_min = tl.maximum(_band_lo(_band_hi(t0, OFF, STRIDE), WIN), 0)
    start = (lo_min // BN) * BN

    m_i = tl.full([BM], float("-inf"), tl.float32)
    l_i = tl.zeros([BM], tl.float32)
    acc = tl.zeros([BM, BDV], tl.float32)
    for n0 in range(start, hi_max + 1, BN):
        kk = n0 + tl.arange(0, BN)
        krow = (b * NK + kk).to(tl.int64) * H + h
        kmask = kk < NK
        k = tl.load(K + krow[:, None] * DK + offk[None, :], mask=kmask[:, None] & (offk[None, :] < DK), other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale
        vis = (kk[None, :] <= hi[:, None]) & (kk[None, :] >= lo[:, None])
        s = tl.where(vis, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(V + krow[:, None] * DV + offv[None, :], mask=kmask[:, None] & (offv[None, :] < DV), other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)
        m_i = m_new
    has = l_i > 0
    o = acc / tl.where(has, l_i, 1.0)[:, None]
    lse = tl.where(has, m_i + tl.log2(tl.where(has, l_i, 1.0)), float("inf"))
    tl.store(O + row[:, None] * DV + offv[None, :], o.to(O.dtype.element_ty), mask=rmask[:, None] & (offv[None, :] < DV))
    tl.store(LSE + row, lse, mask=rmask)


@triton.jit
def _band_dq_kernel(
    Q, K, V, DO, GATE, LSE, DELTA, DQ, T, NK, qk_scale, sm_scale,
    HQ: tl.constexpr, H: tl.constexpr, G: tl.constexpr,
    DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr,
    BT: tl.constexpr, BN: tl.constexpr,
    OFF: tl.constexpr, STRIDE: tl.constexpr, WIN: tl.constexpr, PREC: tl.constexpr,
):
    """DQ (fp32, accumulated in place) += this branch's dq; dO of the branch is gate * DO."""
    BM: tl.constexpr = BT * G
    pid_t = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    t0 = pid_t * BT
    r = tl.arange(0, BM)
    t = t0 + r // G
    rmask = t < T
    row = (b * T + t).to(tl.int64) * HQ + h * G + r % G
    offk = tl.arange(0, BDK)
    offv = tl.arange(0, BDV)
    qmask = rmask[:, None] & (offk[None, :] < DK)
    vmask = rmask[:, None] & (offv[None, :] < DV)
    q = tl.load(Q + row[:, None] * DK + offk[None, :], mask=qmask, other=0.0)
    gate = tl.load(GATE + row, mask=rmask, other=0.0).to(tl.float32)
    do = tl.load(DO + row[:, None] * DV + offv[None, :], mask=vmask, other=0.0).to(tl.float32)
    do = (do * gate[:, None]).to(q.dtype)
    lse = tl.load(LSE + row, mask=rmask, other=float("inf"))
    delta = tl.load(DELTA + row, mask=rmask, other=0.0)
    hi = _band_hi(t, OFF, STRIDE)
    lo = _band_lo(hi, WIN)
    t_last = tl.minimum(t0 + BT, T) - 1
    hi_max = _band_hi(t_last, OFF, STRIDE)
    lo_min = tl.maximum(_band_lo(_band_hi(t0, OFF, STRIDE), WIN), 0)
    start = (lo_min // BN) * BN
    dq = tl.zeros([BM, BDK], tl.float32)
    for n0 in range(start, hi_max + 1, BN):
        kk = n0 + tl.arange(0, BN)
        krow = (b * NK + kk).to(tl.int64) * H + h
        kmask = kk < NK
        k = tl.load(K + krow[:, None] * DK + offk[None, :], mask=kmask[:, None] & (offk[None, :] < DK), other=0.0)
        v = tl.load(V + krow[:, None] * DV + offv[None, :], mask=kmask[:, None] & (offv[None, :] < DV), other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale
        vis = (kk[None, :] <= hi[:, None]) & (kk[None, :] >= lo[:, None])
        p = tl.where(vis, tl.exp2(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PREC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
    ptrs = DQ + row[:, None] * DK + offk[None, :]
    tl.store(ptrs, tl.load(ptrs, mask=qmask, other=0.0) + dq * sm_scale, mask=qmask)


@triton.jit
def _band_dkv_kernel(
    Q, K, V, DO, GATE, LSE, DELTA, DK_ACC, DV_ACC, T, NK, qk_scale, sm_scale,
    HQ: tl.constexpr, H: tl.constexpr, G: tl.constexpr,
    DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr,
    BT: tl.constexpr, BN: tl.constexpr,
    OFF: tl.constexpr, STRIDE: tl.constexpr, WIN: tl.constexpr, PREC: tl.constexpr, SEG,
):
    """DK_ACC/DV_ACC (fp32) += this branch's dk/dv for one key tile, from one segment of SEG
    query tokens (program_id 2); segments of one tile meet through fp32 atomic adds."""
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
    if t_start < t_end:
        _band_dkv_segment(Q, K, V, DO, GATE, LSE, DELTA, DK_ACC, DV_ACC, T, NK, qk_scale, sm_scale, b, h, i0,
                          t_start, t_end, HQ, H, G, DK, DV, BDK, BDV, BT, BN, OFF, STRIDE, WIN, PREC)


@triton.jit
def _band_dkv_segment(
    Q, K, V, DO, GATE, LSE, DELTA, DK_ACC, DV_ACC, T, NK, qk_scale, sm_scale, b, h, i0, t_start, t_end,
    HQ: tl.constexpr, H: tl.constexpr, G: tl.constexpr,
    DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr,
    BT: tl.constexpr, BN: tl.constexpr,
    OFF: tl.constexpr, STRIDE: tl.constexpr, WIN: tl.constexpr, PREC: tl.constexpr,
):
    BM: tl.constexpr = BT * G
    kk = i0 + tl.arange(0, BN)
    kmask = kk < NK
    krow = (b * NK + kk).to(tl.int64) * H + h
    offk = tl.arange(0, BDK)
    offv = tl.arange(0, BDV)
    kmask_k = kmask[:, None] & (offk[None, :] < DK)
    kmask_v = kmask[:, None] & (offv[None, :] < DV)
    k = tl.load(K + krow[:, None] * DK + offk[None, :], mask=kmask_k, other=0.0)
    v = tl.load(V + krow[:, None] * DV + offv[None, :], mask=kmask_v, other=0.0)
    dk = tl.zeros([BN, BDK], tl.float32)
    dv = tl.zeros([BN, BDV], tl.float32)
    r = tl.arange(0, BM)
    for t0 in range(t_start, t_end, BT):
        t = t0 + r // G
        rmask = t < T
        row = (b * T + t).to(tl.int64) * HQ + h * G + r % G
        q = tl.load(Q + row[:, None] * DK + offk[None, :], mask=rmask[:, None] & (offk[None, :] < DK), other=0.0)
        gate = tl.load(GATE + row, mask=rmask, other=0.0).to(tl.float32)
        do = tl.load(DO + row[:, None] * DV + offv[None, :], mask=rmask[:, None] & (offv[None, :] < DV), other=0.0)
        do = (do.to(tl.float32) * gate[:, None]).to(q.dtype)
        lse = tl.load(LSE + row, mask=rmask, other=float("inf"))
        delta = tl.load(DELTA + row, mask=rmask, other=0.0)
        hi = _band_hi(t, OFF, STRIDE)
        lo = _band_lo(hi, WIN)
        st = tl.dot(k, tl.trans(q), input_precision=PREC) * qk_scale
        vis = (kk[:, None] <= hi[None, :]) & (kk[:, None] >= lo[None, :]) & rmask[None, :]
        pt = tl.where(vis, tl.exp2(st - lse[None, :]), 0.0)
        dv += tl.dot(pt.to(q.dtype), do, input_precision=PREC)
        dpt = tl.dot(v, tl.trans(do), input_precision=PREC)
        dst = pt * (dpt - delta[None, :])
        dk += tl.dot(dst.to(q.dtype), q, input_precision=PREC)
    tl.atomic_add(DK_ACC + krow[:, None] * DK + offk[None, :], dk * sm_scale, mask=kmask_k)
    tl.atomic_add(DV_ACC + krow[:, None] * DV + offv[None, :], dv, mask=kmask_v)


# Launch settings per branch ("cmp"/"win") and kernel: query rows per program (tokens * G),
# keys per tile, warps, pipeline stages, and for dkv the query tokens per program (segment).
# Chosen on the H100 by scripts/gpu_check_kernels.py --tune (B=1, HQ=64, H=4, d=128, T=64k); the H200
# tuner picks the same (results/tune_h200.log).
LAUNCH = {
    "cmp_fwd": {"rows": 64, "keys": 64, "warps": 4, "stages": 3},
    "win_fwd": {"rows": 64, "keys": 64, "warps": 4, "stages": 3},
    "cmp_dq": {"rows": 64, "keys": 64, "warps": 4, "stages": 2},
    "win_dq": {"rows": 64, "keys": 64, "warps": 4, "stages": 2},
    "cmp_dkv": {"rows": 64, "keys": 64, "warps": 4, "stages": 2, "seg": 2048},
    "win_dkv": {"rows": 64, "keys": 64, "warps": 4, "stages": 2, "seg": 1 << 30},
}

def _tokens(group: int, rows: int) -> int:
    """Tokens per program so that tokens * group = rows (at least one token)."""
    return max(1, rows // group)


def band_attn_fwd(q, k, v, band: Band, scale: float):
    """Output [B,T,HQ,dv] (dtype of q) and base-2 lse [B,T,HQ] fp32 of banded attention."""
    bsz, seq, hq, dk = q.shape
    nk, h, dv = k.shape[1], k.shape[2], v.shape[3]
    g = hq // h
    cfg = LAUNCH[f"{band.name}_fwd"]
    o = new_output((bsz, seq, hq, dv), q.dtype, q.device)
    lse = new_output((bsz, seq, hq), torch.float32, q.device)
    bt = _tokens(g, cfg["rows"])
    _band_fwd_kernel[(triton.cdiv(seq, bt), bsz * h)](
        q, k, v, o, lse, seq, nk, scale * LOG2E,
        hq, h, g, dk, dv, next_pow2(dk), next_pow2(dv), bt, cfg["keys"],
        band.off, band.stride, band.win, dot_precision(q.dtype), num_warps=cfg["warps"], num_stages=cfg["stages"],
    )
    return o, lse


def _bwd_common(q, k, v, band: Band, kind: str):
    hq, dk = q.shape[2], q.shape[3]
    h, dv = k.shape[2], v.shape[3]
    cfg = LAUNCH[f"{band.name}_{kind}"]
    bt = _tokens(hq // h, cfg["rows"])
    args = (hq, h, hq // h, dk, dv, next_pow2(dk), next_pow2(dv), bt, cfg["keys"], band.off, band.stride, band.win,
            dot_precision(q.dtype))
    return cfg, bt, args


def band_attn_bwd_dq(q, k, v, do, gate, lse, delta, band: Band, scale: float, dq_acc):
    """dq_acc (fp32) += this branch's dq. The branch's output gradient is gate * do; delta is
    rowsum(gate * do * o_branch)."""
    bsz, seq = q.shape[:2]
    cfg, bt, args = _bwd_common(q, k, v, band, "dq")
    _band_dq_kernel[(triton.cdiv(seq, bt), bsz * k.shape[2])](
        q, k, v, do, gate, lse, delta, dq_acc, seq, k.shape[1], scale * LOG2E, scale, *args,
        num_warps=cfg["warps"], num_stages=cfg["stages"],
    )


def band_attn_bwd_dkv(q, k, v, do, gate, lse, delta, band: Band, scale: float, dk_acc, dv_acc):
    """dk_acc, dv_acc (fp32) += this branch's dk, dv (same arguments as band_attn_bwd_dq)."""
    bsz, seq = q.shape[:2]
    nk = k.shape[1]
    if nk == 0:
        return
    cfg, bt, args = _bwd_common(q, k, v, band, "dkv")
    seg = max(bt, min(cfg["seg"], seq) // bt * bt)
    _band_dkv_kernel[(triton.cdiv(nk, cfg["keys"]), bsz * k.shape[2], triton.cdiv(seq, seg))](
        q, k, v, do, gate, lse, delta, dk_acc, dv_acc, seq, nk, scale * LOG2E, scale, *args, seg,
        num_warps=cfg["warps"], num_stages=cfg["stages"],
    )
