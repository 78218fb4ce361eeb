"""Triton kernels of the NSA decode step (one new query token per sequence) and of the cache append.

A decode step is four launches, none of which needs the host to know the sequence lengths
(they are read on the device), so a step can be captured in a CUDA graph:

  _decode_cmp_win_kernel  grid (B*H, P_CMP + P_WIN): programs s < P_CMP do compressed attention
        split over the compressed tokens (flash-decoding). Each writes a partial output with its
        base-2 running max and sum, and, per tile of BN compressed tokens, the partial block
        importance sum_i exp2(s_i - m_tile) * overlap(i, j) / d for each query head and each
        selection block j the tile touches, with that m_tile. The others attend to a slice of the
        sliding window (which needs no selection, so its reads overlap the compressed ones) and
        write a partial output.
  _decode_select_kernel  grid (B*H, P_SEL): global softmax statistics from the partials (and,
        when P_SEL is large, the merged compressed output of G/P_SEL query heads), importance of
        BB selection blocks (summed over the G heads of the group), forced blocks, and the BB
        blocks' local top-n (tl.topk on int64 keys: score, then lower index).
  _decode_slc_kernel  grid (B*H, ceil(n/SB)): program s merges the local top-n lists (tl.topk
        again) and attends to the blocks of global rank s*SB .. s*SB+SB-1, writing a partial output.
  _decode_combine_kernel  grid (B*HQ,): merges the partials of each branch (the compressed one
        unless _decode_select_kernel did) and writes the gated sum.

All softmax arithmetic is base 2 (scores times scale * log2 e). Caches are head-major:
k/v [B, H, T_max, d], compressed k/v [B, H, N_max + 1, d].
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_tiles import softmax_state

LOG2E = 1.4426950408889634


@triton.jit
def _cache_append_kernel(
    LEN, KN, VN, K, V, KC, VC, KSN, VSN, KS, VS, KWN, VWN, KW, VW,
    s_kn_b, s_kn_h, s_vn_b, s_vn_h,
    s_k_b, s_k_h, s_k_t, s_v_b, s_v_h, s_v_t,
    s_kc_b, s_kc_h, s_kc_t, s_vc_b, s_vc_h, s_vc_t,
    trash_slot,
    H: tl.constexpr, DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr,
    CMP_BLOCK: tl.constexpr, CMP_STRIDE: tl.constexpr, BL: tl.constexpr,
    SEPARATE_SLC: tl.constexpr, SEPARATE_WIN: tl.constexpr, MEAN_POOL: tl.constexpr,
):
    """Write token `len` of sequence b (all heads); with MEAN_POOL, also the compressed token a
    completed block gives (else into the trash row) and bump the length. New tokens [B,1,H,d]
    share strides with their selection/window twins; caches share strides likewise. Grid (B,)."""
    b = tl.program_id(0)
    pos = tl.load(LEN + b)
    dk = tl.arange(0, BDK)
    dv = tl.arange(0, BDV)
    dkm = dk < DK
    dvm = dv < DV
    n_new = pos + 1
    full = (n_new >= CMP_BLOCK) & ((n_new - CMP_BLOCK) % CMP_STRIDE == 0)
    slot = tl.where(full, (n_new - CMP_BLOCK) // CMP_STRIDE, trash_slot)
    r = tl.arange(0, BL)
    prev = pos - (CMP_BLOCK - 1) + r
    prev_ok = (r < CMP_BLOCK - 1) & (prev >= 0)
    for h in range(H):
        new_k = b * s_kn_b + h * s_kn_h
        new_v = b * s_vn_b + h * s_vn_h
        at_k = b * s_k_b + h * s_k_h + pos * s_k_t
        at_v = b * s_v_b + h * s_v_h + pos * s_v_t
        kn = tl.load(KN + new_k + dk, mask=dkm)  # [BDK]
        vn = tl.load(VN + new_v + dv, mask=dvm)  # [BDV]
        tl.store(K + at_k + dk, kn, mask=dkm)
        tl.store(V + at_v + dv, vn, mask=dvm)
        if SEPARATE_SLC:
            tl.store(KS + at_k + dk, tl.load(KSN + new_k + dk, mask=dkm), mask=dkm)
            tl.store(VS + at_v + dv, tl.load(VSN + new_v + dv, mask=dvm), mask=dvm)
        if SEPARATE_WIN:
            tl.store(KW + at_k + dk, tl.load(KWN + new_k + dk, mask=dkm), mask=dkm)
            tl.store(VW + at_v + dv, tl.load(VWN + new_v + dv, mask=dvm), mask=dvm)
        if MEAN_POOL:
            # The block's other l-1 tokens come from the cache, the new one from registers.
            kp = tl.load(K + b * s_k_b + h * s_k_h + prev[:, None] * s_k_t + dk[None, :],
                         mask=prev_ok[:, None] & dkm[None, :], other=0.0).to(tl.float32)  # [BL, BDK]
            vp = tl.load(V + b * s_v_b + h * s_v_h + prev[:, None] * s_v_t + dv[None, :],
                         mask=prev_ok[:, None] & dvm[None, :], other=0.0).to(tl.float32)  # [BL, BDV]
            kmean = (tl.sum(kp, axis=0) + kn.to(tl.float32)) / CMP_BLOCK
            vmean = (tl.sum(vp, axis=0) + vn.to(tl.float32)) / CMP_BLOCK
            tl.store(KC + b * s_kc_b + h * s_kc_h + slot * s_kc_t + dk, kmean.to(kn.dtype), mask=dkm)
            tl.store(VC + b * s_vc_b + h * s_vc_h + slot * s_vc_t + dv, vmean.to(vn.dtype), mask=dvm)
    if MEAN_POOL:
        tl.store(LEN + b, n_new)


@triton.jit
def _decode_program(LEN, H: tl.constexpr):
    """This program's (batch * KV head) bh, its slice s (program_id 1), batch b, KV head h and
    the sequence length."""
    bh = tl.program_id(0)
    s = tl.program_id(1)
    b = bh // H
    h = bh % H
    length = tl.load(LEN + b)
    return bh, s, b, h, length


@triton.jit
def _load_q(Q, b, h, s_q_b, s_q_h, G: tl.constexpr, GP: tl.constexpr, DK: tl.constexpr, BDK: tl.constexpr):
    """The G query rows of KV head h (padded to GP rows of zeros), [GP, BDK]."""
    rows = tl.arange(0, GP)
    dk = tl.arange(0, BDK)
    return tl.load(Q + b * s_q_b + (h * G + rows)[:, None] * s_q_h + dk[None, :],
                   mask=(rows < G)[:, None] & (dk < DK)[None, :], other=0.0)


@triton.jit
def _attend_tile(q, K, V, pos, ok, s_k_t, s_v_t, m_i, l_i, acc, qk_scale,
                 DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr,
                 PREC: tl.constexpr):
    """Online-softmax update of (m_i, l_i, acc) with the keys/values at token indices pos (where
    ok); K/V point at the (b, h) base. Returns the new state and the tile's p (base-2 probs
    relative to the new running max)."""
    dk = tl.arange(0, BDK)
    dv = tl.arange(0, BDV)
    k = tl.load(K + pos[:, None] * s_k_t + dk[None, :], mask=ok[:, None] & (dk < DK)[None, :], other=0.0)  # [BN, BDK]
    s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale  # [GP, BN]
    s = tl.where(ok[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1))  # [GP]
    m_ref = tl.where(m_new > float("-inf"), m_new, 0.0)  # [GP]; a tile with no key leaves the state as is
    p = tl.exp2(s - m_ref[:, None])  # [GP, BN]
    alpha = tl.exp2(m_i - m_ref)  # [GP]
    v = tl.load(V + pos[:, None] * s_v_t + dv[None, :], mask=ok[:, None] & (dv < DV)[None, :], other=0.0)  # [BN, BDV]
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)  # [GP, BDV]
    l_i = l_i * alpha + tl.sum(p, axis=1)  # [GP]
    return m_new, l_i, acc, p


@triton.jit
def _store_partial(WO, WM, WL, slot, m_i, l_i, acc, G: tl.constexpr, GP: tl.constexpr,
                   DV: tl.constexpr, BDV: tl.constexpr):
    """Write the partial (acc [GP, BDV] unnormalised, m_i, l_i [GP]) of the G rows into slot."""
    rows = tl.arange(0, GP)
    dv = tl.arange(0, BDV)
    row_ok = rows < G
    tl.store(WO + (slot * G + rows)[:, None] * DV + dv[None, :], acc,
             mask=row_ok[:, None] & (dv < DV)[None, :])
    tl.store(WM + slot * G + rows, m_i, mask=row_ok)
    tl.store(WL + slot * G + rows, l_i, mask=row_ok)


@triton.jit
def _decode_cmp_win_kernel(
    Q, KC, VC, KW, VW, LEN, WO, WM, WL, WIMP, WIMPM,
    s_q_b, s_q_h, s_kc_b, s_kc_h, s_kc_t, s_vc_b, s_vc_h, s_vc_t,
    s_kw_b, s_kw_h, s_kw_t, s_vw_b, s_vw_h, s_vw_t, qk_scale,
    H: tl.constexpr, G: tl.constexpr, GP: tl.constexpr,
    DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr,
    WINDOW: tl.constexpr, WCH: tl.constexpr, BW: tl.constexpr,
    CMP_BLOCK: tl.constexpr, CMP_STRIDE: tl.constexpr, SLC_BLOCK: tl.constexpr,
    N_SLOTS: tl.constexpr, P_CMP: tl.constexpr, SLC_PROGS: tl.constexpr, TILES: tl.constexpr, BN: tl.constexpr,
    N_TILES_CAP: tl.constexpr, BPT: tl.constexpr, NBT: tl.constexpr, BNBT: tl.constexpr, PREC: tl.constexpr,
):
    """Programs s < P_CMP: compressed attention over TILES tiles of BN compressed tokens, a partial
    output and each tile's block importance; the others: a WCH-token slice of the sliding window.
    Grid (B * H, P_CMP + P_WIN)."""
    bh, s, b, h, length = _decode_program(LEN, H)
    if s >= P_CMP:  # a slice of the sliding window, into slot P_CMP + SLC_PROGS + (s - P_CMP)
        _window_slice(Q, KW, VW, WO, WM, WL, b, h, bh, s - P_CMP, length, s_q_b, s_q_h,
                      s_kw_b, s_kw_h, s_kw_t, s_vw_b, s_vw_h, s_vw_t, qk_scale, G, GP, DK, DV, BDK, BDV,
                      WINDOW, WCH, BW, N_SLOTS, P_CMP + SLC_PROGS, PREC)
    else:
        n_cmp = tl.where(length >= CMP_BLOCK, (length - CMP_BLOCK) // CMP_STRIDE + 1, 0)
        n_tiles = tl.cdiv(n_cmp, BN)
        q = _load_q(Q, b, h, s_q_b, s_q_h, G, GP, DK, BDK)  # [GP, BDK]
        rows = tl.arange(0, GP)
        row_ok = rows < G  # [GP]
        cols = tl.arange(0, BNBT)
        m_i, l_i, acc = softmax_state(GP, BDV)  # [GP], [GP], [GP, BDV]
        kc = KC + b * s_kc_b + h * s_kc_h
        vc = VC + b * s_vc_b + h * s_vc_h
        # Overlap (in units of d) of a tile's compressed token r with the tile's selection block c:
        # the same for every tile, as a tile starts on a selection-block boundary (BN*d = BPT*l').
        tok_lo = tl.arange(0, BN) * CMP_STRIDE
        blk_lo = cols * SLC_BLOCK
        ov = (tl.minimum(tok_lo[:, None] + CMP_BLOCK, blk_lo[None, :] + SLC_BLOCK)
              - tl.maximum(tok_lo[:, None], blk_lo[None, :]))  # [BN, BNBT]
        w = tl.where((ov > 0) & (cols < NBT)[None, :], ov.to(tl.float32) / CMP_STRIDE, 0.0)  # [BN, BNBT]
        t_lo = s * TILES
        t_hi = tl.minimum(t_lo + TILES, n_tiles)
        for tile in range(t_lo, t_hi):
            i = tile * BN + tl.arange(0, BN)  # [BN]
            m_i, l_i, acc, p = _attend_tile(q, kc, vc, i, i < n_cmp, s_kc_t, s_vc_t, m_i, l_i, acc, qk_scale,
                                            DK, DV, BDK, BDV, PREC)
            imp = tl.dot(p, w, input_precision="tf32x3")  # [GP, BNBT]; w holds small integers: exact in tf32
            at = (bh * N_TILES_CAP + tile) * G
            tl.store(WIMP + (at + rows)[:, None] * NBT + cols[None, :], imp,
                     mask=row_ok[:, None] & (cols < NBT)[None, :])
            tl.store(WIMPM + at + rows, m_i, mask=row_ok)
        _store_partial(WO, WM, WL, bh * N_SLOTS + s, m_i, l_i, acc, G, GP, DV, BDV)


@triton.jit
def _merge(m, l, o, inb):
    """Softmax-merge the partials flagged inb: normalised output [BDV] (zeros if no keys)."""
    m = tl.where(inb, m, float("-inf"))
    m_max = tl.max(m, axis=0)
    w = tl.where(inb, tl.exp2(m - tl.where(m_max > float("-inf"), m_max, 0.0)), 0.0)
    denom = tl.sum(w * l, axis=0)
    return tl.sum(w[:, None] * o, axis=0) / tl.where(denom > 0, denom, 1.0)


@triton.jit
def _decode_select_kernel(
    LEN, WO, WM, WL, WIMP, WIMPM, CAND, OC,
    H: tl.constexpr, G: tl.constexpr, GP: tl.constexpr, DV: tl.constexpr, BDV: tl.constexpr,
    CMP_BLOCK: tl.constexpr, CMP_STRIDE: tl.constexpr, SLC_BLOCK: tl.constexpr,
    N_SLOTS: tl.constexpr, P_CMP: tl.constexpr, BP_CMP: tl.constexpr,
    BN: tl.constexpr, N_TILES_CAP: tl.constexpr, BPT: tl.constexpr, NBT: tl.constexpr,
    BB: tl.constexpr, P_SEL: tl.constexpr, N_SEL: tl.constexpr, KP: tl.constexpr, MERGE_CMP: tl.constexpr,
):
    """Importance and local top-n of BB selection blocks of one KV head (and, with MERGE_CMP, the
    compressed output of query heads s, s + P_SEL, ...). Grid (B * H, P_SEL)."""
    bh = tl.program_id(0)
    s = tl.program_id(1)
    b = bh // H
    length = tl.load(LEN + b)
    cur = (length - 1) // SLC_BLOCK
    n_cmp = tl.where(length >= CMP_BLOCK, (length - CMP_BLOCK) // CMP_STRIDE + 1, 0)
    n_tiles = tl.cdiv(n_cmp, BN)
    rows = tl.arange(0, GP)
    row_ok = rows < G

    # Global base-2 softmax statistics of the compressed scores, per query head.
    ps = tl.arange(0, BP_CMP)
    st = (bh * N_SLOTS + ps)[:, None] * G + rows[None, :]
    st_ok = (ps < P_CMP)[:, None] & row_ok[None, :]
    mp = tl.load(WM + st, mask=st_ok, other=float("-inf"))  # [BP_CMP, GP]
    lp = tl.load(WL + st, mask=st_ok, other=0.0)  # [BP_CMP, GP]
    m_all = tl.max(mp, axis=0)  # [GP]
    m_all = tl.where(m_all > float("-inf"), m_all, 0.0)
    l_all = tl.sum(lp * tl.exp2(mp - m_all[None, :]), axis=0)  # [GP]
    inv_l = tl.where(l_all > 0, 1.0 / tl.where(l_all > 0, l_all, 1.0), 0.0)  # [GP]

    # With MERGE_CMP, the compressed branch's output of rows s, s + P_SEL, ...: its partials
    # merged and normalised (worth it when P_SEL programs share the G rows; else _decode_combine_kernel
    # merges them).
    dv = tl.arange(0, BDV)
    for r in range(s, G if MERGE_CMP else 0, P_SEL):
        at = (bh * N_SLOTS + ps) * G + r
        m_r = tl.load(WM + at, mask=ps < P_CMP, other=float("-inf"))
        l_r = tl.load(WL + at, mask=ps < P_CMP, other=0.0)
        o_r = tl.load(WO + at[:, None] * DV + dv[None, :], mask=(ps < P_CMP)[:, None] & (dv < DV)[None, :],
                      other=0.0)  # [BP_CMP, BDV]
        tl.store(OC + (bh * G + r) * DV + dv, _merge(m_r, l_r, o_r, ps < P_CMP), mask=dv < DV)

    # Importance of blocks j: each tile's partial, rescaled to the global softmax, over heads;
    # a block also collects the spill of the tile before it (compressed blocks crossing its start).
    j = s * BB + tl.arange(0, BB)  # [BB]
    tile = j // BPT
    r = j % BPT
    at = (bh * N_TILES_CAP + tile)[:, None] * G + rows[None, :]  # [BB, GP]
    ok = (tile < n_tiles)[:, None] & row_ok[None, :]  # [BB, GP]
    scale = tl.exp2(tl.load(WIMPM + at, mask=ok, other=float("-inf")) - m_all[None, :]) * inv_l[None, :]  # [BB, GP]
    score = tl.sum(tl.load(WIMP + at * NBT + r[:, None], mask=ok, other=0.0) * scale, axis=1)  # [BB]
    if NBT > BPT:
        at = at - G
        ok = ((tile >= 1) & (tile - 1 < n_tiles) & (r < NBT - BPT))[:, None] & row_ok[None, :]
        scale = tl.exp2(tl.load(WIMPM + at, mask=ok, other=float("-inf")) - m_all[None, :]) * inv_l[None, :]
        score += tl.sum(tl.load(WIMP + at * NBT + BPT + r[:, None], mask=ok, other=0.0) * scale, axis=1)

    started = j <= cur
    forced = started & ((j == 0) | (j == cur) | (j == cur - 1))
    key = tl.where(forced, float("inf"), tl.where(started, score, float("-inf")))
    top = tl.topk(_rank_key(key, j), KP)  # [KP]
    k = tl.arange(0, KP)
    tl.store(CAND + (bh * P_SEL + s) * N_SEL + k, top, mask=k < N_SEL)


@triton.jit
def _rank_key(key, j):
    """int64 keys ordering blocks by score (descending), ties to the lower index j: the score's
    float bits (scores are >= 0 or +inf; -inf, a block not started, maps below them) over
    2**31 - 1 - j. Negative when the block is not started."""
    bits = tl.where(key > float("-inf"), (key + 0.0).to(tl.int32, bitcast=True), -1)
    return bits.to(tl.int64) * 4294967296 + (2147483647 - j).to(tl.int64)


@triton.jit
def _window_slice(Q, KW, VW, WO, WM, WL, b, h, bh, w, length, s_q_b, s_q_h,
                  s_kw_b, s_kw_h, s_kw_t, s_vw_b, s_vw_h, s_vw_t, qk_scale,
                  G: tl.constexpr, GP: tl.constexpr, DK: tl.constexpr, DV: tl.constexpr,
                  BDK: tl.constexpr, BDV: tl.constexpr, WINDOW: tl.constexpr, WCH: tl.constexpr,
                  BW: tl.constexpr, N_SLOTS: tl.constexpr, FIRST_SLOT: tl.constexpr, PREC: tl.constexpr):
    """Slice w (WCH tokens) of the sliding window: a partial output into slot FIRST_SLOT + w."""
    q = _load_q(Q, b, h, s_q_b, s_q_h, G, GP, DK, BDK)  # [GP, BDK]
    m_i, l_i, acc = softmax_state(GP, BDV)  # [GP], [GP], [GP, BDV]
    kw = KW + b * s_kw_b + h * s_kw_h
    vw = VW + b * s_vw_b + h * s_vw_h
    start = tl.maximum(length - WINDOW, 0) + w * WCH
    for off in range(0, WCH, BW):
        pos = start + off + tl.arange(0, BW)  # [BW]
        m_i, l_i, acc, p = _attend_tile(q, kw, vw, pos, pos < length, s_kw_t, s_vw_t, m_i, l_i, acc, qk_scale,
                                        DK, DV, BDK, BDV, PREC)
    _store_partial(WO, WM, WL, bh * N_SLOTS + FIRST_SLOT + w, m_i, l_i, acc, G, GP, DV, BDV)


@triton.jit
def _decode_slc_kernel(
    Q, KS, VS, LEN, CAND, WO, WM, WL,
    s_q_b, s_q_h, s_k_b, s_k_h, s_k_t, s_v_b, s_v_h, s_v_t, qk_scale,
    H: tl.constexpr, G: tl.constexpr, GP: tl.constexpr,
    DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr,
    SLC_BLOCK: tl.constexpr, N_SLOTS: tl.constexpr, P_CMP: tl.constexpr, SB: tl.constexpr, N_SEL: tl.constexpr,
    KP: tl.constexpr, N_CAND: tl.constexpr, BCAND: tl.constexpr, BS: tl.constexpr, PREC: tl.constexpr,
):
    """Program s: the blocks of global rank s*SB .. s*SB+SB-1 of the merged local top-n lists,
    attended in tiles of BS keys, a partial output. Grid (B * H, ceil(n / SB))."""
    bh, s, b, h, length = _decode_program(LEN, H)
    q = _load_q(Q, b, h, s_q_b, s_q_h, G, GP, DK, BDK)  # [GP, BDK]
    m_i, l_i, acc = softmax_state(GP, BDV)  # [GP], [GP], [GP, BDV]
    # This program's ranks s*SB .. s*SB+SB-1 of the merged local top-n lists.
    c = tl.arange(0, BCAND)
    top = tl.topk(tl.load(CAND + bh * N_CAND + c, mask=c < N_CAND, other=-(1 << 62)), KP)  # [KP]
    k = tl.arange(0, KP)
    ks = KS + b * s_k_b + h * s_k_h
    vs = VS + b * s_v_b + h * s_v_h
    for u in tl.static_range(SB):
        ck = tl.max(tl.where((k == s * SB + u) & (k < N_SEL), top, -(1 << 62)), axis=0)
        if ck >= 0:  # a started block
            blk = 2147483647 - (ck & 4294967295).to(tl.int32)
            for off in range(0, SLC_BLOCK, BS):
                r = off + tl.arange(0, BS)
                pos = blk * SLC_BLOCK + r  # [BS]
                ok = (r < SLC_BLOCK) & (pos < length)
                m_i, l_i, acc, p = _attend_tile(q, ks, vs, pos, ok, s_k_t, s_v_t, m_i, l_i, acc, qk_scale,
                                                DK, DV, BDK, BDV, PREC)
    _store_partial(WO, WM, WL, bh * N_SLOTS + P_CMP + s, m_i, l_i, acc, G, GP, DV, BDV)


@triton.jit
def _decode_combine_kernel(
    OC, WO, WM, WL, GC, GS, GW, O,
    s_g_b, s_g_h, s_o_b, s_o_h,
    HQ: tl.constexpr, H: tl.constexpr, G: tl.constexpr, DV: tl.constexpr, BDV: tl.constexpr,
    N_SLOTS: tl.constexpr, BSLOTS: tl.constexpr, P_CMP: tl.constexpr, SLC_PROGS: tl.constexpr,
    MERGE_CMP: tl.constexpr,
):
    """The output row of one (batch, query head): each branch's partials merged, gated and summed.
    Grid (B * HQ,)."""
    pid = tl.program_id(0)
    b = pid // HQ
    hq = pid % HQ
    bh = b * H + hq // G
    g = hq % G
    first: tl.constexpr = P_CMP if MERGE_CMP else 0
    sl = first + tl.arange(0, BSLOTS)  # the partials to merge here
    dv = tl.arange(0, BDV)
    ok = sl < N_SLOTS
    at = (bh * N_SLOTS + sl) * G + g
    m = tl.load(WM + at, mask=ok, other=float("-inf"))  # [BSLOTS]
    l = tl.load(WL + at, mask=ok, other=0.0)  # [BSLOTS]
    o = tl.load(WO + at[:, None] * DV + dv[None, :], mask=ok[:, None] & (dv < DV)[None, :], other=0.0)  # [BSLOTS, BDV]
    if MERGE_CMP:
        o_cmp = tl.load(OC + (bh * G + g) * DV + dv, mask=dv < DV, other=0.0)  # [BDV]
    else:
        o_cmp = _merge(m, l, o, sl < P_CMP)
    o_slc = _merge(m, l, o, (sl >= P_CMP) & (sl < P_CMP + SLC_PROGS))
    o_win = _merge(m, l, o, (sl >= P_CMP + SLC_PROGS) & ok)
    gate = b * s_g_b + hq * s_g_h
    out = (tl.load(GC + gate).to(tl.float32) * o_cmp + tl.load(GS + gate).to(tl.float32) * o_slc
           + tl.load(GW + gate).to(tl.float32) * o_win)
    tl.store(O + b * s_o_b + hq * s_o_h + dv, out.to(O.dtype.element_ty), mask=dv < DV)
