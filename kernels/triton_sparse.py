"""Selected-block attention in Triton (NSA_SPEC.md section 2), forward and backward.

Forward and dQ are group-centric: one program per (token, KV head) holds the G query heads
of the group as the rows of its tiles (padded to 16), walks the token's selected blocks and
loads each block once for all G heads. A token at position t uses min(n, t // l' + 1)
blocks (the selection is ascending and -1 padded), keys masked to positions <= t.

dK/dV use an inverse index instead of atomics per (token, block): the (token, block) pairs
are sorted by block with torch (a CSR list of the tokens that chose each block), and one
program per chunk of at most LAUNCH["slc_dkv"]["chunk"] tokens of one block accumulates that block's
gradient over its tokens, packed BT tokens x G heads per tile. A block chosen by more tokens
than one chunk holds (block 0 and the local blocks are chosen by many) gets a few programs,
whose results meet through one fp32 atomic add per element and chunk.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_band import LOG2E
from .triton_common import dot_precision, new_output, next_pow2

# Launch settings (warps, pipeline stages; for dkv also query rows per tile = tokens * G and the
# tokens of one block per program). Chosen on the H100 by scripts/gpu_check_kernels.py --tune; the H200
# tuner picks the same (results/tune_h200.log).
LAUNCH = {
    "slc_fwd": {"warps": 2, "stages": 2},
    "slc_dq": {"warps": 2, "stages": 2},
    "slc_dkv": {"rows": 64, "warps": 4, "stages": 2, "chunk": 1024},
}


@triton.jit
def _slc_fwd_kernel(
    Q, K, V, IDX, O, LSE, T, qk_scale,
    HQ: tl.constexpr, H: tl.constexpr, G: tl.constexpr, BG: tl.constexpr,
    DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr,
    BS: tl.constexpr, N: tl.constexpr, PREC: tl.constexpr,
):
    t = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    g = tl.arange(0, BG)
    gmask = g < G
    row = (b * T + t).to(tl.int64) * HQ + h * G + g
    offk = tl.arange(0, BDK)
    offv = tl.arange(0, BDV)
    q = tl.load(Q + row[:, None] * DK + offk[None, :], mask=gmask[:, None] & (offk[None, :] < DK), other=0.0)
    sel = IDX + ((b * T + t).to(tl.int64) * H + h) * N
    n_sel = tl.minimum(N, t // BS + 1)
    kb = tl.arange(0, BS)
    m_i = tl.full([BG], float("-inf"), tl.float32)
    l_i = tl.zeros([BG], tl.float32)
    acc = tl.zeros([BG, BDV], tl.float32)
    for s_i in range(n_sel):
        j = tl.load(sel + s_i)
        kpos = j * BS + kb
        kmask = (kpos <= t) & (j >= 0)
        krow = (b * T + kpos).to(tl.int64) * H + h
        k = tl.load(K + krow[:, None] * DK + offk[None, :], mask=kmask[:, None] & (offk[None, :] < DK), other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale
        s = tl.where(kmask[None, :], s, float("-inf"))
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
    tl.store(O + row[:, None] * DV + offv[None, :], o.to(O.dtype.element_ty), mask=gmask[:, None] & (offv[None, :] < DV))
    tl.store(LSE + row, lse, mask=gmask)


@triton.jit
def _slc_dq_kernel(
    Q, K, V, IDX, DO, GATE, LSE, DELTA, DQ, T, qk_scale, sm_scale,
    HQ: tl.constexpr, H: tl.constexpr, G: tl.constexpr, BG: tl.constexpr,
    DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr,
    BS: tl.constexpr, N: tl.constexpr, PREC: tl.constexpr,
):
    """DQ (fp32, accumulated in place) += the selection branch's dq."""
    t = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    g = tl.arange(0, BG)
    gmask = g < G
    row = (b * T + t).to(tl.int64) * HQ + h * G + g
    offk = tl.arange(0, BDK)
    offv = tl.arange(0, BDV)
    qmask = gmask[:, None] & (offk[None, :] < DK)
    q = tl.load(Q + row[:, None] * DK + offk[None, :], mask=qmask, other=0.0)
    gate = tl.load(GATE + row, mask=gmask, other=0.0).to(tl.float32)
    do = tl.load(DO + row[:, None] * DV + offv[None, :], mask=gmask[:, None] & (offv[None, :] < DV), other=0.0)
    do = (do.to(tl.float32) * gate[:, None]).to(q.dtype)
    lse = tl.load(LSE + row, mask=gmask, other=float("inf"))
    delta = tl.load(DELTA + row, mask=gmask, other=0.0)
    sel = IDX + ((b * T + t).to(tl.int64) * H + h) * N
    n_sel = tl.minimum(N, t // BS + 1)
    kb = tl.arange(0, BS)
    dq = tl.zeros([BG, BDK], tl.float32)
    for s_i in range(n_sel):
        j = tl.load(sel + s_i)
        kpos = j * BS + kb
        kmask = (kpos <= t) & (j >= 0)
        krow = (b * T + kpos).to(tl.int64) * H + h
        k = tl.load(K + krow[:, None] * DK + offk[None, :], mask=kmask[:, None] & (offk[None, :] < DK), other=0.0)
        v = tl.load(V + krow[:, None] * DV + offv[None, :], mask=kmask[:, None] & (offv[None, :] < DV), other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale
        p = tl.where(kmask[None, :], tl.exp2(s - lse[:, None]), 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PREC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
    ptrs = DQ + row[:, None] * DK + offk[None, :]
    tl.store(ptrs, tl.load(ptrs, mask=qmask, other=0.0) + dq * sm_scale, mask=qmask)


@triton.jit
def _slc_dkv_kernel(
    Q, K, V, DO, GATE, LSE, DELTA, DK_ACC, DV_ACC,
    WORK_KEY, WORK_CHUNK, SEG_START, SEG_COUNT, TOKENS, T, NS, NKEYS, qk_scale, sm_scale,
    HQ: tl.constexpr, H: tl.constexpr, G: tl.constexpr,
    DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr,
    BS: tl.constexpr, BT: tl.constexpr, CH: tl.constexpr, PREC: tl.constexpr,
):
    """DK_ACC/DV_ACC (fp32) += the selection branch's dk/dv of one block, from one chunk of
    the tokens that selected it (atomic adds: a block may have several chunks)."""
    BM: tl.constexpr = BT * G
    pid = tl.program_id(0)
    key = tl.load(WORK_KEY + pid)
    if key < NKEYS:
        chunk = tl.load(WORK_CHUNK + pid)
        start = tl.load(SEG_START + key) + chunk * CH
        count = tl.minimum(CH, tl.load(SEG_COUNT + key) - chunk * CH)
        bh = key // NS
        j = key % NS
        b = bh // H
        h = bh % H
        kpos = j * BS + tl.arange(0, BS)
        kmask = kpos < T
        krow = (b * T + kpos).to(tl.int64) * H + h
        offk = tl.arange(0, BDK)
        offv = tl.arange(0, BDV)
        kmask_k = kmask[:, None] & (offk[None, :] < DK)
        kmask_v = kmask[:, None] & (offv[None, :] < DV)
        k = tl.load(K + krow[:, None] * DK + offk[None, :], mask=kmask_k, other=0.0)
        v = tl.load(V + krow[:, None] * DV + offv[None, :], mask=kmask_v, other=0.0)
        dk = tl.zeros([BS, BDK], tl.float32)
        dv = tl.zeros([BS, BDV], tl.float32)
        r = tl.arange(0, BM)
        for i0 in range(0, count, BT):
            ti = i0 + r // G
            rmask = ti < count
            tok = tl.load(TOKENS + start + ti, mask=rmask, other=0)
            row = (b * T + tok).to(tl.int64) * HQ + h * G + r % G
            q = tl.load(Q + row[:, None] * DK + offk[None, :], mask=rmask[:, None] & (offk[None, :] < DK), other=0.0)
            gate = tl.load(GATE + row, mask=rmask, other=0.0).to(tl.float32)
            do = tl.load(DO + row[:, None] * DV + offv[None, :], mask=rmask[:, None] & (offv[None, :] < DV), other=0.0)
            do = (do.to(tl.float32) * gate[:, None]).to(q.dtype)
            lse = tl.load(LSE + row, mask=rmask, other=float("inf"))
            delta = tl.load(DELTA + row, mask=rmask, other=0.0)
            st = tl.dot(k, tl.trans(q), input_precision=PREC) * qk_scale
            vis = (kpos[:, None] <= tok[None, :]) & rmask[None, :]
            pt = tl.where(vis, tl.exp2(st - lse[None, :]), 0.0)
            dv += tl.dot(pt.to(q.dtype), do, input_precision=PREC)
            dpt = tl.dot(v, tl.trans(do), input_precision=PREC)
            dst = pt * (dpt - delta[None, :])
            dk += tl.dot(dst.to(q.dtype), q, input_precision=PREC)
        tl.atomic_add(DK_ACC + krow[:, None] * DK + offk[None, :], dk * sm_scale, mask=kmask_k)
        tl.atomic_add(DV_ACC + krow[:, None] * DV + offv[None, :], dv, mask=kmask_v)


def slc_attn_fwd(q, k, v, indices, config, scale: float):
    """Selection-branch output [B,T,HQ,dv] and base-2 lse [B,T,HQ] given indices [B,T,H,n]."""
    bsz, seq, hq, dk = q.shape
    h, dv = k.shape[2], v.shape[3]
    g = hq // h
    o = new_output((bsz, seq, hq, dv), q.dtype, q.device)
    lse = new_output((bsz, seq, hq), torch.float32, q.device)
    cfg = LAUNCH["slc_fwd"]
    _slc_fwd_kernel[(seq, bsz * h)](
        q, k, v, indices, o, lse, seq, scale * LOG2E,
        hq, h, g, max(16, g), dk, dv, next_pow2(dk), next_pow2(dv), config.slc_block, config.slc_count,
        dot_precision(q.dtype), num_warps=cfg["warps"], num_stages=cfg["stages"],
    )
    return o, lse


def block_token_index(indices: torch.Tensor, n_blocks: int, chunk: int | None = None):
    """Inverse of the selection: for each (batch, KV head, block) the tokens that chose it.

    Returns (work_key, work_chunk, seg_start, seg_count, tokens, chunk): tokens sorted by key
    (b * H + h) * n_blocks + block; each key's tokens split into chunks of `chunk`; one work
    item per chunk (work_key == number of keys marks an unused item). Built with sort and
    cumsum on the device, without a host synchronisation, so the grid is an upper bound.
    """
    bsz, seq, h, n = indices.shape
    dev = indices.device
    chunk = chunk or LAUNCH["slc_dkv"]["chunk"]
    n_keys = bsz * h * n_blocks
    base = (torch.arange(bsz, device=dev).view(bsz, 1, 1, 1) * h + torch.arange(h, device=dev).view(1, 1, h, 1)) * n_blocks
    idx = indices.long()
    key = torch.where(idx >= 0, base + idx, torch.full_like(idx, n_keys)).reshape(-1)
    order = torch.argsort(key, stable=True)
    tokens = ((order // (h * n)) % seq).to(torch.int32)
    counts = torch.bincount(key, minlength=n_keys + 1)[:n_keys]
    seg_start = torch.cumsum(counts, 0) - counts
    n_chunks = (counts + chunk - 1) // chunk
    chunk_end = torch.cumsum(n_chunks, 0)
    bound = -(-key.numel() // chunk) + n_keys
    pid = torch.arange(bound, device=dev)
    work_key = torch.searchsorted(chunk_end, pid, right=True)
    first_chunk = (chunk_end - n_chunks)[work_key.clamp_max(n_keys - 1)]
    work_chunk = pid - first_chunk
    return (work_key.to(torch.int32), work_chunk.to(torch.int32), seg_start.to(torch.int32),
            counts.to(torch.int32), tokens, chunk)


def slc_attn_bwd_dq(q, k, v, indices, do, gate, lse, delta, config, scale: float, dq_acc):
    """dq_acc (fp32) += the selection branch's dq (output gradient gate * do, delta its rowsum
    with o_slc)."""
    bsz, seq, hq, dk = q.shape
    h, dv = k.shape[2], v.shape[3]
    g = hq // h
    cfg = LAUNCH["slc_dq"]
    _slc_dq_kernel[(seq, bsz * h)](
        q, k, v, indices, do, gate, lse, delta, dq_acc, seq, scale * LOG2E, scale,
        hq, h, g, max(16, g), dk, dv, next_pow2(dk), next_pow2(dv), config.slc_block, config.slc_count,
        dot_precision(q.dtype), num_warps=cfg["warps"], num_stages=cfg["stages"],
    )


def slc_attn_bwd_dkv(q, k, v, do, gate, lse, delta, config, scale: float, dk_acc, dv_acc, block_index):
    """dk_acc, dv_acc (fp32) += the selection branch's dk, dv; block_index from block_token_index."""
    bsz, seq, hq, dk = q.shape
    h, dv = k.shape[2], v.shape[3]
    g = hq // h
    cfg = LAUNCH["slc_dkv"]
    work_key, work_chunk, seg_start, seg_count, tokens, chunk = block_index
    n_blocks = config.num_slc_blocks(seq)
    _slc_dkv_kernel[(work_key.numel(),)](
        q, k, v, do, gate, lse, delta, dk_acc, dv_acc,
        work_key, work_chunk, seg_start, seg_count, tokens, seq, n_blocks, bsz * h * n_blocks, scale * LOG2E, scale,
        hq, h, g, dk, dv, next_pow2(dk), next_pow2(dv), config.slc_block, max(1, cfg["rows"] // g), chunk,
        dot_precision(q.dtype), num_warps=cfg["warps"], num_stages=cfg["stages"],
    )
