"""The one correctness layer: how a kernel is compared with the PyTorch reference.

Used by the kernel benchmark's pre-timing check, training's start-up check, the GPU scripts in
scripts/ and the tests, so there is one error definition and one tolerance table:

- `rel_err(got, want)` = max |got - want| / max |want| over the compared values, in float64;
  inf when `got` has a non-finite value. This is the `max_rel_err` of every result row.
- `TOLERANCE[dtype]` = (forward, backward) largest accepted `rel_err` per kernel dtype.

At benchmark lengths (64k) the reference cannot run on every row, so the checks below use two
exact shortcuts, both in float64:
- Forward: `nsa_rows_ref` (kernels/reference_rows.py) computes NSA for a chosen set of query rows
  only (the first, the last and evenly spaced ones between); tests pin it to `nsa_attention_ref`.
- Backward: causality. With the output gradient zero beyond a prefix of P rows, every gradient
  of the full-length call equals the reference's gradient on the length-P problem (and is zero
  beyond it), so the reference runs at length P only.

Where two candidate blocks score within `tie_rtol` of each other at the top-n cut, rounding may
flip the selection; such near-tie rows are left out of the forward error (those with a larger
error than the rest are counted in `tie_rows`) and get no output gradient in the backward check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nsa_bench.kernels import NSAConfig, nsa_attention_ref
from nsa_bench.kernels.reference import masked_softmax, overlap_weights, selection_keys
from nsa_bench.kernels.reference_rows import nsa_rows_ref

ROW_CHUNK = 128
# Largest rel_err accepted per kernel dtype: (forward, backward); fp32 is for the interpreter tests.
TOLERANCE = {"bf16": (2e-2, 5e-2), "fp16": (5e-3, 2e-2), "fp32": (2e-5, 2e-5)}
DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


def tolerance(dtype: torch.dtype | str, backward: bool = False) -> float:
    """TOLERANCE of a kernel dtype (torch dtype or its TOLERANCE name), forward or backward."""
    name = DTYPE_NAMES.get(dtype, dtype)
    if name not in TOLERANCE:
        raise ValueError(f"no tolerance for dtype {dtype}; known: {', '.join(TOLERANCE)}")
    return TOLERANCE[name][1 if backward else 0]


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want| in float64 (the difference itself when want is all zero);
    inf when got has a non-finite value, 0 for empty tensors."""
    got, want = got.detach().double(), want.detach().double()
    if not torch.isfinite(got).all():
        return math.inf
    if not want.numel():
        return 0.0
    diff = (got - want).abs().max().item()
    denom = want.abs().max().item()
    return diff / denom if denom > 0 else diff


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check: the relative error, rows checked and near-tie rows left out."""

    max_rel_err: float
    rows: int
    tie_rows: int


def check_rows(seq_len: int, n_rows: int) -> torch.Tensor:
    """Query rows to check: all of them when seq_len <= n_rows, else the first and last quarter
    of n_rows plus evenly spaced rows in between (sorted, unique)."""
    if seq_len <= n_rows:
        return torch.arange(seq_len)
    edge = n_rows // 4
    middle = torch.linspace(edge, seq_len - edge - 1, n_rows - 2 * edge).round().long()
    rows = torch.cat([torch.arange(edge), middle, torch.arange(seq_len - edge, seq_len)])
    return torch.unique(rows)


def near_ties(q, k_cmp, config: NSAConfig, rows: torch.Tensor, *, scale=None, tie_rtol: float = 1e-2):
    """[B, rows] bool: for some KV head, the n-th and (n+1)-th candidate selection-block scores of
    the row are within tie_rtol (float64), so rounding may flip which block is selected."""
    batch, seq_len, q_heads, dk = q.shape
    kv_heads, n_cmp = k_cmp.shape[2], k_cmp.shape[1]
    scale = 1.0 / math.sqrt(dk) if scale is None else scale
    n_slc, n = config.num_slc_blocks(seq_len), config.slc_count
    rows = rows.to(q.device)
    if n_slc <= n or n_cmp == 0:
        return torch.zeros(batch, rows.numel(), dtype=torch.bool, device=q.device)
    kc = k_cmp.transpose(1, 2).double()
    weights = overlap_weights(config, n_cmp, n_slc, q.device, torch.float64)
    block_end = torch.arange(n_cmp, device=q.device) * config.cmp_stride + config.cmp_block - 1
    ties = []
    for r0 in range(0, rows.numel(), ROW_CHUNK):
        pos = rows[r0:r0 + ROW_CHUNK]
        qr = q[:, pos].transpose(1, 2).double().reshape(batch, kv_heads, q_heads // kv_heads, pos.numel(), dk)
        probs = masked_softmax(torch.einsum("bhgcd,bhnd->bhgcn", qr, kc) * scale, block_end <= pos.unsqueeze(-1))
        key, _ = selection_keys((probs @ weights).sum(dim=2), pos, config)  # [B,H,c,N_slc]
        top = torch.topk(key, n + 1, dim=-1).values
        last_in, first_out = top[..., n - 1], top[..., n]
        contested = torch.isfinite(last_in) & torch.isfinite(first_out)
        ties.append((contested & (last_in - first_out <= tie_rtol * last_in.abs())).any(dim=1))
    return torch.cat(ties, dim=1)


def reference_rows(args: dict, config: NSAConfig, rows: torch.Tensor, *, tie_rtol: float = 1e-2):
    """(out [B, rows, HQ, dv] float64, ties [B, rows] bool): the reference at `rows` and its near-ties.

    args: q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win (nsa_attention_ref's arguments).
    """
    rows = rows.to(args["q"].device)
    out, _ = nsa_rows_ref(**args, config=config, positions=rows, dtype=torch.float64)
    return out, near_ties(args["q"], args["k_cmp"], config, rows, tie_rtol=tie_rtol)


def _row_errors(got: torch.Tensor, want: torch.Tensor, ties: torch.Tensor) -> tuple[float, int]:
    """(relative error over the rows that are not near-ties, near-tie rows with a larger error)
    for outputs [B, rows, HQ, dv] and ties [B, rows]; a non-finite output row counts as inf."""
    got = got.double()
    denom = want.abs().max().item() or 1.0
    row_err = (got - want).abs().amax(dim=(2, 3)) / denom
    row_err = torch.where(torch.isfinite(got).all(dim=3).all(dim=2), row_err, torch.full_like(row_err, math.inf))
    clear = row_err.masked_fill(ties, 0.0)
    err = float(clear.max().item()) if clear.numel() else 0.0
    return err, int((ties & (row_err > err)).sum().item())


def check_forward(nsa_fn, args: dict, config: NSAConfig, n_rows: int, *, tie_rtol: float = 1e-2) -> CheckResult:
    """Forward error of nsa_fn (nsa_attention's signature) on `args` at up to n_rows query rows.

    args: q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win (the kernel's dtype and device).
    """
    with torch.no_grad():
        out = nsa_fn(**args, config=config)
        rows = check_rows(args["q"].shape[1], n_rows).to(out.device)
        want, ties = reference_rows(args, config, rows, tie_rtol=tie_rtol)
        err, excused = _row_errors(out[:, rows], want, ties)
    return CheckResult(err, int(rows.numel()), excused)


def check_decode(decode_fn, q, cache, gates, config: NSAConfig, *, tie_rtol: float = 1e-2) -> CheckResult:
    """Error of one decode step (nsa_decode's signature) against the reference's last row over
    each sequence's cached tokens (read back with cache.tokens)."""
    with torch.no_grad():
        got = decode_fn(q, cache, *gates, config)[:, 0]  # [B, HQ, dv]
        wants, ties = [], []
        for b in range(q.shape[0]):
            k, v = cache.tokens("k", b)[None], cache.tokens("v", b)[None]
            k_cmp, v_cmp = cache.tokens("k_cmp", b)[None], cache.tokens("v_cmp", b)[None]
            t = k.shape[1]
            q_rows = q[b:b + 1].expand(1, t, -1, -1)  # only row t - 1 is read
            g_rows = [g[b:b + 1].expand(1, t, -1) for g in gates]
            row_args = dict(zip(("q", "k", "v", "k_cmp", "v_cmp", "g_cmp", "g_slc", "g_win"),
                                (q_rows, k, v, k_cmp, v_cmp, *g_rows)))
            want, tie = reference_rows(row_args, config, torch.tensor([t - 1], device=q.device), tie_rtol=tie_rtol)
            wants.append(want[0, 0])
            ties.append(bool(tie[0, 0]))
        err, excused = _row_errors(got[:, None], torch.stack(wants)[:, None],
                                   torch.tensor(ties, device=got.device)[:, None])
    return CheckResult(err, int(q.shape[0]), excused)


def check_backward(nsa_fn, args: dict, config: NSAConfig, prefix: int, *, tie_rtol: float = 1e-2) -> CheckResult:
    """Gradient error of nsa_fn w.r.t. every input, by the causal-prefix shortcut (module docstring).

    The output gradient is random on the first `prefix` rows (zero on near-tie rows) and zero
    beyond; the error is the largest over the eight gradients.
    """
    names = ("q", "k", "v", "k_cmp", "v_cmp", "g_cmp", "g_slc", "g_win")
    seq_len = args["q"].shape[1]
    p = min(prefix, seq_len)
    leaves = {n: args[n].detach().clone().requires_grad_(True) for n in names}
    with torch.no_grad():
        ties = near_ties(args["q"], args["k_cmp"], config, torch.arange(p), tie_rtol=tie_rtol)
    out = nsa_fn(**leaves, config=config)
    grad_out = torch.zeros_like(out)
    grad_out[:, :p] = torch.randn_like(out[:, :p])
    grad_out[:, :p] *= (~ties).to(out.dtype)[:, :, None, None]
    got = torch.autograd.grad(out, [leaves[n] for n in names], grad_out, allow_unused=True)
    got = [torch.zeros_like(leaves[n]) if g is None else g for n, g in zip(names, got)]  # unused: zero
    del out

    n_cmp = config.num_cmp_blocks(p)
    prefix_len = {"k_cmp": n_cmp, "v_cmp": n_cmp}
    ref_leaves = {n: args[n][:, :prefix_len.get(n, p)].detach().double().requires_grad_(True) for n in names}
    ref_out = nsa_attention_ref(**ref_leaves, config=config)
    want = torch.autograd.grad(ref_out, [ref_leaves[n] for n in names], grad_out[:, :p].double())
    err = 0.0
    for g, w in zip(got, want):  # the prefix against the reference, the rest must be zero
        n = w.shape[1]
        err = max(err, rel_err(g[:, :n], w))
        if g.shape[1] > n:
            rest = g[:, n:]
            beyond = rest.abs().max().item() if torch.isfinite(rest).all() else math.inf
            err = max(err, beyond / (w.abs().max().item() or 1.0))
    return CheckResult(err, p, int(ties.sum().item()))
