"""NSA decode step on the GPU: correctness at long T, then timings against FlashAttention-2.

  python scripts/gpu_bench_decode.py --out results/decode_h100.csv

1. Checks (bf16): nsa_decode vs the reference's last row (nsa_rows_ref, float32 math) for a
   batch of mixed lengths up to 64k; a prefill + appends flow; a CUDA-graph replay equals the
   eager step. Where a selected block differs (near-equal scores), the output is also compared
   with the reference given the kernel's blocks.
2. Timings at B=8, HQ=64, H=4, D=128, bf16, contexts 8k..64k: NSA (nsa_decode) and FA2 decoding
   (flash_attn_with_kvcache if importable, else torch SDPA's flash backend with the G query heads
   of a KV group as G query rows over that group's cache: FA2's own decode layout, no KV head
   repeated), each eager (launched from Python) and as a CUDA graph. Steps cycle over several
   caches so that the NSA bytes of consecutive steps do not fit in L2 (like the layers of a model).
   GB/s counts the bytes NSA must read: B*H*(N_cmp + n*l' + w)*(dk + dv)*2 (FA2: B*H*T*(dk+dv)*2);
   the ceiling is their ratio. Rows go to a CSV (nsa_bench.results.ResultWriter) as measured.
Errors and tolerance are the shared ones (nsa_bench.suites.kernel_check: max-abs relative error);
results/decode_h100.csv and decode_h200.csv were made before, with ||a - b|| / ||b|| and tolerance 1e-2.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import torch

from nsa_bench.kernels import NSACache, NSAConfig, mean_pool_compress, nsa_decode
from nsa_bench.kernels.decode import decode_plan, make_decode_problem
from nsa_bench.kernels.reference_rows import nsa_rows_ref
from nsa_bench.results import ResultWriter
from nsa_bench.suites.kernel_check import rel_err, tolerance


def log(*a):
    print(*a, flush=True)


# ---- correctness ------------------------------------------------------------------------------------

def reference_last_rows(q, k, v, gates, lengths, config):
    """Per sequence b: nsa_rows_ref at position lengths[b]-1 over k/v[b, :lengths[b]]."""
    outs, blocks = [], []
    for b, t in enumerate(lengths):
        kb, vb = k[b : b + 1, :t], v[b : b + 1, :t]
        kc, vc = mean_pool_compress(kb, config), mean_pool_compress(vb, config)
        qb = q[b : b + 1].expand(1, t, *q.shape[2:])
        gb = [g[b : b + 1].expand(1, t, g.shape[2]) for g in gates]
        out, used = nsa_rows_ref(qb, kb, vb, kc, vc, *gb, config, torch.tensor([t - 1]))
        outs.append(out[0, 0])
        blocks.append(used[0, 0])
    return outs, blocks


def reference_with_blocks(q, k, v, gates, t, b, config, blocks):
    kb, vb = k[b : b + 1, :t], v[b : b + 1, :t]
    kc, vc = mean_pool_compress(kb, config), mean_pool_compress(vb, config)
    qb = q[b : b + 1].expand(1, t, *q.shape[2:])
    gb = [g[b : b + 1].expand(1, t, g.shape[2]) for g in gates]
    out, _ = nsa_rows_ref(qb, kb, vb, kc, vc, *gb, config, torch.tensor([t - 1]), indices=blocks[None, None])
    return out[0, 0]


def check_long(config, lengths, q_heads, kv_heads, d, dtype, tol):
    """One decode step over a prefilled cache of mixed lengths against the reference."""
    batch, t_max = len(lengths), max(lengths)
    gen = torch.Generator(device="cuda").manual_seed(1234)
    k = torch.randn(batch, t_max, kv_heads, d, device="cuda", dtype=dtype, generator=gen)
    v = torch.randn(batch, t_max, kv_heads, d, device="cuda", dtype=dtype, generator=gen)
    q = torch.randn(batch, 1, q_heads, d, device="cuda", dtype=dtype, generator=gen)
    gates = [torch.sigmoid(torch.randn(batch, 1, q_heads, device="cuda", generator=gen)).to(dtype) for _ in range(3)]
    cache = NSACache(batch, t_max, kv_heads, d, d, config, dtype=dtype, device="cuda")
    cache.prefill(k, v, lengths)
    out, blocks = nsa_decode(q, cache, *gates, return_blocks=True)
    torch.cuda.synchronize()
    refs, ref_blocks = reference_last_rows(q, k, v, gates, lengths, config)
    worst, flips = 0.0, 0
    for b, t in enumerate(lengths):
        same = torch.equal(blocks[b, 0], ref_blocks[b])
        err = rel_err(out[b, 0], refs[b])
        if not same:
            flips += 1
            err_given = rel_err(out[b, 0], reference_with_blocks(q, k, v, gates, t, b, config, blocks[b, 0]))
            log(f"  length {t}: selection differs from the reference on "
                f"{int((blocks[b, 0] != ref_blocks[b]).any(-1).sum())} KV heads; err {err:.2e}, "
                f"err with the kernel's blocks {err_given:.2e}")
            err = err_given
        worst = max(worst, err)
        log(f"  length {t:6d}: rel err {err:.2e}, blocks {'equal' if same else 'DIFFER'}")
    ok = worst < tol and torch.isfinite(out).all().item()
    return ok, worst, flips


def check_appends_and_graph(config, dtype, tol):
    """Prefill, then appends on the GPU; each step against the reference; a graph replay too."""
    batch, q_heads, kv_heads, d = 4, 16, 2, 128
    lengths = [1000, 1023, 1024, 777]
    total = max(lengths) + 40
    gen = torch.Generator(device="cuda").manual_seed(99)
    k = torch.randn(batch, total, kv_heads, d, device="cuda", dtype=dtype, generator=gen)
    v = torch.randn(batch, total, kv_heads, d, device="cuda", dtype=dtype, generator=gen)
    cache = NSACache(batch, total, kv_heads, d, d, config, dtype=dtype, device="cuda")
    cache.prefill(k[:, : max(lengths)], v[:, : max(lengths)], lengths)
    worst = 0.0
    for step in range(33):
        cache.append(torch.stack([k[b, t] for b, t in enumerate(lengths)])[:, None].contiguous(),
                     torch.stack([v[b, t] for b, t in enumerate(lengths)])[:, None].contiguous())
        lengths = [t + 1 for t in lengths]
        if step % 8:
            continue
        q = torch.randn(batch, 1, q_heads, d, device="cuda", dtype=dtype, generator=gen)
        gates = [torch.rand(batch, 1, q_heads, device="cuda", generator=gen).to(dtype) for _ in range(3)]
        out, blocks = nsa_decode(q, cache, *gates, return_blocks=True)
        refs, ref_blocks = reference_last_rows(q, k, v, gates, lengths, config)
        for b, t in enumerate(lengths):
            if torch.equal(blocks[b, 0], ref_blocks[b]):
                err = rel_err(out[b, 0], refs[b])
            else:
                err = rel_err(out[b, 0], reference_with_blocks(q, k, v, gates, t, b, config, blocks[b, 0]))
            worst = max(worst, err)
    # CUDA graph of one decode step == eager step
    q = torch.randn(batch, 1, q_heads, d, device="cuda", dtype=dtype, generator=gen)
    gates = [torch.rand(batch, 1, q_heads, device="cuda", generator=gen).to(dtype) for _ in range(3)]
    eager = nsa_decode(q, cache, *gates).clone()
    graph, out = capture(lambda: nsa_decode(q, cache, *gates))
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    same = torch.equal(out, eager)
    log(f"  prefill + 33 appends: worst rel err {worst:.2e}; graph replay equals eager: {same}")
    return worst < tol and same, worst


def check_replays(config, dtype, replays: int = 200):
    """B=8, 64k, HQ=64, H=4: a CUDA graph of one step replayed many times, each output (poisoned
    before) equal to the eager step's, bit for bit (a scratch slot left unwritten or read before
    it is written shows up here)."""
    q, cache, gates = make_decode_problem(8, 65536, 64, 4, 128, 128, config, dtype, "cuda", seed=5)
    eager = nsa_decode(q, cache, *gates).clone()
    graph, out = capture(lambda: nsa_decode(q, cache, *gates))
    bad = 0
    for _ in range(replays):
        out.fill_(float("nan"))
        graph.replay()
        bad += not torch.equal(out, eager)
    log(f"  {replays} replays at 64k, B=8: {bad} differ from the eager step")
    del cache
    return bad == 0


def capture(fn):
    """A CUDA graph of fn() (warmed up on a side stream) and the output tensor it writes."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


# ---- timing -------------------------------------------------------------------------------------------

def copy_bandwidth() -> float:
    """Device-to-device copy, bytes read + written per second."""
    n = 1 << 30
    src = torch.empty(n, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    ms = []
    for _ in range(12):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        dst.copy_(src)
        b.record()
        b.synchronize()
        ms.append(a.elapsed_time(b))
    del src, dst
    return 2 * n / (statistics.median(ms[2:]) * 1e-3)


def time_steps(step_fns, graph: bool, rounds: int = 4, reps: int = 15):
    """Per-step ms (median, p20, p80) of running step_fns in sequence `rounds` times."""
    def run_all():
        for _ in range(rounds):
            for f in step_fns:
                f()

    if graph:
        g, _ = capture(run_all)
        run = g.replay
    else:
        run_all()
        run = run_all
    run()
    steps = rounds * len(step_fns)
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        run()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / steps)
    times.sort()
    q = lambda f: times[min(len(times) - 1, int(f * len(times)))]  # noqa: E731
    return statistics.median(times), q(0.2), q(0.8)


def fa2_step(cache: NSACache, q, seq_len: int):
    """FA2 decoding over the cache's raw k/v: (callable, description)."""
    batch, _, q_heads, d = q.shape
    h = cache.kv_heads
    try:
        from flash_attn import flash_attn_with_kvcache
        k = cache.k[:, :, :seq_len].transpose(1, 2)
        v = cache.v[:, :, :seq_len].transpose(1, 2)
        lens = torch.full((batch,), seq_len, dtype=torch.int32, device="cuda")
        return (lambda: flash_attn_with_kvcache(q, k, v, cache_seqlens=lens)), "flash_attn_with_kvcache"
    except Exception:
        pass
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q_rows = q.view(batch, h, q_heads // h, d)  # the G heads of a group as G query rows
    k, v = cache.k[:, :, :seq_len], cache.v[:, :, :seq_len]

    def step():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return torch.nn.functional.scaled_dot_product_attention(q_rows, k, v)

    return step, "torch SDPA flash backend (FA2 code); G query heads of a KV group as G query rows"


VARIANTS = [dict(blocks_per_program=1), dict(blocks_per_program=4), dict(window_chunk=64), dict(window_chunk=256),
            dict(blocks_per_program=1, window_chunk=256), dict(cmp_stages=2), dict(cmp_stages=4), dict(tiles=4),
            dict(warps=8), dict(stages=3)]


def parse_variant(text: str) -> dict:
    """'blocks_per_program=1,warps=8' -> decode_plan keywords."""
    return {k: int(v) for k, v in (item.split("=") for item in text.split(","))}


def kernel_resources():
    """Registers, spills and shared memory of each compiled decode kernel."""
    from nsa_bench.kernels import triton_decode as td

    seen = set()
    for name in ("_decode_cmp_win_kernel", "_decode_select_kernel", "_decode_slc_kernel", "_decode_combine_kernel",
                 "_cache_append_kernel"):
        for dev_cache in getattr(td, name).device_caches.values():
            for kernel in dev_cache[0].values():
                line = (f"    {name:22s} regs {kernel.n_regs:4d} spills {kernel.n_spills:4d} "
                        f"shared {kernel.metadata.shared:6d} warps {kernel.metadata.num_warps}")
                if line not in seen:
                    seen.add(line)
                    log(line)


def kernel_breakdown(problems, steps: int = 20, plan_kw: dict | None = None):
    """Mean device time of each decode kernel (torch profiler), eager steps over the caches, with
    the default plan or decode_plan(..., **plan_kw)."""
    from torch.profiler import ProfilerActivity, profile

    plans = [decode_plan(cache, q.shape[2], **plan_kw) if plan_kw else None for q, cache, _ in problems]
    log(f"  kernel times, plan {plan_kw or 'default'}:")
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for i in range(steps):
            q, cache, gates = problems[i % len(problems)]
            nsa_decode(q, cache, *gates, plan=plans[i % len(problems)])
        torch.cuda.synchronize()
    for ev in prof.key_averages():
        if ev.device_type.name == "CUDA" and "kernel" in ev.key:
            total = getattr(ev, "device_time_total", None) or getattr(ev, "cuda_time_total", 0)
            log(f"    {ev.key:24s} {total / max(ev.count, 1):8.1f} us x {ev.count}")


def nsa_tokens(config: NSAConfig, seq_len: int) -> int:
    return config.num_cmp_blocks(seq_len) + min(config.slc_count * config.slc_block, seq_len) + min(config.window, seq_len)


def bench(args, config, writer, copy_gbps):
    dtype = torch.bfloat16
    b, hq, h, d = args.batch, args.q_heads, args.kv_heads, args.dim
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    summary = []
    for seq_len in args.lengths:
        row = dict(kind="kernel", mode="decode", seq_len=seq_len, batch=b, q_heads=hq, kv_heads=h, dk=d, dv=d,
                   dtype="bfloat16", nsa_config=str(config), copy_gbps=round(copy_gbps / 1e9, 1))
        nsa_bytes = b * h * nsa_tokens(config, seq_len) * 2 * d * 2
        fa2_bytes = b * h * seq_len * 2 * d * 2
        ceiling = fa2_bytes / nsa_bytes
        n_caches = max(2, math.ceil(3 * l2 / nsa_bytes))
        try:
            problems = [make_decode_problem(b, seq_len, hq, h, d, d, config, dtype, "cuda", seed=i)
                        for i in range(n_caches)]
        except torch.cuda.OutOfMemoryError:
            for impl in ("fa2", "nsa"):
                writer.write({**row, "impl": impl, "status": "oom"})
            torch.cuda.empty_cache()
            continue
        fa2 = [fa2_step(cache, q, seq_len) for q, cache, _ in problems]
        fa2_detail = fa2[0][1]
        results = {}
        for graph in (False, True):
            fa2_ms = time_steps([f for f, _ in fa2], graph)
            results[("fa2", graph)] = fa2_ms
            writer.write({**row, "impl": "fa2", "impl_detail": fa2_detail, "graph": graph, "status": "ok",
                          "ms": fa2_ms[0], "ms_p20": fa2_ms[1], "ms_p80": fa2_ms[2], "bytes": fa2_bytes,
                          "gbps": fa2_bytes / fa2_ms[0] / 1e6, "speedup_fa2": 1.0, "ceiling": 1.0})
            variants = {"default": None}
            if graph and (args.variants or args.variant):
                for kw in [parse_variant(v) for v in args.variant] or VARIANTS:
                    variants[",".join(f"{k}={v}" for k, v in kw.items())] = kw
            for name, kw in variants.items():
                plans = [decode_plan(cache, hq, **kw) if kw else None for _, cache, _ in problems]
                steps = [lambda q=q, c=c, g=g, p=p: nsa_decode(q, c, *g, plan=p)
                         for (q, c, g), p in zip(problems, plans)]
                ms = time_steps(steps, graph)
                plan = plans[0] or decode_plan(problems[0][1], hq)
                speedup = fa2_ms[0] / ms[0]
                if name == "default":
                    results[("nsa", graph)] = ms
                elif ms[0] < results.get("best", (None, (float("inf"),)))[1][0]:
                    results["best"] = (name, ms)
                    results["best_kw"] = kw
                writer.write({**row, "impl": "nsa", "graph": graph, "status": "ok", "plan": name,
                              "impl_detail": f"nsa_decode, 4 Triton launches, plan {plan}",
                              "ms": ms[0], "ms_p20": ms[1], "ms_p80": ms[2], "bytes": nsa_bytes,
                              "gbps": nsa_bytes / ms[0] / 1e6, "speedup_fa2": speedup, "ceiling": ceiling,
                              "efficiency": speedup / ceiling, "max_rel_err": args.max_err,
                              "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30})
                log(f"  T={seq_len:6d} graph={graph!s:5} nsa[{name}] {ms[0] * 1e3:7.1f} us "
                    f"({nsa_bytes / ms[0] / 1e6:6.0f} GB/s) fa2 {fa2_ms[0] * 1e3:7.1f} us "
                    f"({fa2_bytes / fa2_ms[0] / 1e6:6.0f} GB/s) speedup {speedup:5.2f}x of {ceiling:5.2f}x")
        if seq_len == max(args.lengths):
            kernel_breakdown(problems)
            if "best_kw" in results:
                kernel_breakdown(problems, plan_kw=results["best_kw"])
            kernel_resources()
        summary.append((seq_len, results, nsa_bytes, fa2_bytes, ceiling))
        del problems, fa2
        torch.cuda.empty_cache()
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/decode_h100.csv")
    ap.add_argument("--lengths", type=int, nargs="+", default=[8192, 16384, 32768, 65536])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--q-heads", type=int, default=64)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--config", default="32/16/64/16/512")
    ap.add_argument("--variants", action="store_true", help="also time other launch plans (graph mode)")
    ap.add_argument("--variant", action="append", default=[],
                    help="a plan to time instead of VARIANTS, e.g. blocks_per_program=1,warps=8 (repeatable)")
    ap.add_argument("--skip-checks", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_bench_decode.py needs a CUDA GPU", file=sys.stderr)
        return 2
    config = NSAConfig.parse(args.config)
    t0 = time.time()
    log(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}")
    ok = True
    max_err = None
    if not args.skip_checks:
        log("check: one step, B=8 mixed lengths up to 64k, HQ=64, H=4, D=128, bf16")
        lengths = [65536, 65535, 65521, 65472, 64001, 40000, 4113, 33]
        ok_long, max_err, flips = check_long(config, lengths, 64, 4, 128, torch.bfloat16, tol=tolerance(torch.bfloat16))
        log(f"  -> {'PASS' if ok_long else 'FAIL'} (worst {max_err:.2e}, {flips} sequences with a different block)")
        torch.cuda.empty_cache()
        log("check: prefill + appends + CUDA graph, bf16")
        ok_app, _ = check_appends_and_graph(config, torch.bfloat16, tol=tolerance(torch.bfloat16))
        log(f"  -> {'PASS' if ok_app else 'FAIL'}")
        log("check: graph replays, bf16")
        ok_rep = check_replays(config, torch.bfloat16)
        log(f"  -> {'PASS' if ok_rep else 'FAIL'}")
        ok = ok_long and ok_app and ok_rep
        log(f"checks took {time.time() - t0:.0f}s")
    copy_gbps = copy_bandwidth()
    log(f"device-to-device copy: {copy_gbps / 1e9:.0f} GB/s (read + write)")
    args.max_err = max_err
    writer = ResultWriter(args.out)
    summary = bench(args, config, writer, copy_gbps)
    log("\nseq_len | mode  | NSA us | NSA GB/s | % copy | FA2 us | FA2 GB/s | speedup | ceiling")
    for seq_len, res, nb, fb, ceil in summary:
        for graph in (False, True):
            n, f = res[("nsa", graph)][0], res[("fa2", graph)][0]
            log(f"{seq_len:7d} | {'graph' if graph else 'eager'} | {n * 1e3:6.1f} | {nb / n / 1e6:8.0f} | "
                f"{100 * nb / n / 1e6 / (copy_gbps / 1e9):5.1f}% | {f * 1e3:6.1f} | {fb / f / 1e6:8.0f} | "
                f"{f / n:6.2f}x | {ceil:6.2f}x")
        if "best" in res:
            name, ms = res["best"]
            log(f"{seq_len:7d} | best other graph plan [{name}]: {ms[0] * 1e3:.1f} us, "
                f"{res[('fa2', True)][0] / ms[0]:.2f}x")
    log(f"total {time.time() - t0:.0f}s; checks {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
