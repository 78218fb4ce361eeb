"""@triton.jit tile helpers shared by the attention kernels (inlined where they are called).

Names in the shape comments: BM query rows of a program's tile (tokens x query heads, padded),
BN keys of a key tile, BDK / BDV the head dims padded to a power of two. Rows of q, o, dO, lse
and delta are flat indices into token-major [B*T*HQ, d] tensors; key rows into [B*NK*H, d] for
the gradient accumulators. Keys and values are read through strides (a token stride s_t and a
head stride s_h; the batch stride is NK * s_t), so slices of a wider tensor, like the model's
per-branch k/v, are read in place. All softmax arithmetic is
base 2 (scores times scale * log2 e).
"""

import triton
import triton.language as tl


@triton.jit
def load_tile(PTR, off, mask, cols, D: tl.constexpr):
    """The tile of rows starting at element offsets off [*] and columns cols, zeros outside mask and D."""
    return tl.load(PTR + off[:, None] + cols[None, :], mask=mask[:, None] & (cols[None, :] < D), other=0.0)


@triton.jit
def load_rows(PTR, row, rmask, cols, D: tl.constexpr):
    """The tile PTR[row, cols] of a row-major [*, D] tensor, zeros outside rmask and D."""
    return load_tile(PTR, row * D, rmask, cols, D)


@triton.jit
def kv_offsets(b, kk, NK, h, s_t, s_h):
    """Element offsets [BN] of keys kk (of NK per sequence) of batch b and KV head h, in a
    [B, NK, H, d] tensor with token stride s_t and head stride s_h (constexprs, s_h dividing s_t;
    written as ((token * s_t/s_h) + h) * s_h, the contiguous case's ((token * H) + h) * d, which
    compiles to the same registers as before strides were taken)."""
    return ((b * NK + kk).to(tl.int64) * (s_t // s_h) + h) * s_h


@triton.jit
def softmax_state(BM: tl.constexpr, BDV: tl.constexpr):
    """An empty online-softmax state: running max m [BM], sum l [BM], output acc [BM, BDV]."""
    m_i = tl.full([BM], float("-inf"), tl.float32)  # [BM]
    l_i = tl.zeros([BM], tl.float32)  # [BM]
    acc = tl.zeros([BM, BDV], tl.float32)  # [BM, BDV]
    return m_i, l_i, acc


@triton.jit
def softmax_update(s, vis, V, voff, kmask, offv, m_i, l_i, acc, DV: tl.constexpr, PREC: tl.constexpr):
    """Online-softmax update of (m_i, l_i, acc) with one key tile's scores s [BM, BN] (-inf
    outside vis) and its values at element offsets voff (loaded where kmask). A row with no key
    so far keeps m = -inf and l = 0."""
    return softmax_update_values(s, vis, load_tile(V, voff, kmask, offv, DV), m_i, l_i, acc, PREC)


@triton.jit
def softmax_update_values(s, vis, v, m_i, l_i, acc, PREC: tl.constexpr):
    """softmax_update with the key tile's values v [BN, BDV] already loaded."""
    s = tl.where(vis, s, float("-inf"))  # [BM, BN]
    m_new = tl.maximum(m_i, tl.max(s, 1))  # [BM]
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # [BM]
    alpha = tl.exp2(m_i - m_safe)  # [BM]
    p = tl.exp2(s - m_safe[:, None])  # [BM, BN]
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)  # [BM, BDV]
    return m_new, l_i, acc


@triton.jit
def softmax_result(m_i, l_i, acc):
    """The normalised output [BM, BDV] fp32 and base-2 lse [BM] (+inf for a row with no key)."""
    has = l_i > 0  # [BM]
    o = acc / tl.where(has, l_i, 1.0)[:, None]  # [BM, BDV]
    lse = tl.where(has, m_i + tl.log2(tl.where(has, l_i, 1.0)), float("inf"))  # [BM]
    return o, lse


@triton.jit
def store_rows(PTR, row, rmask, cols, x, D: tl.constexpr):
    """PTR[row, cols] = x [BM, BD] in PTR's dtype, for a row-major [*, D] tensor, inside rmask and D."""
    tl.store(PTR + row[:, None] * D + cols[None, :], x.to(PTR.dtype.element_ty), mask=rmask[:, None] & (cols[None, :] < D))


@triton.jit
def store_softmax_result(O, LSE, row, rmask, offv, m_i, l_i, acc, DV: tl.constexpr):
    """Write the normalised output O[row] and base-2 LSE[row] (+inf for a row with no key)."""
    o, lse = softmax_result(m_i, l_i, acc)
    store_rows(O, row, rmask, offv, o, DV)
    tl.store(LSE + row, lse, mask=rmask)


@triton.jit
def load_grad_rows(Q, DO, LSE, DELTA, row, rmask, offk, offv, DK: tl.constexpr, DV: tl.constexpr):
    """What a backward tile needs of its query rows: q [BM, BDK], the branch's output gradient
    gate * dO [BM, BDV] (written by gate_grads, so it goes from memory to the dots unchanged),
    lse [BM] (+inf outside rmask) and delta [BM]."""
    q = load_rows(Q, row, rmask, offk, DK)  # [BM, BDK]
    do = load_rows(DO, row, rmask, offv, DV)  # [BM, BDV]
    lse = tl.load(LSE + row, mask=rmask, other=float("inf"))  # [BM]
    delta = tl.load(DELTA + row, mask=rmask, other=0.0)  # [BM]
    return q, do, lse, delta


@triton.jit
def dq_update(s, vis, k, v, do, lse, delta, dq, PREC: tl.constexpr):
    """dq [BM, BDK] (unscaled) += ds k for one key tile: k [BN, BDK], v [BN, BDV] and the
    scores s [BM, BN]; probabilities outside vis are 0."""
    p = tl.where(vis, tl.exp2(s - lse[:, None]), 0.0)  # [BM, BN]
    dp = tl.dot(do, tl.trans(v), input_precision=PREC)  # [BM, BN]
    ds = p * (dp - delta[:, None])  # [BM, BN]
    dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)  # [BM, BDK]
    return dq


@triton.jit
def store_dq(DQ_IN, DQ_OUT, row, rmask, offk, dq, sm_scale, DK: tl.constexpr):
    """DQ_OUT[row] = DQ_IN[row] + dq * sm_scale, in DQ_OUT's dtype (the fp32 accumulator, or q's
    dtype for the last branch: no separate cast). DQ_IN None (the first branch): dq * sm_scale
    alone, so the accumulator needs no zero fill and is not read."""
    mask = rmask[:, None] & (offk[None, :] < DK)  # [BM, BDK]
    offs = row[:, None] * DK + offk[None, :]  # [BM, BDK]
    dq = dq * sm_scale  # [BM, BDK]
    if DQ_IN is not None:
        dq += tl.load(DQ_IN + offs, mask=mask, other=0.0)
    tl.store(DQ_OUT + offs, dq.to(DQ_OUT.dtype.element_ty), mask=mask)


@triton.jit
def key_grad_tile(K, V, b, h, kk, NK, s_k_t, s_k_h, s_v_t, s_v_h, H: tl.constexpr, BN: tl.constexpr,
                  DK: tl.constexpr, DV: tl.constexpr, BDK: tl.constexpr, BDV: tl.constexpr):
    """A tile of keys kk [BN] (of NK per batch and KV head) that a dK/dV program owns: key rows
    [BN] of the contiguous accumulators, mask [BN], column ranges, k [BN, BDK], v [BN, BDV] and
    zero fp32 dk, dv."""
    kmask = kk < NK  # [BN]
    krow = (b * NK + kk).to(tl.int64) * H + h  # [BN]
    offk = tl.arange(0, BDK)
    offv = tl.arange(0, BDV)
    k = load_tile(K, kv_offsets(b, kk, NK, h, s_k_t, s_k_h), kmask, offk, DK)  # [BN, BDK]
    v = load_tile(V, kv_offsets(b, kk, NK, h, s_v_t, s_v_h), kmask, offv, DV)  # [BN, BDV]
    dk = tl.zeros([BN, BDK], tl.float32)  # [BN, BDK]
    dv = tl.zeros([BN, BDV], tl.float32)  # [BN, BDV]
    return krow, kmask, offk, offv, k, v, dk, dv


@triton.jit
def dkv_update(st, vis, v, q, do, lse, delta, dk, dv, PREC: tl.constexpr):
    """(dk [BN, BDK] unscaled, dv [BN, BDV]) += one query tile's contribution, from the
    transposed scores st = k q^T [BN, BM]; probabilities outside vis [BN, BM] are 0."""
    pt = tl.where(vis, tl.exp2(st - lse[None, :]), 0.0)  # [BN, BM]
    dv += tl.dot(pt.to(q.dtype), do, input_precision=PREC)  # [BN, BDV]
    dpt = tl.dot(v, tl.trans(do), input_precision=PREC)  # [BN, BM]
    dst = pt * (dpt - delta[None, :])  # [BN, BM]
    dk += tl.dot(dst.to(q.dtype), q, input_precision=PREC)  # [BN, BDK]
    return dk, dv


@triton.jit
def add_key_grads(DK_ACC, DV_ACC, krow, kmask, offk, offv, dk, dv, sm_scale, DK: tl.constexpr, DV: tl.constexpr):
    """DK_ACC[krow] += dk * sm_scale, DV_ACC[krow] += dv (fp32 atomic adds where kmask)."""
    tl.atomic_add(DK_ACC + krow[:, None] * DK + offk[None, :], dk * sm_scale, mask=kmask[:, None] & (offk[None, :] < DK))
    tl.atomic_add(DV_ACC + krow[:, None] * DV + offv[None, :], dv, mask=kmask[:, None] & (offv[None, :] < DV))
