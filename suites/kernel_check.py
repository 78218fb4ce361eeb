"""Correctness of the NSA kernels against the PyTorch reference, before they are timed.

At benchmark lengths (64k) the reference cannot run on every row, so the check uses two exact
shortcuts, both in float64:
- Forward: `nsa_rows_ref` computes NSA for a chosen set of query rows only (the first, the last
  and evenly spaced ones between), from the same public pieces as `nsa_attention_ref`
  (top_blocks, overlap_weights, masked_softmax); tests pin it to `nsa_attention_ref`.
- Backward: causality. With the output gradient zero beyond a prefix of P rows, every gradient
  of the full-length call equals the reference's gradient on the length-P problem (and is zero
  beyond it), so the reference runs at length P only.

Relative error = max |kernel - reference| / max |reference| over the checked values. Where two
candidate blocks score within `tie_rtol` of each other at the top-n cut, rounding may flip the
selection; such near-tie rows are left out of the forward error (those with a larger error than
the rest are counted in `tie_rows`) and get no output gradient in the backward check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nsa_bench.kernels import NSAConfig, nsa_attention_ref
from nsa_bench.kernels.reference import masked_softmax, overlap_weights, selection_keys, top_blocks

ROW_CHUNK = 128


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


def _heads_first(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(1, 2).to(torch.float64)


def _gather_keys(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x [B,H,T,d] gathered at positions [B|1,H|1,c,S] (clamped into range) -> [B,H,c,S,d]."""
    b, h, t, d = x.shape
    pos = positions.clamp(0, t - 1).expand(b, h, *positions.shape[2:])
    flat = pos.reshape(b, h, -1, 1).expand(-1, -1, -1, d)
    return x.gather(2, flat).view(b, h, *pos.shape[2:], d)


def _attend(q, keys, values, mask, scale):
    """q [B,H,G,c,dk] over per-row keys [B,H,c,S,d] with mask [B|1,H|1,c,S] -> [B,H,G,c,dv]."""
    scores = torch.einsum("bhgcd,bhcsd->bhgcs", q, keys) * scale
    probs = masked_softmax(scores, mask.unsqueeze(2))
    return torch.einsum("bhgcs,bhcsd->bhgcd", probs, values)


def _near_ties(scores: torch.Tensor, positions: torch.Tensor, config: NSAConfig, tie_rtol: float) -> torch.Tensor:
    """[B,H,c] bool: the n-th and (n+1)-th candidate block scores are within tie_rtol."""
    n_slc = scores.shape[-1]
    key, _ = selection_keys(scores, positions, config)
    n = config.slc_count
    if n_slc <= n:
        return torch.zeros(scores.shape[:-1], dtype=torch.bool, device=scores.device)
    top = torch.topk(key, n + 1, dim=-1).values
    last_in, first_out = top[..., n - 1], top[..., n]
    contested = torch.isfinite(last_in) & torch.isfinite(first_out)
    return contested & (last_in - first_out <= tie_rtol * last_in.abs())


def nsa_rows_ref(q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, config: NSAConfig, rows: torch.Tensor,
                 *, scale=None, tie_rtol: float = 1e-2):
    """NSA output at the given query rows, in float64, and which rows are near-ties.

    Same arguments as nsa_attention_ref (shared k/v per branch) plus `rows` (sorted positions).
    Returns (out [B, c, HQ, dv] float64, ties [B, c] bool).
    """
    batch, seq_len, q_heads, dk = q.shape
    kv_heads, dv = k.shape[2], v.shape[3]
    group = q_heads // kv_heads
    scale = 1.0 / math.sqrt(dk) if scale is None else scale
    kh, vh = _heads_first(k), _heads_first(v)
    kc, vc = _heads_first(k_cmp), _heads_first(v_cmp)
    n_cmp, n_slc = kc.shape[2], config.num_slc_blocks(seq_len)
    weights = overlap_weights(config, n_cmp, n_slc, q.device, torch.float64)
    block_end = torch.arange(n_cmp, device=q.device) * config.cmp_stride + config.cmp_block - 1
    rows = rows.to(q.device)
    outs, ties = [], []
    for r0 in range(0, rows.numel(), ROW_CHUNK):
        pos = rows[r0:r0 + ROW_CHUNK]
        c = pos.numel()
        qr = _heads_first(q[:, pos]).reshape(batch, kv_heads, group, c, dk)
        gates = [_heads_first(g[:, pos].unsqueeze(-1)).reshape(batch, kv_heads, group, c, 1)
                 for g in (g_cmp, g_slc, g_win)]

        if n_cmp:
            cmp_scores = torch.einsum("bhgcd,bhnd->bhgcn", qr, kc) * scale
            probs = masked_softmax(cmp_scores, block_end <= pos.unsqueeze(-1))
        else:
            probs = qr.new_zeros(*qr.shape[:-1], 0)
        o_cmp = torch.einsum("bhgcn,bhnd->bhgcd", probs, vc)

        block_scores = (probs @ weights).sum(dim=2)  # [B,H,c,N_slc]
        chosen = top_blocks(block_scores, pos, config)  # [B,H,c,n], -1 padded
        slc_pos = (chosen.unsqueeze(-1) * config.slc_block
                   + torch.arange(config.slc_block, device=q.device)).flatten(-2)
        slc_ok = (chosen >= 0).repeat_interleave(config.slc_block, dim=-1) & (slc_pos <= pos.view(1, 1, c, 1))
        o_slc = _attend(qr, _gather_keys(kh, slc_pos), _gather_keys(vh, slc_pos), slc_ok, scale)

        win_pos = pos.unsqueeze(-1) - config.window + 1 + torch.arange(config.window, device=q.device)
        win_pos = win_pos.view(1, 1, c, config.window)
        o_win = _attend(qr, _gather_keys(kh, win_pos), _gather_keys(vh, win_pos), win_pos >= 0, scale)

        out = gates[0] * o_cmp + gates[1] * o_slc + gates[2] * o_win  # [B,H,G,c,dv]
        outs.append(out.reshape(batch, q_heads, c, dv).transpose(1, 2))
        ties.append(_near_ties(block_scores, pos, config, tie_rtol).any(dim=1))
    return torch.cat(outs, dim=1), torch.cat(ties, dim=1)


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.double(), want.double()
    if not torch.isfinite(got).all():
        return math.inf
    denom = want.abs().max().item()
    diff = (got - want).abs().max().item() if want.numel() else 0.0
    return diff / denom if denom > 0 else diff


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
        want, ties = nsa_rows_ref(**args, config=config, rows=rows, tie_rtol=tie_rtol)
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
            want, tie = nsa_rows_ref(q_rows, k, v, k_cmp, v_cmp, *g_rows, config,
                                     torch.tensor([t - 1], device=q.device), tie_rtol=tie_rtol)
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
        _, ties = nsa_rows_ref(**{n: args[n] for n in names}, config=config,
                               rows=torch.arange(p, device=args["q"].device), tie_rtol=tie_rtol)
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
        err = max(err, _rel_err(g[:, :n], w))
        if g.shape[1] > n:
            rest = g[:, n:]
            beyond = rest.abs().max().item() if torch.isfinite(rest).all() else math.inf
            err = max(err, beyond / (w.abs().max().item() or 1.0))
    return CheckResult(err, p, int(ties.sum().item()))
