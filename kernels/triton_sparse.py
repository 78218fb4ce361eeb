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
from triton.tools.tensor_descriptor import TensorDescriptor

from .triton_band import LOG2E, branch_outputs
from .triton_common import dot_precision, kv_strides, next_pow2
from .triton_tiles import (
    add_key_grads, dkv_update, dq_update, key_grad_tile, kv_offsets, load_grad_rows, load_rows, load_tile,
    softmax_state, softmax_update, softmax_update_values, store_dq, store_softmax_result,
)

# Launch settings (warps, pipeline stages; tma: key/value tiles through tensor descriptors; keys: at
# most this many keys of a selected block per tile (fewer: less shared memory a program); for dkv
# also query rows per tile = tokens * G and the tokens of one block per program). Chosen on the H100
# by scripts/gpu_check_kernels.py --tune; the H200 tuner picks the same (results/tune_h200.log). The
# forward's one warp and both TMA settings come from H200 A/B runs: one warp needs no cross-warp
# softmax reductions (8k: 1.40 against 1.53 ms, results/slc_launch_h200_fa67bc9.log); TMA
# issues one bulk copy per tile instead of a 64-row gather (forward 1.55 against 1.76 ms,
# results/slc_tma_h200_ca09db5*.log). The forward's 32-key tiles in 3 stages: 1.347 against 1.367 ms
# at 8k (the tuner, results/tune_h200_8k_a6d7043.log), 13.16 against 13.27 at 64k
# (results/slc_overlap_h200_b578eef.log).
LAUNCH = {
    "slc_fwd": {"warps": 1, "stages": 3, "tma": True, "keys": 32},
    "slc_dq": {"warps": 2, "stages": 2, "tma": True, "keys": 64},
    "slc_dkv": {"rows": 64, "warps": 4, "stages": 2, "chunk": 1024},
}


@triton.jit
def _slc_query_rows(T, HQ: tl.constexpr, H: tl.constexpr, G: tl.constexpr, BG: tl.constexpr):
    """This program's token t, batch b, KV head h, and its G query heads (padded to BG rows):
    row mask [BG] and flat row index into [B*T*HQ] [BG]."""
    t = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    g = tl.arange(0, BG)
    gmask = g < G  # [BG]
    row = (b * T + t).to(tl.int64) * HQ + h * G + g  # [BG]
    return t, b, h, gmask, row


@triton.jit
def _slc_selection(IDX, b, t, h, T, H: tl.constexpr, BS: tl.constexpr, N: tl.constexpr, BN: tl.constexpr):
    """Token t's selected blocks of KV head h, loaded at once (-1 past the min(N, t // BS + 1)
    it uses; BN = N rounded up to a power of two) [BN], and that count. One vector load before
    the loop keeps the loop free of dependent global loads (on the H200 no faster than a scalar
    load per block: results/slc_traffic_h200_5e53698*.log)."""
    n_sel = tl.minimum(N, t // BS + 1)
    r = tl.arange(0, BN)
    sel = tl.load(IDX + ((b * T + t).to(tl.int64) * H + h) * N + r, mask=r < n_sel, other=-1)  # [BN]
    return sel, n_sel


@triton.jit
def _slc_tile_keys(sel, it, t, BS: tl.constexpr, BK: tl.constexpr, BN: tl.constexpr):
    """Key tile `it` of token t's selection sel [BN], each block read as BS // BK tiles of BK
    keys: its first position (negative for a -1 padding entry), positions [BK] and mask [BK]
    (causal, and none for a padding entry)."""
    NSUB: tl.constexpr = BS // BK
    j = tl.sum(tl.where(tl.arange(0, BN) == it // NSUB, sel, 0))
    start = j * BS + (it % NSUB) * BK
    kpos = start + tl.arange(0, BK)  # [BK]
    kmask = (kpos <= t) & (j >= 0)  # [BK]
    return start, kpos, kmask


@triton.jit
def _slc_fwd_kernel(
    Q, K, V, IDX, O, LSE, T, qk_scale,
    s_k_t: tl.constexpr, s_k_h: tl.constexpr, s_v_t: tl.constexpr, s_v_h: tl.constexpr,
    HQ: tl.constexpr, H: tl.constexpr, G: tl.constexpr, BG: tl.constexpr,
    DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr,
    BS: tl.constexpr, BK: tl.constexpr, N: tl.constexpr, BNS: tl.constexpr, PREC: tl.constexpr,
    TMA: tl.constexpr,
):
    """O and LSE of one token x the G query heads of one KV head over the token's selected
    blocks, BK keys a tile. With TMA, K and V are tensor descriptors over [B*T, token stride]
    (_kv_args): a tile is one bulk copy instead of a gather of BK rows. Grid (T, B * H)."""
    t, b, h, gmask, row = _slc_query_rows(T, HQ, H, G, BG)
    offk = tl.arange(0, BDK)
    offv = tl.arange(0, BDV)
    q = load_rows(Q, row, gmask, offk, DK)  # [BG, BDK]
    sel, n_sel = _slc_selection(IDX, b, t, h, T, H, BS, N, BNS)  # [BNS]
    m_i, l_i, acc = softmax_state(BG, BDV)  # [BG], [BG], [BG, BDV]
    for it in range(n_sel * (BS // BK)):
        start, kpos, kmask = _slc_tile_keys(sel, it, t, BS, BK, BNS)
        if TMA:
            first = b * T + tl.maximum(start, 0)  # a padding entry reads block 0, all masked
            k = K.load([first, h * s_k_h])  # [BK, BDK]
            s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale  # [BG, BK]
            v = V.load([first, h * s_v_h])  # [BK, BDV]
            m_i, l_i, acc = softmax_update_values(s, kmask[None, :], v, m_i, l_i, acc, PREC)
        else:
            k = load_tile(K, kv_offsets(b, kpos, T, h, s_k_t, s_k_h), kmask, offk, DK)  # [BK, BDK]
            s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale  # [BG, BK]
            voff = kv_offsets(b, kpos, T, h, s_v_t, s_v_h)  # [BK]
            m_i, l_i, acc = softmax_update(s, kmask[None, :], V, voff, kmask, offv, m_i, l_i, acc, DV, PREC)
    store_softmax_result(O, LSE, row, gmask, offv, m_i, l_i, acc, DV)


@triton.jit
def _slc_dq_kernel(
    Q, K, V, IDX, DO, LSE, DELTA, DQ_IN, DQ_OUT, T, qk_scale, sm_scale,
    s_k_t: tl.constexpr, s_k_h: tl.constexpr, s_v_t: tl.constexpr, s_v_h: tl.constexpr,
    HQ: tl.constexpr, H: tl.constexpr, G: tl.constexpr, BG: tl.constexpr,
    DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr,
    BS: tl.constexpr, BK: tl.constexpr, N: tl.constexpr, BNS: tl.constexpr, PREC: tl.constexpr,
    TMA: tl.constexpr,
):
    """DQ_OUT = DQ_IN (None: zero) + the selection branch's dq of one token x the G query heads
    of one KV head; K and V as for _slc_fwd_kernel. Grid (T, B * H)."""
    t, b, h, gmask, row = _slc_query_rows(T, HQ, H, G, BG)
    offk = tl.arange(0, BDK)
    offv = tl.arange(0, BDV)
    q, do, lse, delta = load_grad_rows(Q, DO, LSE, DELTA, row, gmask, offk, offv, DK, DV)
    sel, n_sel = _slc_selection(IDX, b, t, h, T, H, BS, N, BNS)  # [BNS]
    dq = tl.zeros([BG, BDK], tl.float32)  # [BG, BDK]
    for it in range(n_sel * (BS // BK)):
        start, kpos, kmask = _slc_tile_keys(sel, it, t, BS, BK, BNS)
        if TMA:
            first = b * T + tl.maximum(start, 0)  # a padding entry reads block 0, all masked
            k = K.load([first, h * s_k_h])  # [BK, BDK]
            v = V.load([first, h * s_v_h])  # [BK, BDV]
        else:
            k = load_tile(K, kv_offsets(b, kpos, T, h, s_k_t, s_k_h), kmask, offk, DK)  # [BK, BDK]
            v = load_tile(V, kv_offsets(b, kpos, T, h, s_v_t, s_v_h), kmask, offv, DV)  # [BK, BDV]
        s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale  # [BG, BK]
        dq = dq_update(s, kmask[None, :], k, v, do, lse, delta, dq, PREC)
    store_dq(DQ_IN, DQ_OUT, row, gmask, offk, dq, sm_scale, DK)


@triton.jit
def _slc_dkv_kernel(
    Q, K, V, DO, LSE, DELTA, DK_ACC, DV_ACC,
    WORK_KEY, WORK_CHUNK, SEG_START, SEG_COUNT, TOKENS, T, NS, NKEYS, qk_scale, sm_scale,
    s_k_t: tl.constexpr, s_k_h: tl.constexpr, s_v_t: tl.constexpr, s_v_h: tl.constexpr,
    HQ: tl.constexpr, H: tl.constexpr, G: tl.constexpr,
    DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr,
    BS: tl.constexpr, BT: tl.constexpr, CH: tl.constexpr, PREC: tl.constexpr,
):
    """DK_ACC/DV_ACC (fp32) += the selection branch's dk/dv of one block, from one chunk of at
    most CH of the tokens that selected it, BT tokens x G heads per tile (atomic adds: a block
    may have several chunks). Grid (work items,): one per chunk, unused ones exit."""
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
        kpos = j * BS + tl.arange(0, BS)  # [BS]
        krow, kmask, offk, offv, k, v, dk, dv = key_grad_tile(K, V, b, h, kpos, T, s_k_t, s_k_h, s_v_t, s_v_h,
                                                              H, BS, DK, DV, BDK, BDV)
        r = tl.arange(0, BM)
        for i0 in range(0, count, BT):
            ti = i0 + r // G  # [BM]
            rmask = ti < count  # [BM]
            tok = tl.load(TOKENS + start + ti, mask=rmask, other=0)  # [BM]
            row = (b * T + tok).to(tl.int64) * HQ + h * G + r % G  # [BM]
            q, do, lse, delta = load_grad_rows(Q, DO, LSE, DELTA, row, rmask, offk, offv, DK, DV)
            st = tl.dot(k, tl.trans(q), input_precision=PREC) * qk_scale  # [BS, BM]
            vis = (kpos[:, None] <= tok[None, :]) & rmask[None, :]  # [BS, BM]
            dk, dv = dkv_update(st, vis, v, q, do, lse, delta, dk, dv, PREC)
        add_key_grads(DK_ACC, DV_ACC, krow, kmask, offk, offv, dk, dv, sm_scale, DK, DV)


def slc_attn_fwd(q, k, v, indices, config, scale: float):
    """Selection-branch output [B,T,HQ,dv] and base-2 lse [B,T,HQ] given indices [B,T,H,n]."""
    bsz, seq, h = q.shape[0], q.shape[1], k.shape[2]
    o, lse = branch_outputs(q, v)
    cfg = LAUNCH["slc_fwd"]
    _slc_fwd_kernel[(seq, bsz * h)](
        Q=q, IDX=indices, O=o, LSE=lse, T=seq, qk_scale=scale * LOG2E,
        **_kv_args(k, v, q, config, cfg), num_warps=cfg["warps"], num_stages=cfg["stages"],
    )
    return o, lse


def _kv_args(k, v, q, config, cfg: dict) -> dict:
    """The arguments the forward and dq kernels share besides their tensors of query rows: K, V,
    their strides and the constexprs (G query heads padded to BG >= 16 rows for tl.dot; key tiles of
    BK = min(cfg["keys"], slc_block) keys). With cfg["tma"], head dims that are powers of two and k, v
    whose start and token stride are 16-byte aligned (a tensor map's rule), K and V are tensor
    descriptors of [B*T, (H-1) * head stride + d] matrices (one row per token, read in place through
    the token stride) whose tile is BK keys of one head, [BK, d]."""
    hq, dk, h, dv = q.shape[2], q.shape[3], k.shape[2], v.shape[3]
    bk = min(cfg["keys"], config.slc_block)
    aligned = all(x.data_ptr() % 16 == 0 and x.stride(1) * x.element_size() % 16 == 0 for x in (k, v))
    tma = cfg["tma"] and aligned and next_pow2(dk) == dk and next_pow2(dv) == dv
    args = dict(K=k, V=v, **kv_strides(k, v), TMA=tma, HQ=hq, H=h, G=hq // h, BG=max(16, hq // h), DK=dk, DV=dv,
                BDK=next_pow2(dk), BDV=next_pow2(dv), BS=config.slc_block, BK=bk, N=config.slc_count,
                BNS=next_pow2(config.slc_count), PREC=dot_precision(q.dtype))
    if tma:
        for name, x in (("K", k), ("V", v)):
            width = (x.shape[2] - 1) * x.stride(2) + x.shape[3]
            args[name] = TensorDescriptor(x, [x.shape[0] * x.shape[1], width], [x.stride(1), 1], [bk, x.shape[3]])
    return args


def block_token_index(indices: torch.Tensor, n_blocks: int, chunk: int | None = None):
    """Inverse of the selection: for each (batch, KV head, block) the tokens that chose it.

    Returns (work_key, work_chunk, seg_start, seg_count, tokens, chunk): tokens sorted by key
    (b * H + h) * n_blocks + block; each key's tokens split into chunks of `chunk`; one work
    item per chunk (work_key == number of keys marks an unused item). Built with sort, binary
    search and cumsum on the device, without a host synchronisation, so the grid is an upper bound.
    """
    bsz, seq, h, n = indices.shape
    dev = indices.device
    chunk = chunk or LAUNCH["slc_dkv"]["chunk"]
    n_keys = bsz * h * n_blocks
    base = (torch.arange(bsz, device=dev).view(bsz, 1, 1, 1) * h + torch.arange(h, device=dev).view(1, 1, h, 1)) * n_blocks
    idx = indices.long()
    key = torch.where(idx >= 0, base + idx, torch.full_like(idx, n_keys)).reshape(-1)
    sorted_key, order = torch.sort(key, stable=True)
    tokens = ((order // (h * n)) % seq).to(torch.int32)
    # segment bounds by binary search (torch.bincount would read its maximum back to the host)
    bounds = torch.searchsorted(sorted_key, torch.arange(n_keys + 1, device=dev))
    seg_start = bounds[:-1]
    counts = bounds[1:] - seg_start
    n_chunks = (counts + chunk - 1) // chunk
    chunk_end = torch.cumsum(n_chunks, 0)
    bound = -(-key.numel() // chunk) + n_keys
    pid = torch.arange(bound, device=dev)
    work_key = torch.searchsorted(chunk_end, pid, right=True)
    first_chunk = (chunk_end - n_chunks)[work_key.clamp_max(n_keys - 1)]
    work_chunk = pid - first_chunk
    return (work_key.to(torch.int32), work_chunk.to(torch.int32), seg_start.to(torch.int32),
            counts.to(torch.int32), tokens, chunk)


def slc_attn_bwd_dq(q, k, v, indices, do, lse, delta, config, scale: float, dq_out, dq_in=None):
    """dq_out = dq_in + the selection branch's dq (as band_attn_bwd_dq; do its output gradient
    gate * dO, contiguous; delta the rowsum of do * o_slc)."""
    bsz, seq = q.shape[:2]
    h = k.shape[2]
    cfg = LAUNCH["slc_dq"]
    _slc_dq_kernel[(seq, bsz * h)](
        Q=q, IDX=indices, DO=do, LSE=lse, DELTA=delta, DQ_IN=dq_in, DQ_OUT=dq_out, T=seq,
        qk_scale=scale * LOG2E, sm_scale=scale, **_kv_args(k, v, q, config, cfg),
        num_warps=cfg["warps"], num_stages=cfg["stages"],
    )


def slc_attn_bwd_dkv(q, k, v, do, lse, delta, config, scale: float, dk_acc, dv_acc, block_index):
    """dk_acc, dv_acc (fp32) += the selection branch's dk, dv; block_index from block_token_index."""
    bsz, seq, hq, dk = q.shape
    h, dv = k.shape[2], v.shape[3]
    g = hq // h
    cfg = LAUNCH["slc_dkv"]
    work_key, work_chunk, seg_start, seg_count, tokens, chunk = block_index
    n_blocks = config.num_slc_blocks(seq)
    _slc_dkv_kernel[(work_key.numel(),)](
        Q=q, K=k, V=v, DO=do, LSE=lse, DELTA=delta, DK_ACC=dk_acc, DV_ACC=dv_acc,
        WORK_KEY=work_key, WORK_CHUNK=work_chunk, SEG_START=seg_start, SEG_COUNT=seg_count, TOKENS=tokens,
        T=seq, NS=n_blocks, NKEYS=bsz * h * n_blocks, qk_scale=scale * LOG2E, sm_scale=scale,
        **kv_strides(k, v),
        HQ=hq, H=h, G=g, DK=dk, DV=dv, BDK=next_pow2(dk), BDV=next_pow2(dv), BS=config.slc_block,
        BT=max(1, cfg["rows"] // g), CH=chunk, PREC=dot_precision(q.dtype),
        num_warps=cfg["warps"], num_stages=cfg["stages"],
    )
