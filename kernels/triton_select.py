"""Block importance and top-n selection in one Triton pass (NSA_SPEC.md section 2).

Given the compressed branch's base-2 log-sum-exp, a program recomputes q . k_cmp for BT
tokens and all G query heads of one KV head (BT * G rows of one matrix product per chunk),
forms the normalised probabilities p_cmp, sums them over the G heads, maps them onto
selection blocks with the overlap weights (in fp32) and keeps a running top-n per token. Nothing of size [T, N_cmp] or [T, N_slc] is written: the
only output is the selected block indices [B, T, H, n] (ascending, -1 padded).

Chunks: BNS (16, or n rounded up to a power of two) selection blocks and the BNS * l'/d
compressed blocks that start inside them; a program's first chunks lie wholly in the causal
range of all its rows and skip the causal mask. A compressed block (l <= l') ends at most one selection block later, so the part that spills
past the chunk is carried into the next chunk's first column.

Top-n: each (score, block) pair is packed into one int64 key, score bits high and
(2^31 - 1 - block) low, so larger keys are better and equal scores prefer the lower block.
Forced blocks (0 and the two local ones) get +inf, blocks that have not started get the
lowest key. The running list of the best BNS keys stays sorted descending; each chunk's BNS keys
are sorted ascending, the elementwise max of the two lists is the best BNS of both (a bitonic
sequence) and one bitonic merge sorts it again. Against a top-k over the joined 2 * BNS keys that
is BNS-wide compare-and-swap steps instead of 2 * BNS-wide ones and no join (H200, T=64k, paper
config: 19.5 -> 15.5 ms). At the end the best n are sorted by block index.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_band import LOG2E
from .triton_common import dot_precision, new_output, next_pow2
from .triton_tiles import load_rows

CHUNK_BLOCKS = 16  # least selection blocks per chunk (BNS), also the width of the running top list


@triton.jit
def _select_blocks_kernel(
    Q, KC, LSE, IDX, T, NC, qk_scale,
    HQ: tl.constexpr, H: tl.constexpr, G: tl.constexpr, DK: tl.constexpr, BDK: tl.constexpr, BT: tl.constexpr,
    CMP_BLOCK: tl.constexpr, CMP_STRIDE: tl.constexpr, SLC_BLOCK: tl.constexpr,
    N: tl.constexpr, BNS: tl.constexpr, PREC: tl.constexpr, MAP_DOT: tl.constexpr,
):
    """Selected blocks IDX [BT, N] of BT tokens of one KV head (importance summed over its G
    query heads, running top-BNS over chunks of BNS selection blocks). MAP_DOT: map compressed
    onto selection blocks with tl.dot (needs BT >= 16). Grid (cdiv(T, BT), B * H)."""
    C: tl.constexpr = SLC_BLOCK // CMP_STRIDE
    BC: tl.constexpr = BNS * C
    BM: tl.constexpr = BT * G
    R: tl.constexpr = BNS
    LOW: tl.constexpr = 2147483647
    pid_t = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    t0 = pid_t * BT
    tok = t0 + tl.arange(0, BT)  # [BT]
    cur = tok // SLC_BLOCK  # [BT] each token's own selection block
    t_last = tl.minimum(t0 + BT, T) - 1
    n_chunks = (t_last // SLC_BLOCK) // BNS + 1

    # rows: BT tokens x G heads (row = token * G + head), so a reshape to [BT, G, BC] sums the heads
    r = tl.arange(0, BM)
    rt = t0 + r // G  # [BM]
    rmask = rt < T  # [BM]
    row = (b * T + rt).to(tl.int64) * HQ + h * G + r % G  # [BM]
    offk = tl.arange(0, BDK)
    q = load_rows(Q, row, rmask, offk, DK)  # [BM, BDK]
    lse = tl.load(LSE + row, mask=rmask, other=float("inf"))  # [BM]
    hi_r = tl.where(rt >= CMP_BLOCK - 1, (rt - CMP_BLOCK + 1) // CMP_STRIDE, -1)  # [BM] last usable cmp block
    ic = tl.arange(0, BC)
    jc = tl.arange(0, BNS)

    # overlap(i, j) / d of a chunk's compressed blocks i with its selection blocks j (w) and with
    # the next chunk's first one (w_next): the same for every chunk, as a chunk of BC compressed
    # blocks spans exactly its BNS selection blocks (BC * d = BNS * l'), so computed once
    ov_lo = tl.maximum(ic[:, None] * CMP_STRIDE, jc[None, :] * SLC_BLOCK)
    ov_hi = tl.minimum(ic[:, None] * CMP_STRIDE + CMP_BLOCK, (jc[None, :] + 1) * SLC_BLOCK)
    w = tl.maximum(ov_hi - ov_lo, 0).to(tl.float32) / CMP_STRIDE  # [BC, BNS]
    w_next = tl.maximum(
        tl.minimum(ic * CMP_STRIDE + CMP_BLOCK, (BNS + 1) * SLC_BLOCK) - tl.maximum(ic * CMP_STRIDE, BNS * SLC_BLOCK), 0
    ).to(tl.float32) / CMP_STRIDE  # [BC]

    keys = tl.full([BT, R], -4294967296, tl.int64)  # [BT, R] score key -1 (nothing), block LOW - 0
    carry = tl.zeros([BT], tl.float32)  # [BT]
    # the first n_full chunks lie wholly in every row's causal range: no causal mask there
    n_full = (tl.where(t0 >= CMP_BLOCK - 1, (t0 - CMP_BLOCK + 1) // CMP_STRIDE, -1) + 1) // BC
    for c in range(n_chunks):
        ci = c * BC + ic  # [BC]
        kc = tl.load(KC + ((b * NC + ci).to(tl.int64) * H + h)[:, None] * DK + offk[None, :],
                     mask=(ci < NC)[:, None] & (offk[None, :] < DK), other=0.0)  # [BC, BDK]
        s = tl.dot(q, tl.trans(kc), input_precision=PREC) * qk_scale  # [BM, BC]
        p = tl.exp2(s - lse[:, None])  # [BM, BC]
        if c >= n_full:
            p = tl.where(ci[None, :] <= hi_r[:, None], p, 0.0)
        pg = tl.sum(tl.reshape(p, [BT, G, BC]), 1)  # [BT, BC]
        if MAP_DOT:
            sc = tl.dot(pg, w, input_precision="ieee")  # [BT, BNS]
        else:
            sc = tl.sum(pg[:, :, None] * w[None, :, :], 1)  # [BT, BNS]
        sc += tl.where(jc[None, :] == 0, carry[:, None], 0.0)
        carry = tl.sum(pg * w_next[None, :], 1)  # [BT]
        jj = c * BNS + jc  # [BNS]

        started = jj[None, :] <= cur[:, None]  # [BT, BNS]
        forced = started & ((jj[None, :] == 0) | (jj[None, :] == cur[:, None]) | (jj[None, :] == cur[:, None] - 1))
        sc = tl.where(forced, float("inf"), sc) + 0.0  # + 0.0 turns a -0.0 into +0.0
        bits = tl.where(started, sc.to(tl.int32, bitcast=True), -1)
        ck = bits.to(tl.int64) * 4294967296 + (LOW - jj[None, :]).to(tl.int64)  # [BT, BNS]
        # keys is sorted descending: against the chunk sorted ascending, the elementwise max is the
        # best R of both (a bitonic sequence), which one bitonic merge sorts again
        keys = tl.bitonic_merge(tl.maximum(keys, tl.sort(ck, dim=1)), dim=1, descending=True)  # [BT, R]

    col = tl.arange(0, R)
    block = LOW - (keys & 4294967295)  # [BT, R]
    valid = (keys >= 0) & (col[None, :] < N)
    BIG: tl.constexpr = 2147483647
    chosen = tl.sort(tl.where(valid, block, BIG).to(tl.int32), dim=1)  # [BT, R]
    chosen = tl.where(chosen == BIG, -1, chosen)
    out = IDX + ((b * T + tok).to(tl.int64) * H + h)[:, None] * N + col[None, :]
    tl.store(out, chosen, mask=(tok < T)[:, None] & (col[None, :] < N))


# Launch settings: query rows per program (tokens * G), warps, pipeline stages; chosen on the
# H100 by scripts/gpu_check_kernels.py --tune; the H200 tuner picks the same (results/tune_h200.log).
LAUNCH = {"select": {"rows": 64, "warps": 4, "stages": 2}}


def select_blocks(q, k_cmp, lse_cmp, config, scale: float) -> torch.Tensor:
    """Selected block indices [B,T,H,n] int32 (ascending, -1 padded) from q, k_cmp and the
    compressed branch's base-2 lse [B,T,HQ]."""
    bsz, seq, hq, dk = q.shape
    nc, h = k_cmp.shape[1], k_cmp.shape[2]
    g = hq // h
    n = config.slc_count
    cfg = LAUNCH["select"]
    idx = new_output((bsz, seq, h, n), torch.int32, q.device)
    bt = max(1, cfg["rows"] // g)
    width = max(CHUNK_BLOCKS, next_pow2(n))
    if nc == 0:  # nothing to load: a one-row stand-in keeps the pointer valid
        k_cmp = q.new_zeros(bsz, 1, h, dk)
    _select_blocks_kernel[(triton.cdiv(seq, bt), bsz * h)](
        Q=q, KC=k_cmp, LSE=lse_cmp, IDX=idx, T=seq, NC=nc, qk_scale=scale * LOG2E,
        HQ=hq, H=h, G=g, DK=dk, BDK=next_pow2(dk), BT=bt,
        CMP_BLOCK=config.cmp_block, CMP_STRIDE=config.cmp_stride, SLC_BLOCK=config.slc_block,
        N=n, BNS=width, PREC=dot_precision(q.dtype), MAP_DOT=bt >= 16,
        num_warps=cfg["warps"], num_stages=cfg["stages"],
    )
    return idx
