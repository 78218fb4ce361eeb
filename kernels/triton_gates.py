"""The gated sum of the three NSA branches in Triton, and its backward preparation.

Forward: out = g_cmp * o_cmp + g_slc * o_slc + g_win * o_win per (token, query head) row, stored
by the window kernel's epilogue (store_gated_sum; the window branch runs last).
Backward: the gate gradients dg_b = rowsum(dO * o_b), each branch's output gradient
dO_b = g_b * dO (in dO's dtype, read unchanged by the branch's dq and dk/dv kernels) and its
softmax correction delta_b = rowsum(dO_b * o_b) = g_b * dg_b.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_common import new_output, next_pow2

ROWS = 32  # rows per program


@triton.jit
def _gate_rows(NROWS, DV: tl.constexpr, BDV: tl.constexpr, BR: tl.constexpr):
    """This program's BR rows of [NROWS, DV]: row index [BR] (int64), row mask [BR], tile mask and
    offsets [BR, BDV]."""
    rows = tl.program_id(0) * BR + tl.arange(0, BR)
    rmask = rows < NROWS  # [BR]
    rows = rows.to(tl.int64)  # [BR]
    cols = tl.arange(0, BDV)
    mask = rmask[:, None] & (cols[None, :] < DV)  # [BR, BDV]
    offs = rows[:, None] * DV + cols[None, :]  # [BR, BDV]
    return rows, rmask, mask, offs


@triton.jit
def _gate_offsets(row, HQ: tl.constexpr, s_g_t):
    """Element offsets of flat rows row = token * HQ + head in a [B, T, HQ] gate with token stride s_g_t."""
    return row // HQ * s_g_t + row % HQ


@triton.jit
def _load_gates(GC, GS, GW, rows, rmask, s_g_t, HQ: tl.constexpr):
    """The three gates (equal strides, token stride s_g_t) of the rows, fp32 [BR] each."""
    goff = _gate_offsets(rows, HQ, s_g_t)  # [BR]
    gc = tl.load(GC + goff, mask=rmask, other=0.0).to(tl.float32)  # [BR]
    gs = tl.load(GS + goff, mask=rmask, other=0.0).to(tl.float32)  # [BR]
    gw = tl.load(GW + goff, mask=rmask, other=0.0).to(tl.float32)  # [BR]
    return gc, gs, gw


@triton.jit
def store_gated_sum(OUT, OC, OS, GC, GS, GW, row, rmask, offv, o_win, s_g_t, HQ: tl.constexpr, DV: tl.constexpr):
    """OUT[row] = GC * OC[row] + GS * OS[row] + GW * o_win for flat rows row (token * HQ + head)
    [BM] of a tile whose window output o_win [BM, BDV] (fp32) is still in registers."""
    gc, gs, gw = _load_gates(GC, GS, GW, row, rmask, s_g_t, HQ)  # [BM] each
    mask = rmask[:, None] & (offv[None, :] < DV)  # [BM, BDV]
    offs = row[:, None] * DV + offv[None, :]  # [BM, BDV]
    out = gw[:, None] * o_win  # [BM, BDV]
    out += gc[:, None] * tl.load(OC + offs, mask=mask, other=0.0).to(tl.float32)
    out += gs[:, None] * tl.load(OS + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(OUT + offs, out.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _gate_grad_kernel(
    DO, OC, OS, OW, GC, GS, GW, DGC, DGS, DGW, DELTA, DOB, NROWS, s_g_t: tl.constexpr,
    HQ: tl.constexpr, DV: tl.constexpr, BDV: tl.constexpr, BR: tl.constexpr,
):
    """Gate gradients DG* = rowsum(DO * O*), deltas DELTA[branch] = G* * DG* and the branches'
    output gradients DOB[branch] = G* * DO of BR rows. Grid (cdiv(NROWS, BR),)."""
    rows, rmask, mask, offs = _gate_rows(NROWS, DV, BDV, BR)
    do = tl.load(DO + offs, mask=mask, other=0.0).to(tl.float32)  # [BR, BDV]
    dgc = tl.sum(do * tl.load(OC + offs, mask=mask, other=0.0).to(tl.float32), 1)  # [BR]
    dgs = tl.sum(do * tl.load(OS + offs, mask=mask, other=0.0).to(tl.float32), 1)  # [BR]
    dgw = tl.sum(do * tl.load(OW + offs, mask=mask, other=0.0).to(tl.float32), 1)  # [BR]
    tl.store(DGC + rows, dgc.to(DGC.dtype.element_ty), mask=rmask)
    tl.store(DGS + rows, dgs.to(DGS.dtype.element_ty), mask=rmask)
    tl.store(DGW + rows, dgw.to(DGW.dtype.element_ty), mask=rmask)
    gc, gs, gw = _load_gates(GC, GS, GW, rows, rmask, s_g_t, HQ)
    tl.store(DELTA + rows, gc * dgc, mask=rmask)
    tl.store(DELTA + NROWS + rows, gs * dgs, mask=rmask)
    tl.store(DELTA + 2 * NROWS + rows, gw * dgw, mask=rmask)
    branch = NROWS.to(tl.int64) * DV  # elements of one branch's output gradient
    tl.store(DOB + offs, (do * gc[:, None]).to(DOB.dtype.element_ty), mask=mask)
    tl.store(DOB + branch + offs, (do * gs[:, None]).to(DOB.dtype.element_ty), mask=mask)
    tl.store(DOB + 2 * branch + offs, (do * gw[:, None]).to(DOB.dtype.element_ty), mask=mask)


def gate_grads(do, o_cmp, o_slc, o_win, g_cmp, g_slc, g_win):
    """Gate gradients (dg_cmp, dg_slc, dg_win) [B,T,HQ], deltas [3,B,T,HQ] fp32 and the branches'
    output gradients g_b * do [3,B,T,HQ,dv] (dtype of do)."""
    dv = do.shape[-1]
    n_rows = do.numel() // dv
    dgs = [new_output(g_cmp.shape, g_cmp.dtype, do.device) for _ in range(3)]
    delta = new_output((3, *g_cmp.shape), torch.float32, do.device)
    do_branch = new_output((3, *do.shape), do.dtype, do.device)
    _gate_grad_kernel[(triton.cdiv(n_rows, ROWS),)](
        DO=do, OC=o_cmp, OS=o_slc, OW=o_win, GC=g_cmp, GS=g_slc, GW=g_win, DGC=dgs[0], DGS=dgs[1], DGW=dgs[2],
        DELTA=delta, DOB=do_branch, NROWS=n_rows, s_g_t=g_cmp.stride(1), HQ=g_cmp.shape[2], DV=dv,
        BDV=next_pow2(dv), BR=ROWS, num_warps=4,
    )
    return dgs, delta, do_branch
