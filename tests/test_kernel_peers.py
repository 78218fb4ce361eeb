"""`nsa-bench kernels --impl fla`: fla-core's parallel_nsa on the benchmark's inputs, or a row saying
why it cannot run (no GPU, not installed, a GQA group it does not take)."""

import sys
import types

import pytest
import torch

from nsa_bench.results import ResultWriter, Unsupported
from nsa_bench.suites import kernel_bench as kb
from nsa_bench.suites import kernel_cases as kc
from nsa_bench.suites import kernel_peers as kp
from nsa_bench.suites import kernel_spec as ks


def _spec(**changes):
    base = dict(seq_lens=(128,), q_heads=16, kv_heads=1, dk=16, dv=16, impls=("fa2", "fla"),
                modes=("fwd", "bwd", "decode"), stages=False, repeats=1, decode_batch=2)
    return ks.KernelBenchSpec(**{**ks.INTERPRET_SPEC.__dict__, **base, **changes})


def test_without_a_gpu_fla_rows_say_so_and_the_sweep_goes_on(tmp_path):
    rows = kb.run_sweep(_spec(), ResultWriter(tmp_path / "k.csv", metadata={}))
    fla = [r for r in rows if r["impl"] == "fla"]
    assert [r["mode"] for r in fla] == ["fwd", "bwd", "decode"]
    assert all(r["status"] == "unsupported: fla-core's parallel_nsa needs a CUDA GPU" for r in fla)
    assert all(r["status"] == "ok" for r in rows if r["impl"] == "fa2")


@pytest.fixture
def on_cuda(monkeypatch):
    """A spec that claims CUDA while the inputs stay on the CPU (nothing is launched)."""
    spec = _spec(interpret=False)
    monkeypatch.setattr(kp, "nsa_inputs", lambda s, t, b, **kw: kc.nsa_inputs(_spec(), t, b, **kw))
    return spec


def test_not_installed_is_a_row_that_says_how_to_install(on_cuda, monkeypatch):
    monkeypatch.setitem(sys.modules, "fla", None)
    with pytest.raises(Unsupported, match=r"fla-core is not installed \(pip install 'nsa-bench\[peers\]'\)"):
        kp.fla_case(on_cuda, 128, "fwd")


def test_a_group_below_16_is_unsupported(on_cuda):
    with pytest.raises(Unsupported, match="powers of 2 of at least 16, not 4"):
        kp.fla_case(_spec(interpret=False, q_heads=8, kv_heads=2), 128, "fwd")


@pytest.mark.parametrize("mode", ["fwd", "bwd", "decode"])
def test_parallel_nsa_gets_the_configs_selection_and_no_window_without_flash_attn(on_cuda, monkeypatch, mode):
    calls = []

    def parallel_nsa(q, k, v, g_cmp, g_slc, g_swa, **kwargs):
        calls.append((q.shape, k.shape, g_cmp.shape, kwargs))
        mix = (q * (g_slc + g_cmp).unsqueeze(-1)).sum(-1, keepdim=True) + (k.sum() + v.sum())  # every input used
        return mix.expand(*q.shape[:3], v.shape[-1]).contiguous()

    fla = types.ModuleType("fla")
    fla.__version__ = "0.6.0"
    ops, nsa = types.ModuleType("fla.ops"), types.ModuleType("fla.ops.nsa")
    nsa.parallel_nsa = parallel_nsa
    for name, module in (("fla", fla), ("fla.ops", ops), ("fla.ops.nsa", nsa)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "flash_attn", None)
    case = kp.fla_case(on_cuda, 128, mode)
    case.call()
    q_len, batch = (1, 2) if mode == "decode" else (128, 1)
    assert calls[-1] == ((batch, q_len, 16, 16), (batch, 128, 1, 16), (batch, q_len, 16),
                         {"block_counts": 4, "block_size": 16, "window_size": 0})
    assert "fla-core 0.6.0 parallel_nsa" in case.detail and "no window branch" in case.detail
    assert "not l=8/d=4" in case.detail



def test_without_a_gpu_nsa_triton_rows_say_so(tmp_path):
    rows = kb.run_sweep(_spec(impls=("nsa_triton",)), ResultWriter(tmp_path / "k.csv", metadata={}))
    assert [(r["mode"], r["status"]) for r in rows] == [
        ("fwd", "unsupported: native-sparse-attention-triton needs a CUDA GPU"),
        ("bwd", "unsupported: native-sparse-attention-triton needs a CUDA GPU"),
        ("decode", "unsupported: native-sparse-attention-triton's decode needs its own KV cache; not timed")]


def test_nsa_triton_not_installed_says_where_to_get_it(on_cuda, monkeypatch):
    monkeypatch.setitem(sys.modules, "native_sparse_attention", None)
    with pytest.raises(Unsupported, match="pip install git\\+https://github.com/XunhaoLai/native-sparse-attention-triton"):
        kp.nsa_triton_case(on_cuda, 128, "fwd")


@pytest.mark.parametrize("mode", ["fwd", "bwd"])
def test_nsa_triton_gets_varlen_inputs_the_config_and_the_compressed_kv(on_cuda, monkeypatch, mode):
    calls = {}

    def compressed_attention(q, k, v, kernel_size, kernel_stride, block_size, topk, cu_q, cu_k, max_q, max_k,
                             init_blocks, local_blocks):
        calls["cmp"] = (q.shape, k.shape, kernel_size, kernel_stride, block_size, topk, cu_q.tolist(), cu_k.tolist(),
                        max_q, max_k, init_blocks, local_blocks)
        return q * k.sum() + v.sum(), torch.zeros(1, q.shape[0], topk, dtype=torch.int32)

    def topk_sparse_attention(q, k, v, topk_idx, block_size, cu_seqlens):
        calls["slc"] = (q.shape, k.shape, topk_idx.shape, block_size, cu_seqlens.tolist())
        return q * (k.sum() + v.sum())

    ops = types.ModuleType("native_sparse_attention.ops")
    ops.compressed_attention, ops.topk_sparse_attention = compressed_attention, topk_sparse_attention
    monkeypatch.setitem(sys.modules, "native_sparse_attention", types.ModuleType("native_sparse_attention"))
    monkeypatch.setitem(sys.modules, "native_sparse_attention.ops", ops)
    case = kp.nsa_triton_case(on_cuda, 128, mode)
    grads = case.call()
    n_cmp = (128 - 8) // 4 + 1  # INTERPRET_SPEC's config 8/4/16/4/32
    assert calls["cmp"] == ((128, 16, 16), (n_cmp, 1, 16), 8, 4, 16, 4, [0, 128], [0, n_cmp], 128, n_cmp, 1, 2)
    assert calls["slc"] == ((128, 16, 16), (128, 1, 16), (1, 128, 4), 16, [0, 128])
    assert "no window branch" in case.detail
    if mode == "bwd":  # gradients reach q, k, v and the two gates it uses
        assert [tuple(g.shape) for g in grads] == [(1, 128, 16, 16), (1, 128, 1, 16), (1, 128, 1, 16), (1, 128, 16),
                                                   (1, 128, 16)]


def test_nsa_triton_past_32_bit_offsets_is_unsupported(on_cuda):
    """Its kernels index q with 32-bit offsets (an illegal memory access at T=256k, 64 heads,
    d=128): from 2^31 elements of q the row says so instead of crashing the sweep."""
    with pytest.raises(Unsupported, match=r"32-bit offsets: q has 2147483648 >= 2\^31 elements"):
        kp.nsa_triton_case(on_cuda, 2**31 // (16 * 16), "bwd")
