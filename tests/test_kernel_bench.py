"""`nsa-bench kernels`: FLOP/byte accounting, timing helpers, the reference check, the sweep's
failure rows, the CLI's GPU gate, and the --interpret smoke run end to end."""

import math
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import nsa_bench.kernels as kernels
from nsa_bench.errors import UsageError
from nsa_bench.flops import (
    Problem,
    full_attention_bytes,
    full_attention_flops,
    nsa_attention_matmul_flops,
    nsa_bytes,
    nsa_ceiling,
    nsa_flops,
    nsa_key_counts,
    nsa_stage_flops,
    parse_size,
)
from nsa_bench.kernels import NSAConfig, mean_pool_compress, nsa_attention_ref
from nsa_bench.kernels.reference import overlap_weights
from nsa_bench.results import ResultWriter
from nsa_bench.suites import kernel_bench as kb
from nsa_bench.suites import kernel_cases as kc
from nsa_bench.suites import kernel_spec as ks
from nsa_bench.suites.kernel_check import check_backward, check_forward, check_rows, reference_rows, tolerance
from nsa_bench.timing import backward_call, summarize, time_calls

pytestmark = pytest.mark.triton  # CI runs these under the newest Triton too (.ci/run)

PAPER = NSAConfig()
SMALL = NSAConfig.parse("8/4/16/4/32")


# ---- sizes and FLOP / byte counts -----------------------------------------------------------------

@pytest.mark.parametrize("text,value", [("8k", 8192), ("64K", 65536), ("65536", 65536), (" 16k ", 16384), ("1m", 1 << 20),
                                        ("1.5k", 1536), ("8.5k", 8704), ("3000", 3000)])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "k", "8q", "-8k", "0", "1.3k", "0.5", "8kk"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_full_attention_flops_known_answers():
    t, hq, d = 8192, 64, 128
    p = Problem(t, 1, hq, 4, d, d)
    assert full_attention_flops(p, "fwd") == 4 * d * t**2 / 2 * hq
    assert full_attention_flops(p, "bwd") == 2.5 * 4 * d * t**2 / 2 * hq
    decode = Problem(t, 8, hq, 4, d, d)
    assert full_attention_flops(decode, "decode") == 4 * d * t * hq * 8
    wide = Problem(t, 2, hq, 4, 192, 128)  # dk for QK^T, dv for PV
    assert full_attention_flops(wide, "fwd") == 2 * (192 + 128) * t**2 / 2 * hq * 2


def test_decode_bytes_known_answer():
    t, b, hq, h, d = 4096, 8, 64, 4, 128
    p = Problem(t, b, hq, h, d, d, "bf16")
    assert full_attention_bytes(p, "decode") == 2 * b * (t * h * 2 * d + hq * 2 * d)
    nsa_tokens = PAPER.keys_per_query(t - 1)
    assert nsa_bytes(p, PAPER, "decode") == 2 * b * (nsa_tokens * h * 2 * d + hq * 2 * d + 3 * hq)


@pytest.mark.parametrize("config", [PAPER, SMALL, NSAConfig.parse("16/16/16/3/16")])
@pytest.mark.parametrize("seq_len", [1, 7, 31, 100, 1000, 3000])
def test_branch_keys_sum_to_keys_per_query(config, seq_len):
    counts = nsa_key_counts(seq_len, config)
    assert counts.keys == sum(config.keys_per_query(t) for t in range(seq_len))
    assert counts.cmp == sum(config.num_cmp_blocks(t + 1) for t in range(seq_len))
    assert counts.win == sum(min(config.window, t + 1) for t in range(seq_len))
    assert counts.candidates == sum(t // config.slc_block + 1 for t in range(seq_len))


@pytest.mark.parametrize("config", [PAPER, SMALL])
def test_importance_overlaps_match_the_reference_weights(config):
    seq_len = 700
    n_slc = config.num_slc_blocks(seq_len)
    nonzero = (overlap_weights(config, config.num_cmp_blocks(seq_len), n_slc) > 0).sum(dim=1).tolist()
    expect = sum(sum(nonzero[: config.num_cmp_blocks(t + 1)]) for t in range(seq_len))
    assert nsa_key_counts(seq_len, config).overlaps == expect


def test_paper_config_at_64k_is_about_9x_fewer_flops():
    """NSA_SPEC.md: about 2048 + 1024 + 512 = 3584 keys per query at T=65536, against 32768."""
    t = 65536
    counts = nsa_key_counts(t, PAPER)
    assert 3500 < counts.keys / t < 3600
    assert abs(counts.cmp / t - 2048) < 10 and abs(counts.win / t - 512) < 5 and abs(counts.slc / t - 1024) < 40
    p = Problem(t, 1, 64, 4, 128, 128)
    ratio = nsa_ceiling(p, PAPER, "fwd")
    assert ratio == pytest.approx(full_attention_flops(p, "fwd") / nsa_attention_matmul_flops(p, PAPER))
    assert 9.0 < ratio < 9.3
    assert nsa_ceiling(p, PAPER, "bwd") == ratio  # 2.5x on both sides


@pytest.mark.parametrize("t,expect", [(8192, 4.0), (16384, 6.4), (32768, 9.1), (65536, 11.6)])
def test_decode_ceiling_is_the_papers_table(t, expect):
    p = Problem(t, 8, 64, 4, 128, 128)
    assert nsa_ceiling(p, PAPER, "decode") == pytest.approx(expect, abs=0.05)


def test_nsa_backward_is_2_5x_the_matmuls_plus_the_elementwise_work():
    p = Problem(4096, 2, 16, 2, 64, 64)
    elementwise = nsa_stage_flops(p, PAPER, "compress") + nsa_stage_flops(p, PAPER, "gates")
    assert nsa_flops(p, PAPER, "bwd") == pytest.approx(2.5 * nsa_attention_matmul_flops(p, PAPER) + elementwise)
    fwd = nsa_flops(p, PAPER, "fwd")
    assert fwd == pytest.approx(sum(nsa_stage_flops(p, PAPER, s) for s in
                                    ("compress", "cmp_attn", "importance", "topk", "slc_attn", "win_attn", "gates")))


def test_stage_flops_follow_the_kernel_stage_names():
    spec = ks.KernelBenchSpec(q_heads=16, kv_heads=2, dk=64, dv=64)
    p = spec.problem(2048, "fwd")
    cmp = nsa_stage_flops(p, PAPER, "cmp_attn")
    assert kc.stage_flops(spec, 2048, "fwd", "cmp_attn") == cmp
    assert kc.stage_flops(spec, 2048, "fwd", "select") == nsa_stage_flops(p, PAPER, "importance")
    win_gated = nsa_stage_flops(p, PAPER, "win_attn") + nsa_stage_flops(p, PAPER, "gates")
    assert kc.stage_flops(spec, 2048, "fwd", "win_gated") == win_gated
    assert kc.stage_flops(spec, 2048, "bwd", "cmp_bwd") == 2.5 * cmp  # fused: all five matmuls
    assert kc.stage_flops(spec, 2048, "bwd", "cmp_dq") == 1.5 * cmp  # QK^T, dP, dQ
    assert kc.stage_flops(spec, 2048, "bwd", "win_dkv") == 2.0 * nsa_stage_flops(p, PAPER, "win_attn")
    assert kc.stage_flops(spec, 2048, "bwd", "gate_grads") == nsa_stage_flops(p, PAPER, "gates")
    assert kc.stage_flops(spec, 2048, "bwd", "slc_index") == 0
    assert math.isnan(kc.stage_flops(spec, 2048, "fwd", "no_such_stage"))


# ---- timing ----------------------------------------------------------------------------------------

def test_summarize_median_and_percentiles():
    t = summarize([float(x) for x in range(10, 0, -1)])
    assert (t.ms, t.ms_p20, t.ms_p80, t.repeats) == (5.5, pytest.approx(2.8), pytest.approx(8.2), 10)


def test_time_calls_warms_up_then_times_each_repeat():
    calls = []
    t = time_calls(lambda: calls.append(1), warmup=2, repeats=3, device="cpu")
    assert len(calls) == 5 and t.repeats == 3 and t.ms >= 0
    with pytest.raises(ValueError):
        time_calls(lambda: None, warmup=0, repeats=0, device="cpu")


def test_backward_call_reruns_only_the_backward():
    forwards = []
    x = torch.randn(5, requires_grad=True)

    def forward():
        forwards.append(1)
        return x * 3.0

    out = forward()
    grad = torch.arange(5.0)
    run = backward_call(out, [x], grad)
    for _ in range(3):  # the graph is kept between calls
        (gx,) = run()
        assert torch.equal(gx, 3.0 * grad)
    assert len(forwards) == 1 and x.grad is None


# ---- the reference check ---------------------------------------------------------------------------

def _problem(seq_len, config, b=2, hq=4, h=2, dk=16, dv=8, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, seq_len, hq, dk, generator=g, dtype=dtype)
    k = torch.randn(b, seq_len, h, dk, generator=g, dtype=dtype)
    v = torch.randn(b, seq_len, h, dv, generator=g, dtype=dtype)
    gates = [torch.rand(b, seq_len, hq, generator=g, dtype=dtype) for _ in range(3)]
    return dict(q=q, k=k, v=v, k_cmp=mean_pool_compress(k, config), v_cmp=mean_pool_compress(v, config),
                g_cmp=gates[0], g_slc=gates[1], g_win=gates[2])


@pytest.mark.parametrize("config,seq_len", [(SMALL, 5), (SMALL, 150), (PAPER, 1100), (NSAConfig.parse("16/16/16/3/16"), 77)])
def test_rows_reference_equals_the_reference(config, seq_len):
    args = _problem(seq_len, config)
    rows = check_rows(seq_len, 40)
    got, ties = reference_rows(args, config, rows)
    want = nsa_attention_ref(**args, config=config)[:, rows]
    assert ties.shape == (2, rows.numel())
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_check_rows_cover_both_ends():
    rows = check_rows(65536, 1024)
    assert rows.numel() == 1024 and rows[0] == 0 and rows[-1] == 65535 and bool((rows.diff() > 0).all())
    assert torch.equal(check_rows(100, 1024), torch.arange(100))


def test_check_forward_measures_the_error():
    args = _problem(200, SMALL)
    assert check_forward(nsa_attention_ref, args, SMALL, 64).max_rel_err < 1e-12

    def off_by_5_percent(**kw):
        return nsa_attention_ref(**kw) * 1.05

    result = check_forward(off_by_5_percent, args, SMALL, 64)
    assert result.max_rel_err == pytest.approx(0.05, rel=1e-9) and result.rows == 64


def test_check_backward_measures_every_gradient():
    args = _problem(120, SMALL)
    assert check_backward(nsa_attention_ref, args, SMALL, 60).max_rel_err < 1e-12

    def no_window_gate_grad(**kw):
        return nsa_attention_ref(**{**kw, "g_win": kw["g_win"].detach()})

    assert check_backward(no_window_gate_grad, args, SMALL, 60).max_rel_err == pytest.approx(1.0)


# ---- options and the sweep ---------------------------------------------------------------------------

def _options(**given):
    base = dict(interpret=False, out="results", reports="reports", tag=None, seq=None, nsa_config=None,
                impl=None, mode=None, stages=True)
    return ks.spec_from_options(**{**base, **given})


def test_options_defaults_are_the_h100_setup():
    spec, command = _options()
    assert (spec.seq_lens, spec.batch, spec.q_heads, spec.kv_heads, spec.dk, spec.dv, spec.dtype) == (
        (8192, 16384, 32768, 65536), 1, 64, 4, 128, 128, "bf16")
    assert str(spec.nsa) == "32/16/64/16/512" and spec.decode_batch == 8 and spec.impls == ("fa2", "cudnn", "nsa")
    assert command.startswith("nsa-bench kernels --seq 8192,16384,32768,65536 ")
    assert spec.l2_flush == "read" and "--l2-flush read" in command


def test_options_parse_and_override():
    spec, command = _options(seq="8k,64k,65536", nsa_config="32/16/64/16/512", window=256, impl="nsa,ref",
                             mode="decode", batch=2)
    assert spec.seq_lens == (8192, 65536, 65536) and spec.nsa == NSAConfig(window=256)
    assert spec.impls == ("nsa", "ref") and spec.modes == ("decode",) and spec.batch == 2
    assert "--nsa-config 32/16/64/16/256" in command
    interp, _ = _options(interpret=True)
    assert interp.interpret and interp.device.type == "cpu" and interp.dtype == "fp16"


@pytest.mark.parametrize("given", [dict(impl="nsa,fa3"), dict(mode="train"), dict(seq="8k,x"), dict(dtype="fp8"),
                                   dict(q_heads=6, kv_heads=4), dict(nsa_config="32/16/64"), dict(tag="a/b"),
                                   dict(l2_flush="zero")])
def test_bad_options_are_usage_errors(given):
    with pytest.raises(UsageError):
        _options(**given)


@pytest.mark.parametrize("flush", ["read", "write", "none"])
def test_rows_name_the_l2_flush_they_were_timed_with(flush):
    spec, command = _options(l2_flush=flush)
    row = kb.empty_row(spec, "nsa", "fwd", 8192)
    assert row["timing"] == kb.CUDA_TIMING[flush] and f"--l2-flush {flush}" in command
    assert time_calls(lambda: None, warmup=0, repeats=2, device="cpu", flush=flush).repeats == 2


def test_time_calls_rejects_an_unknown_flush():
    with pytest.raises(ValueError, match="flush must be one of"):
        time_calls(lambda: None, warmup=0, repeats=1, device="cpu", flush="zero")


def _tiny_spec(**changes):
    base = dict(seq_lens=(48,), q_heads=2, kv_heads=1, dk=16, dv=16, impls=("fa2", "nsa"), modes=("fwd", "bwd"),
                stages=False, repeats=1)
    return ks.KernelBenchSpec(**{**ks.INTERPRET_SPEC.__dict__, **base, **changes})


@pytest.mark.slow
@pytest.mark.parametrize("error,status", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80 GiB"), "oom"),
    (ValueError("Triton NSA supports slc_block in (16, 32, 64, 128)"), "unsupported: ValueError: Triton NSA supports"),
    (RuntimeError("boom"), "error: RuntimeError: boom"),
])
def test_failures_become_rows_and_the_sweep_goes_on(tmp_path, monkeypatch, error, status):
    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(kernels, "nsa_attention", failing)
    writer = ResultWriter(tmp_path / "k.csv", metadata={"gpu": "test"})
    rows = kb.run_sweep(_tiny_spec(), writer)
    assert [(r["impl"], r["mode"]) for r in rows] == [("fa2", "fwd"), ("nsa", "fwd"), ("fa2", "bwd"), ("nsa", "bwd")]
    assert all(r["status"] == "ok" for r in rows if r["impl"] == "fa2")
    assert all(r["status"].startswith(status) for r in rows if r["impl"] == "nsa")
    saved = pd.read_csv(tmp_path / "k.csv")
    assert len(saved) == 4 and set(kb.COLUMNS) <= set(saved.columns) and (saved["gpu"] == "test").all()


def test_a_lost_gpu_writes_the_failed_row_and_stops_the_sweep(tmp_path, monkeypatch):
    """An illegal memory access is sticky: after it every CUDA call fails, so the failed case's
    row is written and the sweep stops with DeviceLost instead of a traceback per row."""
    lost = []

    def failing(*args, **kwargs):
        lost.append(True)
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    def empty_cache():
        if lost:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(kernels, "nsa_attention", failing)
    monkeypatch.setattr(kb.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(kb.torch.cuda, "empty_cache", empty_cache)
    with pytest.raises(kb.DeviceLost, match="illegal memory access") as raised:
        kb.run_sweep(_tiny_spec(), ResultWriter(tmp_path / "k.csv", metadata={}))
    assert raised.value.row["impl"] == "nsa" and raised.value.row["mode"] == "fwd"
    saved = pd.read_csv(tmp_path / "k.csv")
    assert list(saved["impl"]) == ["fa2", "nsa"] and saved["status"].iloc[1].startswith(
        "error: RuntimeError: CUDA error: an illegal memory access")


def test_a_wrong_kernel_is_flagged_but_still_timed(tmp_path, monkeypatch):
    monkeypatch.setattr(kernels, "nsa_attention", lambda *a, **kw: nsa_attention_ref(*a, **kw) * 1.5)
    rows = kb.run_sweep(_tiny_spec(modes=("fwd",)), ResultWriter(tmp_path / "k.csv", metadata={}))
    nsa = rows[1]
    assert nsa["status"].startswith("error: differs from the reference") and nsa["max_rel_err"] > 0.3
    assert nsa["ms"] > 0 and nsa["speedup_fa2"] > 0 and nsa["ceiling"] == pytest.approx(
        nsa_ceiling(Problem(48, 1, 2, 1, 16, 16, "fp16"), SMALL, "fwd"))


@pytest.mark.slow

def test_beyond_baseline_max_len_nsa_runs_alone_and_the_baseline_rows_say_why(tmp_path):
    spec = _tiny_spec(modes=("fwd", "bwd", "decode"), baseline_max_len=32)
    rows = kb.run_sweep(spec, ResultWriter(tmp_path / "k.csv", metadata={}))
    status = {(r["impl"], r["mode"]): r["status"] for r in rows}
    assert status[("fa2", "fwd")].startswith("unsupported: full attention's fwd is not timed beyond --baseline-max-len 32")
    assert status[("fa2", "bwd")].startswith("unsupported: full attention's bwd is not timed beyond")
    assert status[("fa2", "decode")] == "ok"  # a decode step of full attention is cheap at any length
    assert all(status[("nsa", m)] == "ok" for m in ("fwd", "bwd", "decode"))
    assert all(math.isnan(r["speedup_fa2"]) for r in rows if r["impl"] == "nsa" and r["mode"] != "decode")


# ---- the command -------------------------------------------------------------------------------------

def _cli(*args, env=None):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} if env is None else env
    return subprocess.run([sys.executable, "-m", "nsa_bench.cli", "kernels", *args], capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU gate only shows without a GPU")
def test_without_a_gpu_one_line_and_exit_2():
    proc = _cli("--seq", "8k")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == "nsa-bench: error: nsa-bench kernels needs a CUDA GPU; use --interpret for a CPU smoke run"


@pytest.mark.slow
@pytest.mark.parametrize("interpret", [("--interpret",), ()], ids=["interpret", "gpu-run"])
def test_bad_sizes_are_one_line_and_exit_2(interpret):
    proc = _cli(*interpret, "--seq", "8q")  # a bad option is named first, GPU or not
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "bad size '8q'" in proc.stderr


@pytest.mark.slow
def test_interpret_smoke_end_to_end(tmp_path):
    """The whole pipeline on the CPU under the Triton interpreter: CSV rows, PNGs and markdown.
    T=96 with 8/4/16/4/32 has 6 selection blocks of which 4 are chosen: selection is sparse."""
    proc = _cli("--interpret", "--seq", "96", "--repeats", "1", "--out", str(tmp_path / "results"),
                "--reports", str(tmp_path / "reports"), "--tag", "smoke")
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(tmp_path / "results" / "kernels_smoke.csv")
    assert set(kb.COLUMNS) <= set(df.columns)
    assert {"gpu", "torch", "triton", "git_rev", "fa2_baseline", "timestamp", "copy_gbps", "command"} <= set(df.columns)
    assert (df["timing"] == kb.INTERPRETER_TIMING).all() and (df["kind"] == "kernel").all()
    whole = df[~df["impl"].str.startswith("nsa:")].set_index(["impl", "mode"])
    for mode in ("fwd", "bwd", "decode"):
        assert whole.loc[("fa2", mode), "status"] == "ok" and whole.loc[("fa2", mode), "speedup_fa2"] == 1.0
    assert whole.loc[("ref", "decode"), "status"].startswith("unsupported")
    assert whole.loc[("ref", "fwd"), "status"] == "ok"
    stages = df[df["impl"].str.startswith("nsa:")]
    assert {"nsa:compress", "nsa:cmp_attn"} <= set(stages[stages["mode"] == "fwd"]["impl"])
    for mode in ("fwd", "bwd"):
        row = whole.loc[("nsa", mode)]
        assert row["status"] == "ok", row["status"]
        assert row["max_rel_err"] < tolerance("fp16", backward=mode == "bwd") and row["check_rows"] > 0
        assert row["ms"] > 0 and row["tflops"] > 0 and row["ceiling"] > 0 and not np.isnan(row["speedup_fa2"])
    row = whole.loc[("nsa", "decode")]
    assert row["status"] == "ok" and row["max_rel_err"] < tolerance("fp16") and row["gbps"] > 0
    reports = tmp_path / "reports"
    for name in ("speedup", "stages", "decode_gbps"):
        png = reports / f"kernels_smoke_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (reports / "kernels_smoke.md").read_text()
    for text in ("![speedup](kernels_smoke_speedup.png)", "![stages](kernels_smoke_stages.png)",
                 "![decode](kernels_smoke_decode_gbps.png)", "| T | impl | status | ms (p20-p80) | TFLOP/s | GB/s |",
                 "interpreter", "## Forward", "## Backward", "## Decode", "nsa-bench kernels --interpret --seq 96"):
        assert text in md


def test_full_attention_decode_baseline_reads_each_kv_head_once_and_is_right():
    """The decode baseline puts the G query heads of a KV group as G query rows: same answer as
    attending each query head over its KV head's whole cache."""
    spec = _tiny_spec(q_heads=4, kv_heads=2, dk=16, dv=16, decode_batch=3, dtype="fp16")
    t = 40
    out = kb.build_case("fa2", spec, t, "decode").call().float()  # [B, H, G, dv]
    args = kc.nsa_inputs(spec, t, 3, query_len=1)
    q, k, v = args["q"][:, 0].float(), args["k"].float(), args["v"].float()  # [B,HQ,d], [B,T,H,d]
    for head in range(4):
        kv = head // 2
        p = torch.softmax(torch.einsum("bd,btd->bt", q[:, head], k[:, :, kv]) / 4.0, dim=-1)
        want = torch.einsum("bt,btd->bd", p, v[:, :, kv])
        torch.testing.assert_close(out[:, kv, head % 2], want, rtol=2e-3, atol=2e-3)


def test_check_backward_catches_gradients_beyond_the_prefix():
    args = _problem(120, SMALL)

    class LeaksIntoK(torch.autograd.Function):
        """Identity on q whose backward also writes into k's gradient beyond the prefix."""

        @staticmethod
        def forward(ctx, out, k):
            return out.clone()

        @staticmethod
        def backward(ctx, grad):
            dk = torch.zeros(args["k"].shape, dtype=grad.dtype)
            dk[:, -1] = 1.0
            return grad, dk

    def leaky(**kw):
        return LeaksIntoK.apply(nsa_attention_ref(**kw), kw["k"])

    assert check_backward(leaky, args, SMALL, 60).max_rel_err > 0.01


def test_the_default_tag_never_replaces_a_committed_csv(tmp_path):
    """kernels_<gpu>.csv exists: the default tag gets the date and time; a given tag that exists is refused."""
    spec = _tiny_spec()
    out, reports = tmp_path / "results", tmp_path / "reports"
    assert kb.free_tag(out, reports, None, spec) == kb.default_tag(spec)
    out.mkdir()
    (out / f"kernels_{kb.default_tag(spec)}.csv").write_text("committed\n")
    assert re.fullmatch(kb.default_tag(spec) + r"_\d{8}_\d{6}", kb.free_tag(out, reports, None, spec))
    assert kb.free_tag(out, reports, None, spec, force=True) == kb.default_tag(spec)
    reports.mkdir()
    (reports / "kernels_mine.md").write_text("committed\n")
    with pytest.raises(UsageError, match="kernels_mine.md exists; give another --tag, or --force"):
        kb.free_tag(out, reports, "mine", spec)
    assert kb.free_tag(out, reports, "mine", spec, force=True) == "mine"


def test_long_interpreter_runs_are_warned():
    assert kb.slow_interpret(ks.INTERPRET_SPEC) is None
    long = ks.KernelBenchSpec(**{**ks.INTERPRET_SPEC.__dict__, "seq_lens": (64, 8192)})
    assert kb.slow_interpret(long).startswith("--seq 8192 under the Triton interpreter takes minutes")
    assert kb.slow_interpret(ks.KernelBenchSpec(**{**ks.H100_SPEC.__dict__})) is None  # a GPU run
