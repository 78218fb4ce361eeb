"""The Triton NSA (kernels/parallel.py) against the PyTorch reference, under TRITON_INTERPRET=1.

Seeded random inputs (tests/seeds.py; the seed is in each failure message), kernel outputs
poisoned with NaN before the kernels write, errors and tolerances the shared ones
(suites/kernel_check.py). Where near-equal
block scores could flip a selection, the selection is checked on its own and outputs and
gradients are compared with both sides given the same blocks.
"""

from __future__ import annotations

import pytest
import torch

from nsa_bench.kernels import NSAConfig, nsa_attention, nsa_attention_ref, nsa_forward_stages, nsa_select_blocks
from nsa_bench.kernels import triton_common
from nsa_bench.kernels.parallel import nsa_attention_with_indices, nsa_backward_stages
from nsa_bench.kernels.reference import _cmp_probs, _group_rows, _group_scores, _heads_first
from nsa_bench.kernels.reference_rows import nsa_rows_ref
from nsa_bench.suites.kernel_check import rel_err, tolerance
from seeds import seed_for

pytestmark = pytest.mark.triton  # CI runs these under the newest Triton too (.ci/run)

NAMES = ("q", "k", "v", "k_cmp", "v_cmp", "g_cmp", "g_slc", "g_win", "k_slc", "v_slc", "k_win", "v_win")


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    monkeypatch.setattr(triton_common, "POISON_OUTPUTS", True)


def make_inputs(batch, seq, q_heads, kv_heads, dk, dv, config, dtype, separate=False):
    """Random NSA inputs (dict of NAMES) and the seed they came from."""
    seed = seed_for(batch, seq, q_heads, kv_heads, dk, dv, config, dtype, separate)
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=gen).to(dtype)  # noqa: E731
    n_cmp = config.num_cmp_blocks(seq)
    x = {
        "q": rnd(batch, seq, q_heads, dk), "k": rnd(batch, seq, kv_heads, dk), "v": rnd(batch, seq, kv_heads, dv),
        "k_cmp": rnd(batch, n_cmp, kv_heads, dk), "v_cmp": rnd(batch, n_cmp, kv_heads, dv),
    }
    for g in ("g_cmp", "g_slc", "g_win"):
        x[g] = torch.rand(batch, seq, q_heads, generator=gen).to(dtype)
    if separate:
        x.update(k_slc=rnd(batch, seq, kv_heads, dk), v_slc=rnd(batch, seq, kv_heads, dv),
                 k_win=rnd(batch, seq, kv_heads, dk), v_win=rnd(batch, seq, kv_heads, dv))
    return x, seed


def call(fn, x, config, **kw):
    pos = [x[n] for n in NAMES[:8]]
    opt = {n: x[n] for n in NAMES[8:] if n in x}
    return fn(*pos, config, **opt, **kw)


def outputs_and_grads(fn, x, config, dout, **kw):
    leaves = {n: t.clone().requires_grad_() for n, t in x.items()}
    result = call(fn, leaves, config, **kw)
    out = result[0] if isinstance(result, tuple) else result
    out.backward(dout.to(out.dtype))
    return out.detach(), {n: t.grad for n, t in leaves.items()}


def assert_close(mine, ref, grads, ref_grads, dtype, seed):
    tol, grad_tol = tolerance(dtype), tolerance(dtype, backward=True)
    assert not torch.isnan(mine).any(), f"NaN in output (seed {seed})"
    assert rel_err(mine, ref) <= tol, f"output err {rel_err(mine, ref):.2e} (seed {seed})"
    for name, g in ref_grads.items():
        if g is None:  # unused by the reference (k, v when every branch has its own): zero here
            assert grads[name] is None or not grads[name].any(), f"d{name} should be zero (seed {seed})"
            continue
        assert grads[name] is not None and not torch.isnan(grads[name]).any(), f"d{name} missing/NaN (seed {seed})"
        assert rel_err(grads[name], g) <= grad_tol, f"d{name} err {rel_err(grads[name], g):.2e} (seed {seed})"


@pytest.mark.slow
@pytest.mark.parametrize(
    "batch, seq, q_heads, kv_heads, dk, dv, cfg, dtype, separate",
    [
        (1, 93, 4, 2, 32, 16, "8/4/16/4/32", torch.float32, False),
        (2, 45, 2, 2, 16, 32, "8/4/16/3/16", torch.float16, True),
    ],
)
def test_outputs_and_grads_given_the_reference_selection(batch, seq, q_heads, kv_heads, dk, dv, cfg, dtype, separate):
    config = NSAConfig.parse(cfg)
    x, seed = make_inputs(batch, seq, q_heads, kv_heads, dk, dv, config, dtype, separate)
    indices = nsa_select_blocks(x["q"], x["k_cmp"], config)
    dout = torch.randn(batch, seq, q_heads, dv)
    out, grads = outputs_and_grads(nsa_attention_with_indices, x, config, dout, indices=indices)
    positions = torch.arange(seq)
    ref, ref_grads = outputs_and_grads(nsa_rows_ref, x, config, dout, positions=positions, indices=indices)
    assert_close(out, ref, grads, ref_grads, dtype, seed)


@pytest.mark.slow
@pytest.mark.parametrize(
    "seq, q_heads, kv_heads, dk, dv, separate",
    [(60, 4, 1, 32, 16, True), (7, 2, 2, 16, 16, False)],  # T <= n*l' (no ranking needed); T < l (no block)
)
def test_public_api_matches_reference(seq, q_heads, kv_heads, dk, dv, separate):
    config = NSAConfig.parse("8/4/16/4/32")
    x, seed = make_inputs(1, seq, q_heads, kv_heads, dk, dv, config, torch.float16, separate)
    dout = torch.randn(1, seq, q_heads, dv)
    out, grads = outputs_and_grads(nsa_attention, x, config, dout)
    ref, ref_grads = outputs_and_grads(nsa_attention_ref, x, config, dout)
    assert_close(out, ref, grads, ref_grads, torch.float16, seed)


def reference_block_scores(q, k_cmp, config):
    """[B, T, H, N_slc] importance scores of the reference (float64)."""
    seq = q.shape[1]
    qg = _group_rows(_heads_first(q, torch.float64), k_cmp.shape[2])
    probs = _cmp_probs(qg, _heads_first(k_cmp, torch.float64), torch.arange(seq), config, q.shape[-1] ** -0.5)
    return _group_scores(probs, config, seq).permute(0, 2, 1, 3)


@pytest.mark.slow
@pytest.mark.parametrize(
    "seq, q_heads, kv_heads, cfg",
    # the last case has 38 selection blocks: three chunks of 16, so the running top list is merged
    [(150, 4, 1, "8/4/16/5/32"), (260, 16, 1, "16/8/32/4/64"), (330, 2, 2, "32/16/64/4/64"),
     (600, 2, 1, "8/4/16/6/32")],
)
def test_selection_matches_reference(seq, q_heads, kv_heads, cfg):
    config = NSAConfig.parse(cfg)
    x, seed = make_inputs(1, seq, q_heads, kv_heads, 16, 16, config, torch.float32)
    out, mine = call(nsa_attention_with_indices, x, config)
    ref_idx = nsa_select_blocks(x["q"], x["k_cmp"], config)
    differ = (mine.long() != ref_idx).any(-1)
    # a differing row must be a near tie: the blocks only one side chose score (almost) the same
    scores = reference_block_scores(x["q"], x["k_cmp"], config)
    for b, t, h in differ.nonzero().tolist():
        a = {int(j) for j in mine[b, t, h] if j >= 0}
        r = {int(j) for j in ref_idx[b, t, h] if j >= 0}
        s = scores[b, t, h]
        gap = abs(sum(s[j] for j in a - r) - sum(s[j] for j in r - a))
        assert len(a) == len(r) and gap < 1e-5 * float(s.max()), f"row {(b, t, h)}: {a} vs {r} (seed {seed})"
    assert differ.float().mean() < 0.02, f"{int(differ.sum())} rows differ (seed {seed})"
    ref = nsa_attention_ref(*[x[n] for n in NAMES[:8]], config)
    same = ~differ.any(-1)  # [B, T]: rows whose every KV head chose the reference's blocks
    assert not torch.isnan(out).any()
    assert rel_err(out[same], ref[same]) <= tolerance(torch.float32), f"seed {seed}"


@pytest.mark.slow
def test_stage_api_reproduces_the_forward():
    config = NSAConfig.parse("8/4/16/4/32")
    x, seed = make_inputs(1, 40, 2, 1, 16, 16, config, torch.float16)
    out, indices = call(nsa_attention_with_indices, x, config)
    stages = call(nsa_forward_stages, x, config)
    assert [name for name, _ in stages] == ["cmp_attn", "select", "slc_attn", "win_attn", "combine"]
    results = {name: f() for name, f in stages}
    assert torch.equal(results["select"], indices)
    assert torch.equal(results["combine"], out), f"seed {seed}"
    bwd = call(nsa_backward_stages, x, config, dout=torch.randn_like(out))
    assert [name for name, _ in bwd] == [
        "gate_grads", "cmp_dq", "cmp_dkv", "slc_index", "slc_dq", "slc_dkv", "win_dq", "win_dkv"]
    for _, f in bwd:
        f()


@pytest.mark.parametrize(
    "q_heads, kv_heads, dk, cfg, dtype, message",
    [
        (3, 1, 16, "8/4/16/4/32", torch.float16, "query heads per KV head"),
        (2, 1, 24, "8/4/16/4/32", torch.float16, "dk a multiple of 16"),
        (2, 1, 16, "32/16/16/4/32", torch.float16, "cmp_block <= slc_block"),
        (2, 1, 16, "16/16/48/4/64", torch.float16, "slc_block in"),
        (2, 1, 16, "8/4/16/4/32", torch.float64, "float16, bfloat16"),
    ],
)
def test_unsupported_inputs_raise_value_error(q_heads, kv_heads, dk, cfg, dtype, message):
    config = NSAConfig.parse(cfg)
    x, _ = make_inputs(1, 40, q_heads, kv_heads, dk, 16, config, dtype)
    with pytest.raises(ValueError, match=message):
        call(nsa_attention, x, config)
