"""The PyTorch reference evaluated at chosen query rows, optionally with given block indices.

For checking the Triton kernels: at long T only a sample of query rows can be computed by the
reference, and where near-equal block scores could flip a selection, outputs and gradients are
compared with both sides using the same selected blocks. Built from reference.py's own branch
functions, so it is the same definition as nsa_attention_ref (equal to it when `positions`
is every row and `indices` is None). Differentiable in every tensor argument.
"""

from __future__ import annotations

import math

import torch

from .config import NSAConfig
from .inputs import check_nsa_inputs
from .reference import (
    _cmp_branch,
    _compute_dtype,
    _group_rows,
    _group_scores,
    _grouped_attention,
    _heads_first,
    _selection_mask,
    top_blocks,
)

ROW_CHUNK = 128


def nsa_rows_ref(
    q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, config: NSAConfig, positions: torch.Tensor,
    *, indices=None, k_slc=None, v_slc=None, k_win=None, v_win=None, scale=None, dtype=None,
):
    """NSA output rows [B, R, HQ, dv] at query `positions` (1-D, R entries) and the selected
    blocks [B, R, H, n] used (ascending, -1 padded).

    indices: [B, R, H, n] blocks to use instead of the reference's own top-n (-1 = none).
    dtype: computation dtype (default float32, float64 for float64 inputs); the output has it.
    """
    shape = check_nsa_inputs(q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, config, k_slc, v_slc, k_win, v_win)
    dt = dtype or _compute_dtype(q.dtype)
    scale = 1.0 / math.sqrt(shape.dk) if scale is None else scale
    h = shape.kv_heads
    pos = positions.to(q.device).long()
    n_keys = int(pos.max()) + 1
    qg = _group_rows(_heads_first(q[:, pos], dt), h)
    kc, vc = _heads_first(k_cmp, dt), _heads_first(v_cmp, dt)
    first = lambda a, b: (b if a is None else a)[:, :n_keys]  # noqa: E731
    ks, vs = _heads_first(first(k_slc, k), dt), _heads_first(first(v_slc, v), dt)
    kw, vw = _heads_first(first(k_win, k), dt), _heads_first(first(v_win, v), dt)
    gates = [_group_rows(_heads_first(g[:, pos], dt).unsqueeze(-1), h) for g in (g_cmp, g_slc, g_win)]
    key_pos = torch.arange(n_keys, device=q.device)

    outs, used = [], []
    for c0 in range(0, pos.numel(), ROW_CHUNK):
        c1 = min(c0 + ROW_CHUNK, pos.numel())
        p = pos[c0:c1]
        q_rows = qg[:, :, :, c0:c1]
        o_cmp, probs = _cmp_branch(q_rows, kc, vc, p, config, scale)
        if indices is None:
            sel = top_blocks(_group_scores(probs.detach(), config, n_keys), p, config)
        else:
            sel = indices[:, c0:c1].transpose(1, 2).long().to(q.device)
        o_slc = _grouped_attention(q_rows, ks, vs, _selection_mask(sel, p, n_keys, config), scale)
        win_mask = (key_pos <= p.unsqueeze(-1)) & (key_pos > p.unsqueeze(-1) - config.window)
        o_win = _grouped_attention(q_rows, kw, vw, win_mask[None, None], scale)
        g_c, g_s, g_w = (g[:, :, :, c0:c1] for g in gates)
        outs.append(g_c * o_cmp + g_s * o_slc + g_w * o_win)
        used.append(sel.transpose(1, 2))
    out = torch.cat(outs, dim=3)  # [B,H,G,R,dv]
    out = out.reshape(shape.batch, shape.q_heads, pos.numel(), shape.dv).transpose(1, 2)
    return out, torch.cat(used, dim=1)
