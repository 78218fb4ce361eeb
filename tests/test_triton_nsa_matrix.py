"""A flash-attention style test matrix of the Triton NSA against the float64 reference.

Forward outputs and every gradient of nsa_attention_with_indices, given the reference's own
selection (so near-tie block scores cannot flip a block), under the Triton interpreter on a CPU
and natively on a GPU; then the large GPU-only cases (marker `gpu`) at the paper's config.

How the matrix is cut (CI runs it twice, Triton 3.6 and the newest, on 2 CPU cores): the cheap
axes, dtype and separate k/v per branch, are a full product; the expensive ones, (dk, dv), GQA
group G (with kv_heads), T and the NSA config, are covered by the four SHAPES rows below so that
every value of every axis appears and every (config, T) pair appears once. bf16 is in the dtype
axis only on a GPU: the Triton 3.6 interpreter's tl.dot on bf16 returns garbage.
"""

from __future__ import annotations

import pytest
import torch

from nsa_bench.kernels import NSAConfig, nsa_attention, nsa_select_blocks
from nsa_bench.kernels import triton_common
from nsa_bench.kernels.parallel import _Prepared, nsa_attention_with_indices
from nsa_bench.kernels.reference_rows import nsa_rows_ref
from nsa_bench.suites.kernel_check import check_backward, check_forward, tolerance
from nsa_cases import NAMES, as_float64, assert_close, call, make_dout, make_inputs, outputs_and_grads

pytestmark = pytest.mark.triton  # CI runs these under the newest Triton too (.ci/run)

NO_GPU = not torch.cuda.is_available()
GPU_ONLY = [pytest.mark.gpu, pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU (too slow or unsupported "
                                                "under the Triton interpreter)")]

SMALL_A, SMALL_B = "8/4/16/4/32", "16/8/32/3/32"  # cmp_block/cmp_stride/slc_block/slc_count/window
# (batch, dk, dv, G, kv_heads, T, config). Short T lies below slc_count * slc_block (64 for A, 96
# for B: every block is chosen, no ranking); long T has more blocks than slc_count (A: 97 -> 7
# blocks, B: 161 -> 6), so the top-n ranking decides. Odd T leaves a partial last block.
SHAPES = [
    (2, 16, 16, 1, 2, 45, SMALL_A),
    (1, 16, 16, 16, 1, 97, SMALL_A),
    (1, 64, 32, 16, 1, 77, SMALL_B),
    (1, 32, 64, 4, 1, 161, SMALL_B),
]
DTYPES = [
    pytest.param(torch.float16, id="fp16"),
    pytest.param(torch.float32, id="fp32"),
    pytest.param(torch.bfloat16, id="bf16", marks=GPU_ONLY),
]


def shape_id(shape):
    batch, dk, dv, group, kv_heads, seq, cfg = shape
    return f"B{batch}-d{dk}x{dv}-G{group}kv{kv_heads}-T{seq}-{cfg.replace('/', '_')}"


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    monkeypatch.setattr(triton_common, "POISON_OUTPUTS", True)


@pytest.fixture
def device():
    return "cpu" if NO_GPU else "cuda"


@pytest.mark.slow
@pytest.mark.parametrize("separate", [False, True], ids=["shared_kv", "separate_kv"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_outputs_and_grads_given_the_reference_selection(shape, dtype, separate, device):
    batch, dk, dv, group, kv_heads, seq, cfg = shape
    config = NSAConfig.parse(cfg)
    short = seq < config.slc_count * config.slc_block
    assert short == (config.num_slc_blocks(seq) <= config.slc_count), "a short T must need no ranking"
    q_heads = group * kv_heads
    x, seed = make_inputs(batch, seq, q_heads, kv_heads, dk, dv, config, dtype, separate, device=device)
    indices = nsa_select_blocks(x["q"], x["k_cmp"], config)
    last_row = (indices[:, -1] >= 0).sum(-1)  # [B, H] blocks chosen by the last query row
    assert short or last_row.eq(config.slc_count).all(), "long T: the last row ranks its blocks"
    dout = make_dout((batch, seq, q_heads, dv), seed, device=device)
    out, grads = outputs_and_grads(nsa_attention_with_indices, x, config, dout, indices=indices)
    ref, ref_grads = outputs_and_grads(nsa_rows_ref, as_float64(x), config, dout.double(),
                                       positions=torch.arange(seq, device=device), indices=indices,
                                       dtype=torch.float64)
    assert_close(out, ref, grads, ref_grads, dtype, seed)


def _branch_slices(k_all, v_all, g_all, rest):
    """NSA inputs as the model passes them: branch i's k/v and gate are [:, :, i] slices."""
    return {**rest, "k": k_all[:, :, 0], "v": v_all[:, :, 0], "k_slc": k_all[:, :, 1], "v_slc": v_all[:, :, 1],
            "k_win": k_all[:, :, 2], "v_win": v_all[:, :, 2],
            "g_cmp": g_all[:, :, 0], "g_slc": g_all[:, :, 1], "g_win": g_all[:, :, 2]}


@pytest.mark.parametrize("batch", [1, 2])
def test_branch_slices_are_read_in_place(batch, device):
    """The model's layout: each branch's k/v a slice of one [B, T, 3, H, d] projection and the
    gates slices of one [B, T, 3, HQ] tensor. The kernels read the slices in place (no copy)
    and give exactly what they give on contiguous copies: output and every gradient."""
    config = NSAConfig.parse(SMALL_A)
    seq, kv_heads, q_heads, d = 97, 2, 8, 16
    x, seed = make_inputs(batch, seq, q_heads, kv_heads, d, d, config, torch.float16, device=device)
    rest = {n: x[n] for n in ("q", "k_cmp", "v_cmp")}
    gen = torch.Generator().manual_seed(seed)
    k_all, v_all = (torch.randn(batch, seq, 3, kv_heads, d, generator=gen).half().to(device) for _ in range(2))
    g_all = torch.rand(batch, seq, 3, q_heads, generator=gen).half().to(device)
    sliced = _branch_slices(k_all, v_all, g_all, rest)
    prepared = _Prepared(*[sliced[n] for n in NAMES[:8]], config, *[sliced[n] for n in NAMES[8:]], None)
    for name in ("k_slc", "v_win", "g_cmp", "g_win"):
        assert getattr(prepared, name).data_ptr() == sliced[name].data_ptr(), f"{name} was copied"
    indices = nsa_select_blocks(x["q"], x["k_cmp"], config)
    dout = make_dout((batch, seq, q_heads, d), seed, device=device).half()
    results = []
    for layout in ("slices", "contiguous"):
        leaves = [t.clone().requires_grad_() for t in (k_all, v_all, g_all, rest["q"], rest["k_cmp"], rest["v_cmp"])]
        inputs = _branch_slices(*leaves[:3], dict(zip(("q", "k_cmp", "v_cmp"), leaves[3:])))
        if layout == "contiguous":
            inputs = {n: t.contiguous() for n, t in inputs.items()}
        out = call(nsa_attention_with_indices, inputs, config, indices=indices)[0]
        out.backward(dout)
        results.append((out.detach(), [t.grad for t in leaves]))
    (out_sliced, grads_sliced), (out_dense, grads_dense) = results
    assert torch.isfinite(out_sliced).all() and torch.equal(out_sliced, out_dense), f"seed {seed}"
    for name, g, ref in zip(("k_all", "v_all", "g_all", "q", "k_cmp", "v_cmp"), grads_sliced, grads_dense):
        assert torch.equal(g, ref), f"d{name} differs (seed {seed})"


# ---- GPU only: the paper's config at lengths the interpreter cannot reach ----------------------------

PAPER = "32/16/64/16/512"


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(NO_GPU, reason="GPU-only large case (bf16, d=128, G=16, T>=4096): needs CUDA")
@pytest.mark.parametrize("seq, kv_heads", [(4096, 2), (8192, 1)], ids=["T4096-kv2", "T8192-kv1"])
def test_paper_config_on_gpu(seq, kv_heads):
    """bf16, dk=dv=128, G=16, config 32/16/64/16/512: the forward at 256 sampled rows against the
    float64 reference on those rows, the backward by the causal-prefix shortcut (1024 rows), both
    via suites/kernel_check.py; near-tie rows are left out there, and must be few."""
    config = NSAConfig.parse(PAPER)
    x, seed = make_inputs(1, seq, 16 * kv_heads, kv_heads, 128, 128, config, torch.bfloat16, device="cuda")
    args = {n: x[n] for n in NAMES[:8]}
    fwd = check_forward(nsa_attention, args, config, n_rows=256)
    assert fwd.max_rel_err <= tolerance(torch.bfloat16), f"forward err {fwd.max_rel_err:.2e} (seed {seed})"
    assert fwd.rows == 256 and fwd.tie_rows <= fwd.rows // 10, f"{fwd} (seed {seed})"
    bwd = check_backward(nsa_attention, args, config, prefix=1024)
    bwd_tol = tolerance(torch.bfloat16, backward=True)
    assert bwd.max_rel_err <= bwd_tol, f"backward err {bwd.max_rel_err:.2e} (seed {seed})"
    assert bwd.rows == 1024 and bwd.tie_rows <= bwd.rows // 10, f"{bwd} (seed {seed})"
