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
from nsa_bench.kernels import triton_common, triton_sparse
from nsa_bench.kernels.parallel import nsa_attention_with_indices, nsa_backward_stages
from nsa_bench.kernels.reference import _cmp_probs, _group_rows, _group_scores, _heads_first
from nsa_bench.kernels.reference_rows import nsa_rows_ref
from nsa_bench.suites.kernel_check import rel_err, tolerance
from nsa_cases import NAMES, as_float64, assert_close, call, make_dout, make_inputs, outputs_and_grads
from seeds import seed_for

pytestmark = pytest.mark.triton  # CI runs these under the newest Triton too (.ci/run)


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    monkeypatch.setattr(triton_common, "POISON_OUTPUTS", True)


# Outputs and gradients given the reference's selection: the matrix in test_triton_nsa_matrix.py.


@pytest.mark.slow
@pytest.mark.parametrize(
    "seq, q_heads, kv_heads, dk, dv, separate",
    [(60, 4, 1, 32, 16, True), (7, 2, 2, 16, 16, False)],  # T <= n*l' (no ranking needed); T < l (no block)
)
def test_public_api_matches_reference(seq, q_heads, kv_heads, dk, dv, separate):
    config = NSAConfig.parse("8/4/16/4/32")
    x, seed = make_inputs(1, seq, q_heads, kv_heads, dk, dv, config, torch.float16, separate)
    dout = make_dout((1, seq, q_heads, dv), seed)
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
    assert [name for name, _ in stages] == ["cmp_attn", "select", "slc_attn", "win_gated"]
    results = {name: f() for name, f in stages}
    assert torch.equal(results["select"], indices)
    assert torch.equal(results["win_gated"][0], out), f"seed {seed}"


def test_forward_without_gradients_matches_the_autograd_forward():
    """Without gradients to keep (no_grad, or no input requiring one) the window's output is not
    stored; the gated sum and the selection are those of the forward that keeps it, bit for bit."""
    config = NSAConfig.parse("8/4/16/4/32")
    x, seed = make_inputs(1, 53, 4, 2, 16, 16, config, torch.float16, separate=True)
    kept, kept_idx = call(nsa_attention_with_indices, {n: t.clone().requires_grad_() for n, t in x.items()}, config)
    plain, plain_idx = call(nsa_attention_with_indices, x, config)
    with torch.no_grad():
        no_grad, _ = call(nsa_attention_with_indices, {n: t.clone().requires_grad_() for n, t in x.items()}, config)
    assert kept.requires_grad and not plain.requires_grad and not no_grad.requires_grad
    assert torch.equal(kept_idx, plain_idx), f"seed {seed}"
    assert torch.equal(kept.detach(), plain) and torch.equal(plain, no_grad), f"seed {seed}"


BRANCH_GATES = {"cmp": "g_cmp", "slc": "g_slc", "win": "g_win"}


def branch_grads(x64, config, dout, indices, branches):
    """Autograd gradients of the float64 reference given `indices` with the gates of every
    branch not in `branches` set to zero: those branches' share of each gradient."""
    x = dict(x64)
    for branch, gate in BRANCH_GATES.items():
        if branch not in branches:
            x[gate] = torch.zeros_like(x[gate])
    seq = x["q"].shape[1]
    _, grads = outputs_and_grads(nsa_rows_ref, x, config, dout.double(), positions=torch.arange(seq),
                                 indices=indices, dtype=torch.float64)
    return grads


@pytest.mark.slow
@pytest.mark.parametrize("dtype, separate", [(torch.float16, False), (torch.float32, True)],
                         ids=["fp16-shared_kv", "fp32-separate_kv"])  # two of four: ~12 s each interpreted
def test_backward_stages_match_autograd(dtype, separate):
    """Each backward stage, run once in order, adds its branch's share of the gradients into the
    accumulators (nsa_backward_stages' `grads`); after every stage they equal the autograd
    gradients of the float64 reference given the kernel's own selection (T=70 has 5 selection
    blocks, 4 chosen: the selection is real)."""
    config = NSAConfig.parse("8/4/16/4/32")
    x, seed = make_inputs(1, 70, 4, 1, 32, 16, config, dtype, separate)
    with torch.no_grad():
        _, indices = call(nsa_attention_with_indices, x, config)
    dout = make_dout((1, 70, 4, 16), seed)
    stages = call(nsa_backward_stages, x, config, dout=dout.to(dtype))
    assert [name for name, _ in stages] == [
        "gate_grads", "cmp_dq", "cmp_dkv", "slc_index", "slc_dq", "slc_dkv", "win_dq", "win_dkv"]
    buf = stages.grads
    assert all(not buf[n].any() for n in buf if n not in ("q", "dq")), "accumulators must start at zero"
    assert buf["q"].isnan().all() and buf["dq"].isnan().all(), "dq buffers start poisoned: cmp_dq/win_dq write them whole"
    x64 = as_float64(x)
    total = branch_grads(x64, config, dout, indices, ("cmp", "slc", "win"))
    share = {b: branch_grads(x64, config, dout, indices, (b,)) for b in BRANCH_GATES}
    tol = tolerance(dtype, backward=True)

    def check(stage, name, want):
        got = buf[name]
        err = rel_err(got, want)
        assert err <= tol, f"after {stage}: d{name} err {err:.2e} (seed {seed})"

    kv = lambda branch, n: f"{n}_{branch}" if separate else n  # noqa: E731  gradient of that branch's k/v
    run = dict(stages)
    dgates = run["gate_grads"]()
    for gate, got in zip(("g_cmp", "g_slc", "g_win"), dgates):
        assert rel_err(got, total[gate]) <= tol, f"d{gate} err {rel_err(got, total[gate]):.2e} (seed {seed})"
    run["cmp_dq"]()
    check("cmp_dq", "q", share["cmp"]["q"])
    run["cmp_dkv"]()
    check("cmp_dkv", "k_cmp", total["k_cmp"])
    check("cmp_dkv", "v_cmp", total["v_cmp"])
    assert not buf["k"].any() and not buf["v"].any(), f"cmp_dkv wrote dk/dv (seed {seed})"
    run["slc_index"]()
    run["slc_dq"]()
    check("slc_dq", "q", share["cmp"]["q"] + share["slc"]["q"])
    run["slc_dkv"]()
    check("slc_dkv", "k_slc", share["slc"][kv("slc", "k")])
    check("slc_dkv", "v_slc", share["slc"][kv("slc", "v")])
    run["win_dq"]()
    check("win_dq", "dq", total["q"])
    check("win_dq", "q", share["cmp"]["q"] + share["slc"]["q"])  # the accumulator is only read
    run["win_dkv"]()
    for name in ("k_win", "v_win", "k_slc", "v_slc"):  # the window's share is in, the selection's kept
        check("win_dkv", name, total[kv(name[2:], name[0])])
    if separate:  # every branch has its own k/v: the shared ones get no gradient
        assert not buf["k"].any() and not buf["v"].any(), f"dk/dv should be zero (seed {seed})"


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


@pytest.mark.parametrize("keys", [32, 16])
@pytest.mark.parametrize("kernel", ["slc_fwd", "slc_dq"])
def test_descriptor_tiles_match_gathered_tiles(kernel, keys, monkeypatch):
    """The selected-block forward and dq give bit-identical results whether a key/value tile comes
    through a tensor descriptor (TMA on the GPU) or is gathered row by row, with tiles of a whole
    32-key block or of half of one (which agree with whole-block tiles to rounding): keys and values
    sliced from a wider tensor, two sequences, selections with -1 padding and blocks past t."""
    seed = seed_for(f"descriptor-{kernel}")
    gen = torch.Generator().manual_seed(seed)
    b, t, hq, h, d = 2, 80, 4, 2, 32
    config = NSAConfig.parse("16/8/32/4/64")
    rnd = lambda *s: torch.randn(*s, generator=gen).to(torch.float16)  # noqa: E731
    q, kv, do = rnd(b, t, hq, d), rnd(b, t, h, 3 * d), rnd(b, t, hq, d)
    k, v = kv[..., :d], kv[..., d: 2 * d]
    blocks = torch.randint(-1, t // 32 + 1, (b, t, h, 4), generator=gen).sort(-1).values.to(torch.int32)
    lse, delta = torch.randn(b, t, hq, generator=gen), torch.randn(b, t, hq, generator=gen)

    def run(tma, tile_keys):
        monkeypatch.setitem(triton_sparse.LAUNCH[kernel], "tma", tma)
        monkeypatch.setitem(triton_sparse.LAUNCH[kernel], "keys", tile_keys)
        if kernel == "slc_fwd":
            return triton_sparse.slc_attn_fwd(q, k, v, blocks, config, 0.2)
        dq = torch.full((b, t, hq, d), float("nan"))
        triton_sparse.slc_attn_bwd_dq(q, k, v, blocks, do, lse, delta, config, 0.2, dq)
        return (dq,)

    gathered, loaded = run(False, keys), run(True, keys)
    for a, c in zip(gathered, loaded):
        assert not c.isnan().any(), f"{kernel}: NaN (seed {seed})"
        assert torch.equal(a, c), f"{kernel}: descriptor tiles differ (seed {seed})"
    if keys < 32:
        for a, c in zip(run(False, 32), loaded):
            torch.testing.assert_close(c.float(), a.float(), atol=2e-3, rtol=2e-3,
                                       msg=lambda m: f"{kernel}: half-block tiles (seed {seed}): {m}")


def test_unaligned_keys_take_gathered_tiles():
    """Keys and values whose start is not 16-byte aligned (a slice at an odd element) cannot be a
    tensor map: the forward gathers their tiles instead, with the result of aligned copies."""
    seed = seed_for("unaligned-keys")
    gen = torch.Generator().manual_seed(seed)
    b, t, hq, h, d = 1, 70, 2, 1, 16
    config = NSAConfig.parse("16/8/32/4/64")
    q = torch.randn(b, t, hq, d, generator=gen).to(torch.float16)
    kv = torch.randn(b, t, h, 2 * d + 1, generator=gen).to(torch.float16)
    k, v = kv[..., 1: d + 1], kv[..., d + 1:]
    assert k.data_ptr() % 16 and triton_sparse.LAUNCH["slc_fwd"]["tma"]
    blocks = torch.randint(-1, t // 32 + 1, (b, t, h, 4), generator=gen).sort(-1).values.to(torch.int32)
    got = triton_sparse.slc_attn_fwd(q, k, v, blocks, config, 0.25)
    want = triton_sparse.slc_attn_fwd(q, k.contiguous(), v.contiguous(), blocks, config, 0.25)
    for a, c in zip(got, want):
        assert torch.equal(a, c), f"unaligned keys (seed {seed})"
