"""The PyTorch reference pinned to NSA_SPEC.md by brute-force per-token loops and identities."""

import math

import pytest
import torch

from nsa_bench.kernels import (
    CompressionMLP,
    NSAConfig,
    full_attention_ref,
    mean_pool_compress,
    nsa_attention_ref,
    nsa_select_blocks,
)
from nsa_bench.suites.kernel_check import rel_err

F64 = torch.float64


def _inputs(batch, seq_len, q_heads, kv_heads, dk, dv, config, seed, separate=False):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=F64)

    q = rnd(batch, seq_len, q_heads, dk)
    k, v = rnd(batch, seq_len, kv_heads, dk), rnd(batch, seq_len, kv_heads, dv)
    k_cmp, v_cmp = mean_pool_compress(k, config), mean_pool_compress(v, config)
    gates = [torch.rand(batch, seq_len, q_heads, generator=gen, dtype=F64) for _ in range(3)]
    extra = {}
    if separate:
        extra = dict(k_slc=rnd(batch, seq_len, kv_heads, dk), v_slc=rnd(batch, seq_len, kv_heads, dv),
                     k_win=rnd(batch, seq_len, kv_heads, dk), v_win=rnd(batch, seq_len, kv_heads, dv))
    return q, k, v, k_cmp, v_cmp, gates, extra


def _softmax_attend(q, keys, values, scale):
    if len(keys) == 0:
        return torch.zeros(values.shape[-1], dtype=F64)
    scores = torch.stack([scale * torch.dot(q, key) for key in keys])
    p = torch.softmax(scores, dim=0)
    return sum(pi * val for pi, val in zip(p, values))


def _overlap(i, j, c):
    lo, hi = max(i * c.cmp_stride, j * c.slc_block), min(i * c.cmp_stride + c.cmp_block, (j + 1) * c.slc_block)
    return max(0, hi - lo)


def _brute_force(q, k, v, k_cmp, v_cmp, gates, c, k_slc=None, v_slc=None, k_win=None, v_win=None):
    """NSA_SPEC.md read literally: one query token and one head at a time."""
    k_slc, v_slc = (k, v) if k_slc is None else (k_slc, v_slc)
    k_win, v_win = (k, v) if k_win is None else (k_win, v_win)
    batch, seq_len, q_heads, dk = q.shape
    kv_heads, dv = k.shape[2], v.shape[3]
    group, scale = q_heads // kv_heads, 1 / math.sqrt(dk)
    out = torch.zeros(batch, seq_len, q_heads, dv, dtype=F64)
    selections = {}
    for b in range(batch):
        for t in range(seq_len):
            n_cmp = (t + 1 - c.cmp_block) // c.cmp_stride + 1 if t + 1 >= c.cmp_block else 0
            current = t // c.slc_block
            for h in range(kv_heads):
                block_score = [0.0] * (current + 1)
                o_cmp = {}
                for hq in range(h * group, (h + 1) * group):
                    if n_cmp:
                        scores = torch.stack([scale * torch.dot(q[b, t, hq], k_cmp[b, i, h]) for i in range(n_cmp)])
                        p = torch.softmax(scores, dim=0)
                        o_cmp[hq] = sum(p[i] * v_cmp[b, i, h] for i in range(n_cmp))
                        for j in range(current + 1):
                            block_score[j] += float(sum(p[i] * _overlap(i, j, c) / c.cmp_stride for i in range(n_cmp)))
                    else:
                        o_cmp[hq] = torch.zeros(dv, dtype=F64)
                started = list(range(current + 1))
                if len(started) <= c.slc_count:
                    chosen = started
                else:
                    forced = {0, current, current - 1}
                    rest = sorted((j for j in started if j not in forced), key=lambda j: (-block_score[j], j))
                    chosen = sorted(forced) + rest[: c.slc_count - len(forced)]
                selections[(b, t, h)] = sorted(chosen)
                slc_keys = [s for j in sorted(chosen) for s in range(j * c.slc_block, min((j + 1) * c.slc_block, t + 1))]
                win_keys = list(range(max(0, t - c.window + 1), t + 1))
                for hq in range(h * group, (h + 1) * group):
                    o_slc = _softmax_attend(q[b, t, hq], k_slc[b, slc_keys, h], v_slc[b, slc_keys, h], scale)
                    o_win = _softmax_attend(q[b, t, hq], k_win[b, win_keys, h], v_win[b, win_keys, h], scale)
                    out[b, t, hq] = (gates[0][b, t, hq] * o_cmp[hq] + gates[1][b, t, hq] * o_slc
                                     + gates[2][b, t, hq] * o_win)
    return out, selections


@pytest.mark.parametrize(
    "seq_len,q_heads,kv_heads,dk,dv,config,separate",
    [
        (45, 2, 2, 8, 8, "8/4/16/4/32", False),  # G = 1
        (77, 8, 2, 12, 6, "8/4/16/4/32", True),  # G = 4, dk != dv, independent branch k/v
        (37, 16, 1, 8, 4, "4/2/8/3/8", False),  # G = 16, T not a multiple of any block
        (70, 4, 1, 6, 10, "8/8/16/5/20", False),  # cmp_block == cmp_stride
    ],
)
def test_reference_matches_brute_force(seq_len, q_heads, kv_heads, dk, dv, config, separate):
    c = NSAConfig.parse(config)
    q, k, v, k_cmp, v_cmp, gates, extra = _inputs(2, seq_len, q_heads, kv_heads, dk, dv, c, seed=seq_len, separate=separate)
    expected, selections = _brute_force(q, k, v, k_cmp, v_cmp, gates, c, **extra)
    got = nsa_attention_ref(q, k, v, k_cmp, v_cmp, *gates, c, **extra)
    assert rel_err(got, expected) < 1e-12
    indices = nsa_select_blocks(q, k_cmp, c)
    for (b, t, h), chosen in selections.items():
        row = [j for j in indices[b, t, h].tolist() if j >= 0]
        assert row == chosen, (b, t, h)


def _only(branch, gates):
    zero, one = torch.zeros_like(gates[0]), torch.ones_like(gates[0])
    return [one if i == branch else zero for i in range(3)]


def test_selection_covering_everything_is_full_attention():
    c = NSAConfig(8, 4, 16, 8, 16)  # n * l' = 128 >= T
    q, k, v, k_cmp, v_cmp, gates, _ = _inputs(2, 100, 8, 2, 16, 8, c, seed=1)
    got = nsa_attention_ref(q, k, v, k_cmp, v_cmp, *_only(1, gates), c)
    assert rel_err(got, full_attention_ref(q, k, v)) < 1e-12


def test_window_covering_everything_is_full_attention():
    c = NSAConfig(8, 4, 16, 4, 128)
    q, k, v, k_cmp, v_cmp, gates, _ = _inputs(2, 100, 4, 4, 8, 8, c, seed=2)
    got = nsa_attention_ref(q, k, v, k_cmp, v_cmp, *_only(2, gates), c)
    assert rel_err(got, full_attention_ref(q, k, v)) < 1e-12


def test_full_attention_ref_matches_sdpa():
    q, k, v, *_ = _inputs(2, 50, 8, 2, 16, 16, NSAConfig(), seed=3)
    expected = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.repeat_interleave(4, 2).transpose(1, 2), v.repeat_interleave(4, 2).transpose(1, 2),
        is_causal=True).transpose(1, 2)
    assert rel_err(full_attention_ref(q, k, v), expected) < 1e-12


def test_every_selection_holds_initial_and_local_blocks():
    c = NSAConfig(8, 4, 16, 4, 32)
    q, k, v, k_cmp, *_ = _inputs(2, 300, 8, 2, 16, 16, c, seed=4)
    indices = nsa_select_blocks(q, k_cmp, c)
    assert indices.shape == (2, 300, 2, 4)
    for t in range(300):
        current = t // c.slc_block
        rows = indices[:, t].reshape(-1, c.slc_count).tolist()
        for row in rows:
            chosen = [j for j in row if j >= 0]
            assert len(chosen) == min(current + 1, c.slc_count)
            assert {0, current, max(current - 1, 0)} <= set(chosen)
            assert all(0 <= j <= current for j in chosen)


def test_query_heads_of_a_group_share_the_selection():
    """Each query head's selection-branch output is attention over its KV group's selected blocks."""
    c = NSAConfig(8, 4, 16, 4, 32)
    q, k, v, k_cmp, v_cmp, gates, _ = _inputs(1, 120, 8, 2, 8, 8, c, seed=5)
    out = nsa_attention_ref(q, k, v, k_cmp, v_cmp, *_only(1, gates), c)
    indices = nsa_select_blocks(q, k_cmp, c)
    scale = 1 / math.sqrt(8)
    for t in (70, 100, 119):
        for hq in range(8):
            h = hq // 4
            keys = [s for j in indices[0, t, h].tolist() if j >= 0 for s in range(j * 16, min(j * 16 + 16, t + 1))]
            expected = _softmax_attend(q[0, t, hq], k[0, keys, h], v[0, keys, h], scale)
            assert torch.allclose(out[0, t, hq], expected, atol=1e-12)


@pytest.mark.slow
def test_gradients_reach_every_input():
    c = NSAConfig(4, 2, 8, 3, 8)
    q, k, v, k_cmp, v_cmp, gates, extra = _inputs(1, 21, 2, 1, 3, 2, c, seed=6, separate=True)
    tensors = [q, k, v, k_cmp, v_cmp, *gates, *extra.values()]
    for tensor in tensors:
        tensor.requires_grad_(True)

    def fn(q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, k_slc, v_slc, k_win, v_win):
        return nsa_attention_ref(q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, c,
                                 k_slc=k_slc, v_slc=v_slc, k_win=k_win, v_win=v_win)

    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-7)
    fn(*tensors).sum().backward()
    for tensor in tensors:
        if tensor is k or tensor is v:  # every branch has its own keys here: raw k/v are unused
            assert tensor.grad is None
        else:
            assert tensor.grad is not None and tensor.grad.abs().sum() > 0


@pytest.mark.slow
def test_gradients_reach_shared_kv_through_all_branches():
    c = NSAConfig(4, 2, 8, 3, 8)
    q, k, v, k_cmp, v_cmp, gates, _ = _inputs(1, 19, 4, 2, 3, 5, c, seed=7)
    tensors = [q, k, v, k_cmp, v_cmp, *gates]
    for tensor in tensors:
        tensor.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda *a: nsa_attention_ref(*a, c), tensors, eps=1e-6, atol=1e-7)
    nsa_attention_ref(*tensors, c).sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in tensors)


def test_mean_pool_known_answer():
    c = NSAConfig(4, 2, 8, 3, 8)
    x = torch.arange(10, dtype=F64).view(1, 10, 1, 1)
    pooled = mean_pool_compress(x, c)
    assert pooled.flatten().tolist() == [1.5, 3.5, 5.5, 7.5]
    assert mean_pool_compress(x[:, :3], c).shape == (1, 0, 1, 1)


def test_compression_mlp_starts_as_mean_pooling_and_learns():
    c = NSAConfig(8, 4, 16, 4, 32)
    mlp = CompressionMLP(16, c).double()
    x = torch.randn(2, 50, 3, 16, dtype=F64)
    assert mlp(x).shape == (2, c.num_cmp_blocks(50), 3, 16)
    assert torch.allclose(mlp(x), mean_pool_compress(x, c))
    mlp(x).square().sum().backward()
    assert mlp.fc2.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "text,message",
    [
        ("32/12/64/16/512", r"cmp_stride \(12\) must divide cmp_block"),
        ("32/16/40/16/512", "must divide slc_block"),
        ("32/16/64/2/512", "slc_count must be >= 3"),
        ("32/16/64/16/0", "window must be a positive integer"),
        ("32/16/64", "must be cmp_block/cmp_stride/slc_block/slc_count/window"),
        ("a/16/64/16/512", "five integers"),
    ],
)
def test_config_validation(text, message):
    with pytest.raises(ValueError, match=message):
        NSAConfig.parse(text)


def test_config_defaults_and_counts():
    c = NSAConfig()
    assert (c.cmp_block, c.cmp_stride, c.slc_block, c.slc_count, c.window) == (32, 16, 64, 16, 512)
    assert str(NSAConfig.parse("8/4/16/4/32")) == "8/4/16/4/32"
    assert c.num_cmp_blocks(31) == 0 and c.num_cmp_blocks(32) == 1 and c.num_cmp_blocks(65536) == 4095
    assert c.keys_per_query(65535) == 4095 + 16 * 64 + 512
    mean_keys = sum(c.keys_per_query(t) for t in range(0, 65536, 7)) / len(range(0, 65536, 7))
    assert 9.0 < (65536 / 2) / mean_keys < 9.3  # NSA_SPEC: about a 9.1x FLOP ratio at 64k


def test_bad_shapes_raise_value_error():
    c = NSAConfig(8, 4, 16, 4, 32)
    q, k, v, k_cmp, v_cmp, gates, _ = _inputs(1, 40, 6, 4, 8, 8, c, seed=8)
    with pytest.raises(ValueError, match="multiple of key/value heads"):
        nsa_attention_ref(q, k, v, k_cmp, v_cmp, *gates, c)
    q, k, v, k_cmp, v_cmp, gates, _ = _inputs(1, 40, 4, 2, 8, 8, c, seed=8)
    with pytest.raises(ValueError, match="k_cmp has shape"):
        nsa_attention_ref(q, k, v, k_cmp[:, :-1], v_cmp, *gates, c)
