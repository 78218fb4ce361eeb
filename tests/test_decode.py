"""NSA decoding (NSACache + nsa_decode) against the PyTorch reference, under TRITON_INTERPRET=1.

A decode step must equal the last row of nsa_attention_ref over each sequence's whole prefix.
Batches mix lengths (below a compressed block, on and next to block and stride boundaries),
the cache is filled by a prefill and then grown by appends, every kernel output and scratch
buffer starts as NaN, and errors and tolerances are the shared ones (suites/kernel_check.py).
Inputs are seeded (tests/seeds.py).
"""

from __future__ import annotations

import pytest
import torch

from nsa_bench.kernels import CompressionMLP, NSACache, NSAConfig, mean_pool_compress, nsa_attention_ref, nsa_decode
from nsa_bench.kernels import triton_common
from nsa_bench.kernels.decode import decode_plan, make_decode_problem
from nsa_bench.kernels.reference import nsa_select_blocks
from nsa_bench.suites.kernel_check import rel_err, tolerance
from nsa_cases import replay_through_interpreter
from seeds import seed_for

pytestmark = pytest.mark.triton  # CI runs these under the newest Triton too (.ci/run)


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    monkeypatch.setattr(triton_common, "POISON_OUTPUTS", True)


class Problem:
    """Full random sequences [B, T, ...]; a cache holding a prefix of each, and the reference."""

    def __init__(self, batch, total, q_heads, kv_heads, dk, dv, config, dtype, *, separate=False, learned=False):
        self.seed = seed_for(batch, total, q_heads, kv_heads, dk, dv, config, dtype, separate, learned)
        gen = torch.Generator().manual_seed(self.seed)
        rnd = lambda *s: torch.randn(*s, generator=gen).to(dtype)  # noqa: E731
        self.config, self.dtype = config, dtype
        self.x = {"q": rnd(batch, total, q_heads, dk), "k": rnd(batch, total, kv_heads, dk),
                  "v": rnd(batch, total, kv_heads, dv)}
        for g in ("g_cmp", "g_slc", "g_win"):
            self.x[g] = torch.rand(batch, total, q_heads, generator=gen).to(dtype)
        if separate:
            for name, d in (("k_slc", dk), ("v_slc", dv), ("k_win", dk), ("v_win", dv)):
                self.x[name] = rnd(batch, total, kv_heads, d)
        self.branch_names = [n for n in ("k_slc", "v_slc", "k_win", "v_win") if n in self.x]
        self.modules = (None, None)
        if learned:  # a trained-looking module: nonzero last layer, so it is not mean pooling
            self.modules = tuple(CompressionMLP(d, config).to(dtype) for d in (dk, dv))
            for m in self.modules:
                torch.nn.init.normal_(m.fc2.weight, std=0.05, generator=gen)
        self.cache = NSACache(batch, total, kv_heads, dk, dv, config, dtype=dtype, device="cpu",
                              separate_slc=separate, separate_win=separate,
                              compress_k=self.modules[0], compress_v=self.modules[1])

    def compress(self, which, x):
        module = self.modules[which]
        return mean_pool_compress(x, self.config) if module is None else module(x)

    def prefill(self, lengths):
        t = max(lengths)
        part = {n: self.x[n][:, :t] for n in ["k", "v", *self.branch_names]}
        self.cache.prefill(part.pop("k"), part.pop("v"), lengths, **part)
        self.lengths = list(lengths)

    def append(self):
        new = {n: torch.stack([self.x[n][b, t] for b, t in enumerate(self.lengths)])[:, None]
               for n in ["k", "v", *self.branch_names]}
        self.cache.append(new.pop("k"), new.pop("v"), **new)
        self.lengths = [t + 1 for t in self.lengths]

    def last_rows(self, name):
        return torch.stack([self.x[name][b, t - 1] for b, t in enumerate(self.lengths)])[:, None]

    def decode(self, **kw):
        return nsa_decode(self.last_rows("q"), self.cache, *(self.last_rows(g) for g in ("g_cmp", "g_slc", "g_win")),
                          self.config, **kw)

    def reference(self, b):
        """Last row [HQ, dv] of nsa_attention_ref over sequence b's prefix, and its blocks [H, n]."""
        t = self.lengths[b]
        x = {n: v[b : b + 1, :t] for n, v in self.x.items()}
        with torch.no_grad():
            k_cmp, v_cmp = self.compress(0, x["k"]), self.compress(1, x["v"])
            extra = {n: x[n] for n in self.branch_names}
            out = nsa_attention_ref(x["q"], x["k"], x["v"], k_cmp, v_cmp, x["g_cmp"], x["g_slc"], x["g_win"],
                                    self.config, **extra)
            blocks = nsa_select_blocks(x["q"], k_cmp, self.config)
        return out[0, -1], blocks[0, -1]

    def check(self, **kw):
        out, blocks = self.decode(return_blocks=True, **kw)
        assert torch.isfinite(out).all(), f"unwritten or non-finite output (seed {self.seed})"
        for b, t in enumerate(self.lengths):
            ref, ref_blocks = self.reference(b)
            assert torch.equal(blocks[b, 0], ref_blocks), f"blocks differ at length {t} (seed {self.seed})"
            err = rel_err(out[b, 0], ref)
            assert err <= tolerance(self.dtype), f"rel err {err:.2e} at length {t} (seed {self.seed})"
        return out


@pytest.mark.slow
def test_prefill_then_appends_match_reference():
    """Mean pooling, fp32, G=2, dk != dv; lengths cross stride (4), block (8) and selection-block
    (16) boundaries while appending; small launch splits so every merge path runs."""
    config = NSAConfig.parse("8/4/16/4/32")
    p = Problem(3, 90, 4, 2, 16, 32, config, torch.float32)
    p.prefill([37, 63, 80])
    small = decode_plan(p.cache, 4, tiles=1, block_chunk=4, window_chunk=16, cmp_tile=16, blocks_per_program=1)
    assert small.p_cmp > 1 and small.p_sel > 1 and small.p_win > 1
    p.check()
    for _ in range(3):
        p.append()
        p.check(plan=small)
    assert p.cache.lengths.tolist() == [40, 66, 83]
    for b, t in enumerate(p.lengths):  # compressed tokens appended like the training compression
        want = mean_pool_compress(p.x["k"][b : b + 1, :t], config)[0]
        assert torch.allclose(p.cache.tokens("k_cmp", b), want, atol=1e-6)


@pytest.mark.slow
def test_separate_branches_learned_compression_fp16_short_lengths():
    """Independent selection/window k/v, a CompressionMLP, fp16, G=1: lengths below one
    compressed block, exactly one, and around the first strides."""
    config = NSAConfig.parse("8/4/16/4/32")
    p = Problem(5, 24, 2, 2, 32, 16, config, torch.float16, separate=True, learned=True)
    p.prefill([3, 7, 11, 14, 16])
    p.append()  # lengths 4, 8, 12, 15, 17: the first compressed token of sequence 1 comes from append
    p.check()
    # window programs with no token (16-token slices of a 32 window), and a sparse program whose
    # second and third ranks are past n
    p.check(plan=decode_plan(p.cache, 2, window_chunk=16, blocks_per_program=3))


@pytest.mark.slow
def test_paper_block_sizes_real_top_n():
    """l=32, d=16, l'=64 (compressed blocks span two selection blocks), n=4 of up to 12 blocks:
    the selection is a real choice; the default plan (compressed partials merged in the combine
    kernel) and a split plan (merged in the select kernel) agree with the reference."""
    config = NSAConfig.parse("32/16/64/4/128")
    p = Problem(2, 760, 16, 2, 16, 16, config, torch.float32)
    p.prefill([700, 745])
    default = decode_plan(p.cache, 16)
    split = decode_plan(p.cache, 16, tiles=1, block_chunk=4, window_chunk=32, cmp_tile=16, blocks_per_program=3)
    assert not default.merge_cmp_in_select and split.merge_cmp_in_select
    p.check()
    p.append()
    p.check(plan=split)


def test_every_scratch_slot_is_rewritten():
    """A second step after the scratch buffers are set to NaN gives the same output."""
    config = NSAConfig.parse("8/4/16/4/32")
    p = Problem(2, 60, 4, 2, 16, 16, config, torch.float32)
    p.prefill([29, 57])
    first = p.decode()
    scratch = [t for ws in p.cache.workspaces.values() if isinstance(ws, dict) for t in ws.values()]
    assert scratch, "no scratch buffers found: nothing would be poisoned"
    for t in scratch:
        t.fill_(float("nan") if t.is_floating_point() else -7)
    assert torch.equal(p.decode(), first)


def test_make_decode_problem_runs():
    config = NSAConfig.parse("8/4/16/4/32")
    q, cache, gates = make_decode_problem(2, 40, 4, 2, 16, 16, config, torch.float32, "cpu", lengths=[40, 21])
    assert cache.lengths.tolist() == [40, 21]
    out = nsa_decode(q, cache, *gates)
    assert out.shape == (2, 1, 4, 16) and torch.isfinite(out).all()


@pytest.mark.parametrize("change, message", [
    (lambda q, g: (q[:, :, :3], g), "multiple of the cache's KV heads"),
    (lambda q, g: (q.to(torch.float64), g), "like the cache"),
    (lambda q, g: (q, g[:, :, :2]), "g_cmp must be a tensor"),
])
def test_bad_inputs_raise(change, message):
    config = NSAConfig.parse("8/4/16/4/32")
    q, cache, gates = make_decode_problem(1, 20, 4, 2, 16, 16, config, torch.float32, "cpu")
    q, g = change(q, gates[0])
    with pytest.raises(ValueError, match=message):
        nsa_decode(q, cache, g, *gates[1:])


@pytest.mark.parametrize("out", ["not a tensor", torch.empty(1, 1, 4, 8)], ids=["str", "shape"])
def test_bad_output_raises(out):
    config = NSAConfig.parse("8/4/16/4/32")
    q, cache, gates = make_decode_problem(1, 20, 4, 2, 16, 16, config, torch.float32, "cpu")
    with pytest.raises(ValueError, match="out must be a tensor"):
        nsa_decode(q, cache, *gates, out=out)


def test_cache_rejects_overflow_and_bad_prefill():
    config = NSAConfig.parse("8/4/16/4/32")
    cache = NSACache(1, 8, 1, 16, dtype=torch.float32, device="cpu", config=config)
    k = torch.randn(1, 8, 1, 16)
    with pytest.raises(ValueError, match="lengths must be in"):
        cache.prefill(k, k, [9])
    cache.prefill(k, k)
    with pytest.raises(ValueError, match="max_len"):
        cache.append(k[:, :1], k[:, :1])
    with pytest.raises(ValueError, match="k_slc"):
        cache.prefill(k, k, k_slc=k, v_slc=k)


@pytest.fixture
def replayable(monkeypatch):
    return replay_through_interpreter(monkeypatch)


def test_replayed_steps_and_appends_match_reference(replayable):
    """Steps after the first replay the recorded launches with the new query, gates, output and
    new tokens; each still equals the reference, a changed layout records anew, and bad input
    after a recording still gets its ValueError."""
    config = NSAConfig.parse("8/4/16/3/16")
    p = Problem(2, 70, 4, 2, 16, 16, config, torch.float16)
    p.prefill([40, 53])
    p.check()
    assert "step" in p.cache.workspaces and replayable == []
    for _ in range(3):
        p.append()
        out = p.decode()  # replayed: no return_blocks
        for b in range(2):
            assert rel_err(out[b, 0], p.reference(b)[0]) <= tolerance(p.dtype)
    assert replayable.count("_decode_cmp_win_kernel") == 3 and replayable.count("_cache_append_kernel") == 2
    strided_q = torch.cat([p.last_rows("q"), p.last_rows("q")], dim=3)[..., :16]  # another layout
    out = nsa_decode(strided_q, p.cache, *(p.last_rows(g) for g in ("g_cmp", "g_slc", "g_win")), config)
    assert replayable.count("_decode_cmp_win_kernel") == 3  # recorded anew, not replayed
    assert rel_err(out[1, 0], p.reference(1)[0]) <= tolerance(p.dtype)
    with pytest.raises(ValueError, match="q must have shape"):
        nsa_decode(p.last_rows("q")[:1], p.cache, *(p.last_rows(g) for g in ("g_cmp", "g_slc", "g_win")))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="replays the compiled launcher: needs CUDA")
def test_replayed_step_on_gpu_equals_dispatch_and_captures():
    """On a GPU the second step goes through the compiled launchers: bit-equal to a step through
    Triton's dispatch, and a replayed step captured in a CUDA graph equals it too."""
    config = NSAConfig.parse("32/16/64/16/512")
    q, cache, gates = make_decode_problem(8, 8192, 64, 4, 128, 128, config, torch.bfloat16, "cuda")
    nsa_decode(q, cache, *gates)
    assert "step" in cache.workspaces
    q2 = torch.randn_like(q)
    replayed = nsa_decode(q2, cache, *gates)
    cache.workspaces.pop("step")
    dispatched = nsa_decode(q2, cache, *gates)
    assert torch.isfinite(replayed).all() and torch.equal(replayed, dispatched)
    out = torch.empty_like(replayed)
    nsa_decode(q2, cache, *gates, out=out)  # records the step with this output
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        nsa_decode(q2, cache, *gates, out=out)
    out.zero_()
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, dispatched)
