"""The gated sum of the three NSA branches in Triton, and its backward preparation.

Forward: out = g_cmp * o_cmp + g_slc * o_slc + g_win * o_win per (token, query head) row.
Backward: the gate gradients dg_b = rowsum(dO * o_b) and each branch's softmax correction
delta_b = rowsum(dO_b * o_b) = g_b * dg_b (the branch's output gradient is dO_b = g_b * dO).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_common import new_output, next_pow2

ROWS = 32  # rows per program


@triton.jit
def _combine_kernel(OC, OS, OW, GC, GS, GW, OUT, NROWS, DV: tl.constexpr, BDV: tl.constexpr, BR: tl.constexpr):
    rows = tl.program_id(0) * BR + tl.arange(0, BR)
    rmask = rows < NROWS
    rows = rows.to(tl.int64)
    cols = tl.arange(0, BDV)
    mask = rmask[:, None] & (cols[None, :] < DV)
    offs = rows[:, None] * DV + cols[None, :]
    gc = tl.load(GC + rows, mask=rmask, other=0.0).to(tl.float32)
    gs = tl.load(GS + rows, mask=rmask, other=0.0).to(tl.float32)
    gw = tl.load(GW + rows, mask=rmask, other=0.0).to(tl.float32)
    out = gc[:, None] * tl.load(OC + offs, mask=mask, other=0.0).to(tl.float32)
    out += gs[:, None] * tl.load(OS + offs, mask=mask, other=0.0).to(tl.float32)
    out += gw[:, None] * tl.load(OW + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(OUT + offs, out.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _gate_grad_kernel(
    DO, OC, OS, OW, GC, GS, GW, DGC, DGS, DGW, DELTA, NROWS,
    DV: tl.constexpr, BDV: tl.constexpr, BR: tl.constexpr,
):
    rows = tl.program_id(0) * BR + tl.arange(0, BR)
    rmask = rows < NROWS
    rows = rows.to(tl.int64)
    cols = tl.arange(0, BDV)
    mask = rmask[:, None] & (cols[None, :] < DV)
    offs = rows[:, None] * DV + cols[None, :]
    do = tl.load(DO + offs, mask=mask, other=0.0).to(tl.float32)
    dgc = tl.sum(do * tl.load(OC + offs, mask=mask, other=0.0).to(tl.float32), 1)
    dgs = tl.sum(do * tl.load(OS + offs, mask=mask, other=0.0).to(tl.float32), 1)
    dgw = tl.sum(do * tl.load(OW + offs, mask=mask, other=0.0).to(tl.float32), 1)
    tl.store(DGC + rows, dgc.to(DGC.dtype.element_ty), mask=rmask)
    tl.store(DGS + rows, dgs.to(DGS.dtype.element_ty), mask=rmask)
    tl.store(DGW + rows, dgw.to(DGW.dtype.element_ty), mask=rmask)
    gc = tl.load(GC + rows, mask=rmask, other=0.0).to(tl.float32)
    gs = tl.load(GS + rows, mask=rmask, other=0.0).to(tl.float32)
    gw = tl.load(GW + rows, mask=rmask, other=0.0).to(tl.float32)
    tl.store(DELTA + rows, gc * dgc, mask=rmask)
    tl.store(DELTA + NROWS + rows, gs * dgs, mask=rmask)
    tl.store(DELTA + 2 * NROWS + rows, gw * dgw, mask=rmask)


def gated_sum(o_cmp, o_slc, o_win, g_cmp, g_slc, g_win) -> torch.Tensor:
    """g_cmp * o_cmp + g_slc * o_slc + g_win * o_win, [B,T,HQ,dv] in the outputs' dtype."""
    dv = o_cmp.shape[-1]
    n_rows = o_cmp.numel() // dv
    out = new_output(o_cmp.shape, o_cmp.dtype, o_cmp.device)
    _combine_kernel[(triton.cdiv(n_rows, ROWS),)](
        o_cmp, o_slc, o_win, g_cmp, g_slc, g_win, out, n_rows, dv, next_pow2(dv), ROWS, num_warps=4,
    )
    return out


def gate_grads(do, o_cmp, o_slc, o_win, g_cmp, g_slc, g_win):
    """Gate gradients (dg_cmp, dg_slc, dg_win) [B,T,HQ] and deltas [3,B,T,HQ] fp32."""
    dv = do.shape[-1]
    n_rows = do.numel() // dv
    dgs = [new_output(g_cmp.shape, g_cmp.dtype, do.device) for _ in range(3)]
    delta = new_output((3, *g_cmp.shape), torch.float32, do.device)
    _gate_grad_kernel[(triton.cdiv(n_rows, ROWS),)](
        do, o_cmp, o_slc, o_win, g_cmp, g_slc, g_win, *dgs, delta, n_rows, dv, next_pow2(dv), ROWS, num_warps=4,
    )
    return dgs, delta
