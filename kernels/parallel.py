"""Bundled Triton NSA: nsa_attention (autograd Function) and per-stage callables for timing.

Forward stages (each a Triton launch, in this order):
  cmp_attn  compressed attention -> o_cmp and its base-2 log-sum-exp (triton_band.py)
  select    importance from p_cmp (recomputed with that lse) + top-n -> indices (triton_select.py)
  slc_attn  attention over the selected blocks -> o_slc (triton_sparse.py)
  win_gated sliding-window attention -> o_win, and in its epilogue the gated sum of the three
            branch outputs -> out (triton_band.py, triton_gates.py); without gradients to keep
            (no_grad, or no input requiring one) o_win and its lse are not stored
Backward: gate gradients, deltas and each branch's output gradient, then each branch's dq
(accumulated into one fp32 dq) and dk/dv (fp32 buffers shared where branches share k/v),
reusing the forward's indices.
"""

from __future__ import annotations

import math
import os
from typing import Callable

import torch

from .config import NSAConfig
from .inputs import check_nsa_inputs
from .triton_band import Band, band_attn_bwd_dkv, band_attn_bwd_dq, band_attn_fwd, band_attn_fwd_gated
from .triton_common import new_output, token_major
from .triton_gates import gate_grads
from .triton_select import CHUNK_BLOCKS, select_blocks
from .triton_sparse import block_token_index, slc_attn_bwd_dkv, slc_attn_bwd_dq, slc_attn_fwd

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
SUPPORTED_GROUPS = (1, 2, 4, 8, 16)
SUPPORTED_SLC_BLOCKS = (16, 32, 64, 128)


def check_supported(q, k, v, config: NSAConfig) -> None:
    """Raise ValueError naming what the Triton kernels support if these inputs are outside it."""
    if q.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"Triton NSA supports float16, bfloat16 (and float32), got {q.dtype}")
    if q.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(f"Triton NSA needs CUDA tensors (or TRITON_INTERPRET=1 on CPU), got {q.device}")
    group = q.shape[2] // k.shape[2]
    if group not in SUPPORTED_GROUPS:
        raise ValueError(f"Triton NSA supports query heads per KV head in {SUPPORTED_GROUPS}, got {group}")
    for name, d in (("dk", q.shape[3]), ("dv", v.shape[3])):
        if d % 16 or not 16 <= d <= 256:
            raise ValueError(f"Triton NSA supports {name} a multiple of 16 up to 256 (e.g. 64, 128, 192), got {d}")
    if config.slc_block not in SUPPORTED_SLC_BLOCKS:
        raise ValueError(f"Triton NSA supports slc_block in {SUPPORTED_SLC_BLOCKS}, got {config.slc_block}")
    if config.cmp_block > config.slc_block:
        raise ValueError(
            f"Triton NSA supports cmp_block <= slc_block, got {config.cmp_block} > {config.slc_block}"
        )
    ratio = config.slc_block // config.cmp_stride
    if ratio & (ratio - 1) or ratio > 16:
        raise ValueError(
            f"Triton NSA supports slc_block / cmp_stride in (1, 2, 4, 8, 16), got {config.slc_block}/{config.cmp_stride}"
        )
    if config.slc_count > 64 or max(CHUNK_BLOCKS, 1 << (config.slc_count - 1).bit_length()) * ratio > 256:
        raise ValueError(
            f"Triton NSA supports slc_count up to 64 with max(16, slc_count rounded up to a power of two)"
            f" * slc_block / cmp_stride <= 256, got n={config.slc_count} with {config}"
        )


class _Prepared:
    """Validated inputs of one call (q and the compressed k/v contiguous; the others token-major,
    read in place through their strides) and the branch key/value choices."""

    def __init__(self, q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, config, k_slc, v_slc, k_win, v_win, scale):
        check_nsa_inputs(q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, config, k_slc, v_slc, k_win, v_win)
        check_supported(q, k, v, config)
        c = lambda t: None if t is None else t.contiguous()  # noqa: E731
        inplace = lambda t: t if t is None or token_major(t) else t.contiguous()  # noqa: E731 (read via strides)
        self.q, self.k_cmp, self.v_cmp = c(q), c(k_cmp), c(v_cmp)
        self.k, self.v = inplace(k), inplace(v)
        self.k_slc, self.v_slc, self.k_win, self.v_win = inplace(k_slc), inplace(v_slc), inplace(k_win), inplace(v_win)
        gates = (g_cmp, g_slc, g_win)
        if not (all(token_major(g) for g in gates) and g_cmp.stride() == g_slc.stride() == g_win.stride()):
            gates = tuple(g.contiguous() for g in gates)
        self.g_cmp, self.g_slc, self.g_win = gates
        self.ks = self.k if k_slc is None else self.k_slc
        self.vs = self.v if v_slc is None else self.v_slc
        self.kw = self.k if k_win is None else self.k_win
        self.vw = self.v if v_win is None else self.v_win
        self.config = config
        self.scale = 1.0 / math.sqrt(q.shape[3]) if scale is None else float(scale)

    def cmp_attn(self):
        q = self.q
        if self.k_cmp.shape[1] == 0:  # no compressed block yet: the branch is empty everywhere
            o = q.new_zeros(*q.shape[:3], self.v.shape[3])
            return o, torch.full(q.shape[:3], float("inf"), device=q.device)
        return band_attn_fwd(q, self.k_cmp, self.v_cmp, Band.compressed(self.config), self.scale)

    def select(self, lse_cmp):
        return select_blocks(self.q, self.k_cmp, lse_cmp, self.config, self.scale)

    def slc_attn(self, indices):
        return slc_attn_fwd(self.q, self.ks, self.vs, indices, self.config, self.scale)

    def win_gated(self, o_cmp, o_slc, keep: bool):
        return band_attn_fwd_gated(self.q, self.kw, self.vw, Band.window(self.config), self.scale,
                                   o_cmp, o_slc, self.g_cmp, self.g_slc, self.g_win, keep)

    def forward(self, indices=None, keep: bool = True):
        """out, the three branches' outputs and lses (the window's None unless keep), and the
        indices (selected here unless given)."""
        o_cmp, lse_cmp = self.cmp_attn()
        indices = self.select(lse_cmp) if indices is None else self.check_indices(indices)
        o_slc, lse_slc = self.slc_attn(indices)
        out, o_win, lse_win = self.win_gated(o_cmp, o_slc, keep)
        return out, (o_cmp, o_slc, o_win), (lse_cmp, lse_slc, lse_win), indices

    def check_indices(self, indices):
        b, t, _, _ = self.q.shape
        expect = (b, t, self.k.shape[2], self.config.slc_count)
        if tuple(indices.shape) != expect:
            raise ValueError(f"indices has shape {tuple(indices.shape)}, expected {expect}")
        return indices.to(device=self.q.device, dtype=torch.int32).contiguous()


class NSAFunction(torch.autograd.Function):
    """Triton NSA forward/backward; `indices` (optional) fixes the selected blocks."""

    @staticmethod
    def forward(ctx, q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, k_slc, v_slc, k_win, v_win, config, scale, indices):
        p = _Prepared(q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, config, k_slc, v_slc, k_win, v_win, scale)
        out, o, lse, indices = p.forward(indices)
        ctx.prepared = p
        ctx.save_for_backward(*o, *lse, indices)
        ctx.mark_non_differentiable(indices)
        return out, indices

    @staticmethod
    def backward(ctx, dout, _dindices):
        p: _Prepared = ctx.prepared
        o_cmp, o_slc, o_win, lse_cmp, lse_slc, lse_win, indices = ctx.saved_tensors
        return (*_backward(p, dout.contiguous(), o_cmp, o_slc, o_win, lse_cmp, lse_slc, lse_win, indices),
                None, None, None)


def _grad_buffers(p: _Prepared):
    """Gradient buffers: fp32 accumulators, one per distinct tensor, shared where branches share
    k/v ("q" is written whole by the first dq stage, so it is not zero-filled), and "dq", the
    final dq in q's dtype (the last dq stage writes it)."""
    z = lambda t: torch.zeros(t.shape, dtype=torch.float32, device=t.device)  # noqa: E731
    buf = {"q": new_output(p.q.shape, torch.float32, p.q.device), "dq": new_output(p.q.shape, p.q.dtype, p.q.device),
           "k": z(p.k), "v": z(p.v), "k_cmp": z(p.k_cmp), "v_cmp": z(p.v_cmp)}
    for name in ("k_slc", "v_slc", "k_win", "v_win"):
        own = getattr(p, name)
        buf[name] = z(own) if own is not None else buf[name[0]]
    return buf


class _BackwardSteps:
    """The backward's launches, each into the fp32 accumulators `buf`, for one call."""

    def __init__(self, p: _Prepared, dout, o_cmp, o_slc, o_win, lse_cmp, lse_slc, lse_win, indices):
        self.p, self.dout, self.indices = p, dout, indices
        self.o = (o_cmp, o_slc, o_win)
        self.lse = (lse_cmp, lse_slc, lse_win)
        self.buf = _grad_buffers(p)
        self.delta = None  # [3,B,T,HQ]: rowsum(dO_b * o_b) per branch
        self.do_branch = None  # [3,B,T,HQ,dv]: each branch's output gradient g_b * dout
        self.block_index = None

    def gate_grads(self):
        p = self.p
        dgs, self.delta, self.do_branch = gate_grads(self.dout, *self.o, p.g_cmp, p.g_slc, p.g_win)
        return dgs

    def _band(self, band, k, v, branch):
        p = self.p
        return (p.q, k, v, self.do_branch[branch], self.lse[branch], self.delta[branch], band, p.scale)

    def cmp_dq(self):
        p = self.p
        if p.k_cmp.shape[1] > 0:  # the first dq stage: writes the accumulator whole
            band_attn_bwd_dq(*self._band(Band.compressed(p.config), p.k_cmp, p.v_cmp, 0), self.buf["q"])
        else:
            self.buf["q"].zero_()

    def cmp_dkv(self):
        p = self.p
        band_attn_bwd_dkv(*self._band(Band.compressed(p.config), p.k_cmp, p.v_cmp, 0),
                          self.buf["k_cmp"], self.buf["v_cmp"])

    def slc_index(self):
        self.block_index = block_token_index(self.indices, self.p.config.num_slc_blocks(self.p.q.shape[1]))

    def slc_dq(self):
        p = self.p
        slc_attn_bwd_dq(p.q, p.ks, p.vs, self.indices, self.do_branch[1], self.lse[1], self.delta[1], p.config,
                        p.scale, self.buf["q"], self.buf["q"])

    def slc_dkv(self):
        p = self.p
        slc_attn_bwd_dkv(p.q, p.ks, p.vs, self.do_branch[1], self.lse[1], self.delta[1], p.config, p.scale,
                         self.buf["k_slc"], self.buf["v_slc"], self.block_index)

    def win_dq(self):
        p = self.p
        band_attn_bwd_dq(*self._band(Band.window(p.config), p.kw, p.vw, 2), self.buf["dq"], self.buf["q"])

    def win_dkv(self):
        p = self.p
        band_attn_bwd_dkv(*self._band(Band.window(p.config), p.kw, p.vw, 2), self.buf["k_win"], self.buf["v_win"])

    ORDER = ("cmp_dq", "cmp_dkv", "slc_index", "slc_dq", "slc_dkv", "win_dq", "win_dkv")


def _backward(p: _Prepared, dout, o_cmp, o_slc, o_win, lse_cmp, lse_slc, lse_win, indices):
    steps = _BackwardSteps(p, dout, o_cmp, o_slc, o_win, lse_cmp, lse_slc, lse_win, indices)
    dg_cmp, dg_slc, dg_win = steps.gate_grads()
    for name in steps.ORDER:
        getattr(steps, name)()
    buf = steps.buf
    cast = lambda name: buf[name].to(p.q.dtype)  # noqa: E731
    own = lambda name: cast(name) if getattr(p, name) is not None else None  # noqa: E731
    return (buf["dq"], cast("k"), cast("v"), cast("k_cmp"), cast("v_cmp"), dg_cmp, dg_slc, dg_win,
            own("k_slc"), own("v_slc"), own("k_win"), own("v_win"))


def nsa_attention_with_indices(
    q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, config: NSAConfig,
    *, k_slc=None, v_slc=None, k_win=None, v_win=None, scale=None, indices=None,
):
    """nsa_attention that also returns the selected blocks [B,T,H,n] int32 (ascending, -1
    padded); given `indices`, those blocks are used instead of the kernel's own selection.
    Without gradients to keep, no branch output is kept for a backward."""
    tensors = (q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, k_slc, v_slc, k_win, v_win)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return NSAFunction.apply(*tensors, config, scale, indices)
    p = _Prepared(q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, config, k_slc, v_slc, k_win, v_win, scale)
    out, _, _, indices = p.forward(indices, keep=False)
    return out, indices


def nsa_attention(
    q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, config: NSAConfig,
    *, k_slc=None, v_slc=None, k_win=None, v_win=None, scale=None,
):
    """Native Sparse Attention output [B, T, HQ, dv] with the bundled Triton kernels.

    Same signature and semantics as nsa_attention_ref (NSA_SPEC.md); differentiable in every
    tensor argument. Unsupported shapes, dtypes or configs raise ValueError saying what is
    supported (check_supported).
    """
    out, _ = nsa_attention_with_indices(q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, config,
                                        k_slc=k_slc, v_slc=v_slc, k_win=k_win, v_win=v_win, scale=scale)
    return out


def nsa_forward_stages(
    q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, config: NSAConfig,
    *, k_slc=None, v_slc=None, k_win=None, v_win=None, scale=None,
) -> list[tuple[str, Callable[[], object]]]:
    """The forward split into its stages, for timing each alone.

    Runs the forward once to get every stage's inputs, then returns, in order,
    [("cmp_attn", f), ("select", f), ("slc_attn", f), ("win_gated", f)]: each f() launches just
    that stage (compressed attention + lse; importance + top-n; selected-block attention;
    sliding window with the gated sum, as without gradients: (out, None, None)) on the
    precomputed inputs and returns its output. The sum of the stage times is the forward's time (k/v compression,
    done by the caller, not included).
    """
    p = _Prepared(q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, config, k_slc, v_slc, k_win, v_win, scale)
    _, o, lse, indices = p.forward(keep=False)
    return [
        ("cmp_attn", p.cmp_attn),
        ("select", lambda: p.select(lse[0])),
        ("slc_attn", lambda: p.slc_attn(indices)),
        ("win_gated", lambda: p.win_gated(o[0], o[1], keep=False)),
    ]


def nsa_backward_stages(
    q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, config: NSAConfig, dout,
    *, k_slc=None, v_slc=None, k_win=None, v_win=None, scale=None,
) -> list[tuple[str, Callable[[], object]]]:
    """The backward split into its stages, for timing each alone (gradients accumulate into
    scratch buffers, so repeated calls keep the cost and change only the scratch values).

    Returns, in order, [("gate_grads", f), ("cmp_dq", f), ("cmp_dkv", f), ("slc_index", f),
    ("slc_dq", f), ("slc_dkv", f), ("win_dq", f), ("win_dkv", f)]: gate gradients and deltas;
    compressed branch dq and dk_cmp/dv_cmp; the inverse (block -> tokens) index of the
    selection; selection branch dq and dk/dv; sliding-window dq and dk/dv.

    The returned list's `grads` attribute is the dict of gradient buffers the stages write: fp32
    accumulators "k", "v", "k_cmp", "v_cmp", and "k_slc", "v_slc", "k_win", "v_win" (the same
    tensor as "k" or "v" where that branch shares them), all zero before the first stage runs;
    "q", the fp32 dq of the compressed and selection branches (cmp_dq writes it whole, slc_dq adds
    to it); "dq", the whole dq in q's dtype (win_dq writes it: "q" plus the window's share).
    gate_grads returns (dg_cmp, dg_slc, dg_win). After each stage has run once, in order, these
    are the gradients of the forward (with the kernel's own selection) given dout.
    """
    p = _Prepared(q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, config, k_slc, v_slc, k_win, v_win, scale)
    with torch.no_grad():
        _, o, lse, indices = p.forward()
        steps = _BackwardSteps(p, dout.contiguous(), *o, *lse, indices)
        steps.gate_grads()
        steps.slc_index()
    stages = _Stages([("gate_grads", steps.gate_grads)] + [(name, getattr(steps, name)) for name in steps.ORDER])
    stages.grads = steps.buf
    return stages


class _Stages(list):
    """A list of (name, stage) pairs that can carry attributes (nsa_backward_stages' `grads`)."""
