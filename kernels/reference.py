"""Plain-PyTorch Native Sparse Attention: the ground truth the Triton kernels are checked against.

Everything follows ../shared/NSA_SPEC.md, 0-indexed and causal. Tensors are token-major:
q [B, T, HQ, dk], k/v [B, T, H, dk|dv], compressed k/v [B, N_cmp, H, dk|dv], gates [B, T, HQ].
The work is done over chunks of query rows, so memory stays O(chunk * T) and the reference
also serves long sequences on a GPU (use float64 for ground truth).
"""

from __future__ import annotations

import math

import torch

from .config import NSAConfig
from .inputs import check_nsa_inputs

QUERY_CHUNK = 512


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim restricted to mask; rows with no allowed entry give zeros."""
    scores = scores.masked_fill(~mask, float("-inf"))
    row_max = scores.amax(dim=-1, keepdim=True).detach()
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    weights = torch.exp(scores - row_max)
    denom = weights.sum(dim=-1, keepdim=True)
    return weights / torch.where(denom > 0, denom, torch.ones_like(denom))


def _grouped_attention(q, k, v, mask, scale):
    """Attention of q [B,H,G,c,dk] over k/v [B,H,S,d] with mask [B|1,H|1,c,S] shared by the group."""
    scores = torch.einsum("bhgcd,bhsd->bhgcs", q, k) * scale
    probs = masked_softmax(scores, mask.unsqueeze(2))
    return torch.einsum("bhgcs,bhsd->bhgcd", probs, v)


def overlap_weights(config: NSAConfig, n_cmp: int, n_slc: int, device=None, dtype=torch.float32):
    """[n_cmp, n_slc] matrix: tokens shared by compressed block i and selection block j, over d."""
    i = torch.arange(n_cmp, device=device).unsqueeze(1)
    j = torch.arange(n_slc, device=device).unsqueeze(0)
    lo = torch.maximum(i * config.cmp_stride, j * config.slc_block)
    hi = torch.minimum(i * config.cmp_stride + config.cmp_block, (j + 1) * config.slc_block)
    return (hi - lo).clamp_min(0).to(dtype) / config.cmp_stride


def selection_keys(scores: torch.Tensor, positions: torch.Tensor, config: NSAConfig):
    """(keys, started) for block scores [..., c, N_slc] at query positions [c]: keys are the scores
    with blocks not yet started (j > t // l') at -inf and the forced ones (block 0 and the local
    blocks t//l' and t//l' - 1) at +inf; started is the [c, N_slc] mask of started blocks."""
    j = torch.arange(scores.shape[-1], device=scores.device)
    current = (positions // config.slc_block).unsqueeze(-1)
    started = j <= current
    forced = started & ((j == 0) | (j == current) | (j == current - 1))
    return scores.masked_fill(~started, float("-inf")).masked_fill(forced, float("inf")), started


def top_blocks(scores: torch.Tensor, positions: torch.Tensor, config: NSAConfig) -> torch.Tensor:
    """Selected block indices [..., c, n] for query positions [c] given block scores [..., c, N_slc].

    Among started blocks (j <= t // l'), block 0 and the local blocks t//l' and t//l' - 1 are
    always taken; the rest by score, ties toward the lower index. Indices come sorted ascending,
    padded with -1 where fewer than n blocks have started.
    """
    n_slc = scores.shape[-1]
    key, started = selection_keys(scores, positions, config)
    order = torch.sort(key, dim=-1, descending=True, stable=True).indices[..., : config.slc_count]
    chosen = torch.gather(started.expand_as(key), -1, order)
    big = torch.full_like(order, n_slc)
    chosen_sorted = torch.sort(torch.where(chosen, order, big), dim=-1).values
    chosen_sorted = torch.where(chosen_sorted == n_slc, torch.full_like(order, -1), chosen_sorted)
    pad = config.slc_count - chosen_sorted.shape[-1]
    if pad > 0:
        chosen_sorted = torch.nn.functional.pad(chosen_sorted, (0, pad), value=-1)
    return chosen_sorted


def _selection_mask(indices: torch.Tensor, positions: torch.Tensor, n_keys: int, config: NSAConfig):
    """Key mask [B,H,c,n_keys] of the selected blocks, restricted to keys <= each position."""
    n_slc = config.num_slc_blocks(n_keys)
    hit = torch.zeros(*indices.shape[:-1], n_slc + 1, dtype=torch.bool, device=indices.device)
    hit.scatter_(-1, torch.where(indices < 0, n_slc, indices), True)
    key_pos = torch.arange(n_keys, device=indices.device)
    in_block = hit[..., key_pos // config.slc_block]
    return in_block & (key_pos <= positions.unsqueeze(-1))


def _cmp_probs(q_rows, k_cmp, positions, config, scale):
    """Compressed-attention probabilities [B,H,G,c,N_cmp] for rows q [B,H,G,c,dk]."""
    n_cmp = k_cmp.shape[2]
    if n_cmp == 0:
        return q_rows.new_zeros(*q_rows.shape[:-1], 0)
    block_end = torch.arange(n_cmp, device=q_rows.device) * config.cmp_stride + config.cmp_block - 1
    mask = block_end <= positions.unsqueeze(-1)  # [c, N_cmp]
    scores = torch.einsum("bhgcd,bhnd->bhgcn", q_rows, k_cmp) * scale
    return masked_softmax(scores, mask)


def _cmp_branch(q_rows, k_cmp, v_cmp, positions, config, scale):
    """Compressed attention for rows q [B,H,G,c,dk]: output and per-head probabilities."""
    probs = _cmp_probs(q_rows, k_cmp, positions, config, scale)
    return torch.einsum("bhgcn,bhnd->bhgcd", probs, v_cmp), probs


def _group_scores(probs, config, n_keys):
    """Selection-block scores [B,H,c,N_slc] from compressed probabilities [B,H,G,c,N_cmp]."""
    weights = overlap_weights(config, probs.shape[-1], config.num_slc_blocks(n_keys), probs.device, probs.dtype)
    return (probs @ weights).sum(dim=2)


def _heads_first(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x.transpose(1, 2).to(dtype)


def _group_rows(q: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """[B,HQ,T,d] -> [B,H,G,T,d] so that query heads of one KV group sit together."""
    b, hq, t, d = q.shape
    return q.view(b, kv_heads, hq // kv_heads, t, d)


def nsa_attention_ref(
    q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, config: NSAConfig,
    *, k_slc=None, v_slc=None, k_win=None, v_win=None, scale=None,
):
    """Native Sparse Attention output [B, T, HQ, dv], computed with plain torch ops.

    Optional k_slc/v_slc and k_win/v_win give the selection and window branches their own
    keys and values (default: k, v). Differentiable in every tensor argument; selection itself
    is discrete and passes no gradient.
    """
    shape = check_nsa_inputs(q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, config, k_slc, v_slc, k_win, v_win)
    dt = _compute_dtype(q.dtype)
    scale = 1.0 / math.sqrt(shape.dk) if scale is None else scale
    h = shape.kv_heads
    qg = _group_rows(_heads_first(q, dt), h)
    kc, vc = _heads_first(k_cmp, dt), _heads_first(v_cmp, dt)
    ks, vs = _heads_first(k if k_slc is None else k_slc, dt), _heads_first(v if v_slc is None else v_slc, dt)
    kw, vw = _heads_first(k if k_win is None else k_win, dt), _heads_first(v if v_win is None else v_win, dt)
    gates = [_group_rows(_heads_first(g, dt).unsqueeze(-1), h) for g in (g_cmp, g_slc, g_win)]

    chunks = []
    for t0 in range(0, shape.seq_len, QUERY_CHUNK):
        t1 = min(t0 + QUERY_CHUNK, shape.seq_len)
        pos = torch.arange(t0, t1, device=q.device)
        q_rows = qg[:, :, :, t0:t1]
        o_cmp, probs = _cmp_branch(q_rows, kc, vc, pos, config, scale)

        block_scores = _group_scores(probs.detach(), config, t1)
        indices = top_blocks(block_scores, pos, config)
        slc_mask = _selection_mask(indices, pos, t1, config)
        o_slc = _grouped_attention(q_rows, ks[:, :, :t1], vs[:, :, :t1], slc_mask, scale)

        w0 = max(0, t0 - config.window + 1)
        key_pos = torch.arange(w0, t1, device=q.device)
        win_mask = (key_pos <= pos.unsqueeze(-1)) & (key_pos > pos.unsqueeze(-1) - config.window)
        o_win = _grouped_attention(q_rows, kw[:, :, w0:t1], vw[:, :, w0:t1], win_mask[None, None], scale)

        g_c, g_s, g_w = (g[:, :, :, t0:t1] for g in gates)
        chunks.append(g_c * o_cmp + g_s * o_slc + g_w * o_win)

    out = torch.cat(chunks, dim=3)  # [B,H,G,T,dv]
    return out.reshape(shape.batch, shape.q_heads, shape.seq_len, shape.dv).transpose(1, 2).to(q.dtype)


def nsa_select_blocks(q, k_cmp, config: NSAConfig, *, scale=None) -> torch.Tensor:
    """Selected block indices [B, T, H, n] (ascending, -1 padded) that nsa_attention_ref uses."""
    batch, seq_len, q_heads, dk = q.shape
    kv_heads = k_cmp.shape[2]
    if q_heads % kv_heads:
        raise ValueError(f"query heads ({q_heads}) must be a multiple of key/value heads ({kv_heads})")
    if k_cmp.shape[1] != config.num_cmp_blocks(seq_len):
        raise ValueError(f"k_cmp has {k_cmp.shape[1]} blocks, expected {config.num_cmp_blocks(seq_len)}")
    dt = _compute_dtype(q.dtype)
    scale = 1.0 / math.sqrt(dk) if scale is None else scale
    qg = _group_rows(_heads_first(q, dt), kv_heads)
    kc = _heads_first(k_cmp, dt)
    out = []
    with torch.no_grad():
        for t0 in range(0, seq_len, QUERY_CHUNK):
            t1 = min(t0 + QUERY_CHUNK, seq_len)
            pos = torch.arange(t0, t1, device=q.device)
            probs = _cmp_probs(qg[:, :, :, t0:t1], kc, pos, config, scale)
            scores = _group_scores(probs, config, seq_len)
            out.append(top_blocks(scores, pos, config))
    return torch.cat(out, dim=2).transpose(1, 2).contiguous()


def full_attention_ref(q, k, v, *, scale=None):
    """Causal softmax attention with GQA: q [B,T,HQ,dk], k/v [B,T,H,dk|dv] -> [B,T,HQ,dv]."""
    batch, seq_len, q_heads, dk = q.shape
    kv_heads = k.shape[2]
    if q_heads % kv_heads:
        raise ValueError(f"query heads ({q_heads}) must be a multiple of key/value heads ({kv_heads})")
    dt = _compute_dtype(q.dtype)
    scale = 1.0 / math.sqrt(dk) if scale is None else scale
    qg = _group_rows(_heads_first(q, dt), kv_heads)
    kh, vh = _heads_first(k, dt), _heads_first(v, dt)
    chunks = []
    for t0 in range(0, seq_len, QUERY_CHUNK):
        t1 = min(t0 + QUERY_CHUNK, seq_len)
        pos = torch.arange(t0, t1, device=q.device)
        mask = torch.arange(t1, device=q.device) <= pos.unsqueeze(-1)
        chunks.append(_grouped_attention(qg[:, :, :, t0:t1], kh[:, :, :t1], vh[:, :, :t1], mask[None, None], scale))
    out = torch.cat(chunks, dim=3)
    return out.reshape(batch, q_heads, seq_len, v.shape[-1]).transpose(1, 2).to(q.dtype)
