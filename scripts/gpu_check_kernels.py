"""GPU check of the bundled Triton NSA: correctness against the reference, then timings.

1. Correctness (bf16 and fp16, several shapes up to T=65536): every output and gradient of
   nsa_attention against the PyTorch reference (kernels/reference_rows.py, float32 compute)
   on the same selected blocks; at long T on a sample of query rows, with the output gradient
   zero elsewhere so that every input gradient depends on the sampled rows only. The selection
   itself is compared with the reference's on the sampled rows. Kernel outputs are poisoned
   with NaN first; errors and tolerances are the shared ones (nsa_bench.suites.kernel_check:
   max |a - b| / max |b|, forward tolerance for the output, backward for the gradients).
   results/triton_nsa_check_h200.csv and triton_nsa_h100.csv were made before, with
   ||a - b|| / ||b|| and one tolerance (bf16 2e-2, fp16 5e-3).
0. Optionally (--tune T) pick each kernel's launch settings (tile rows, warps, stages) at
   length T first; the checks and timings below then run with those settings.
2. Timing (B=1, HQ=64, H=4, dk=dv=128, bf16, 32/16/64/16/512, T = 8k..64k): FA2 (torch SDPA
   flash backend, or flash_attn) and cuDNN against NSA: each forward and backward stage
   alone, and the whole NSA (mean-pool compression + nsa_attention) forward and backward.
3. Which matrix instructions each compiled kernel uses (wgmma = Hopper's HGMMA path).

Rows go to a CSV (nsa_bench.results.ResultWriter) as they are produced; a table is printed last.
Usage: python scripts/gpu_check_kernels.py --out results/triton_nsa_h100.csv [--checks a,b] [--lengths ...]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from nsa_bench.environment import cudnn_attention_available, fa2_baseline, flash_attn_importable
from nsa_bench.flops import Problem, full_attention_flops, nsa_key_counts
from nsa_bench.kernels import NSAConfig, mean_pool_compress, nsa_attention, nsa_forward_stages
from nsa_bench.kernels import triton_band, triton_common, triton_gates, triton_select, triton_sparse
from nsa_bench.kernels.parallel import nsa_attention_with_indices, nsa_backward_stages
from nsa_bench.kernels.reference_rows import nsa_rows_ref
from nsa_bench.results import ResultWriter, status_of
from nsa_bench.suites.kernel_check import rel_err, tolerance
from nsa_bench.timing import backward_call, time_calls

PAPER = "32/16/64/16/512"
NAMES = ("q", "k", "v", "k_cmp", "v_cmp", "g_cmp", "g_slc", "g_win", "k_slc", "v_slc", "k_win", "v_win")
# name, B, T, HQ, H, dk, dv, config, separate k/v per branch, sampled rows (None: all)
CHECKS = [
    ("g4-small", 2, 1000, 16, 4, 64, 64, "8/4/16/4/32", False, None),
    ("paper-4k", 1, 4096, 64, 4, 128, 128, PAPER, False, None),
    ("dk192-separate", 1, 2053, 16, 8, 192, 128, PAPER, True, None),
    ("g1-dv64", 1, 3001, 8, 8, 128, 64, PAPER, False, None),
    ("g8-dk64-dv128", 1, 5000, 16, 2, 64, 128, PAPER, False, None),
    ("paper-16k-rows", 1, 16384, 64, 4, 128, 128, PAPER, False, 128),
    ("paper-64k-rows", 1, 65536, 64, 4, 128, 128, PAPER, False, 128),
]
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def make_inputs(batch, seq, hq, h, dk, dv, config, dtype, separate=False, grad=False):
    dev = DEV
    rnd = lambda *s: torch.randn(*s, device=dev, dtype=dtype)  # noqa: E731
    nc = config.num_cmp_blocks(seq)
    x = {"q": rnd(batch, seq, hq, dk), "k": rnd(batch, seq, h, dk), "v": rnd(batch, seq, h, dv),
         "k_cmp": rnd(batch, nc, h, dk), "v_cmp": rnd(batch, nc, h, dv)}
    for g in ("g_cmp", "g_slc", "g_win"):
        x[g] = torch.rand(batch, seq, hq, device=dev, dtype=dtype)
    if separate:
        x.update(k_slc=rnd(batch, seq, h, dk), v_slc=rnd(batch, seq, h, dv),
                 k_win=rnd(batch, seq, h, dk), v_win=rnd(batch, seq, h, dv))
    if grad:
        x = {n: t.requires_grad_() for n, t in x.items()}
    return x


def call(fn, x, config, **kw):
    return fn(*[x[n] for n in NAMES[:8]], config, **{n: x[n] for n in NAMES[8:] if n in x}, **kw)


def run_check(writer, name, batch, seq, hq, h, dk, dv, cfg, separate, n_rows, dtype):
    config = NSAConfig.parse(cfg)
    torch.manual_seed(int(time.time() * 1e3) % (2**31))
    x = make_inputs(batch, seq, hq, h, dk, dv, config, dtype, separate)
    if n_rows is None:
        pos = torch.arange(seq, device=DEV)
    else:
        edge = torch.tensor([0, 1, 2, 63, 64, seq - 2, seq - 1], device=DEV)
        pos = torch.unique(torch.cat([edge, torch.randint(0, seq, (n_rows - edge.numel(),), device=DEV)]))
    dout = torch.zeros(batch, seq, hq, dv, device=DEV, dtype=dtype)
    dout[:, pos] = torch.randn(batch, pos.numel(), hq, dv, device=DEV, dtype=dtype)

    triton_common.POISON_OUTPUTS = True
    mine = {n: t.clone().requires_grad_() for n, t in x.items()}
    out, idx = call(nsa_attention_with_indices, mine, config)
    out.backward(dout)
    sync()
    triton_common.POISON_OUTPUTS = False

    with torch.no_grad():
        _, ref_idx = call(nsa_rows_ref, x, config, positions=pos)
    sel_agree = float((idx[:, pos].long() == ref_idx).all(-1).float().mean())
    ref = {n: t.clone().requires_grad_() for n, t in x.items()}
    ref_out, _ = call(nsa_rows_ref, ref, config, positions=pos, indices=idx[:, pos])
    ref_out.backward(dout[:, pos].float())

    errs = {"out": rel_err(out[:, pos], ref_out)}
    nan = bool(torch.isnan(out).any())
    for n in x:
        g, rg = mine[n].grad, ref[n].grad
        if rg is None:  # input unused by the reference: must be zero here
            errs[f"d{n}"] = float(g.abs().max()) if g is not None else 0.0
            continue
        nan |= bool(torch.isnan(g).any())
        errs[f"d{n}"] = rel_err(g, rg)
    worst = max(errs.values())
    within = errs["out"] <= tolerance(dtype) and all(
        e <= tolerance(dtype, backward=True) for n, e in errs.items() if n != "out")
    ok = (not nan) and within and sel_agree > 0.99
    writer.write({"kind": "check", "name": name, "dtype": str(dtype).split(".")[-1], "batch": batch, "seq_len": seq,
                  "q_heads": hq, "kv_heads": h, "dk": dk, "dv": dv, "nsa_config": cfg, "separate_kv": separate,
                  "rows_checked": int(pos.numel()), "selection_agree": sel_agree, "nan": nan,
                  "max_rel_err": worst, "passed": ok, **{f"err_{k}": v for k, v in errs.items()}})
    print(f"check {name:16s} {str(dtype):15s} T={seq:6d} sel_agree={sel_agree:.4f} max_err={worst:.2e} "
          f"nan={nan} {'PASS' if ok else 'FAIL'}  " + " ".join(f"{k}={v:.1e}" for k, v in errs.items()), flush=True)
    return ok


def fa2_call(q, k, v, backend):
    """Causal attention of [B,T,HQ,d] q with [B,T,H,d] k/v (expanded to HQ heads) on one backend."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    g = q.shape[2] // k.shape[2]
    qh = q.detach().transpose(1, 2).requires_grad_()
    kh = k.detach().repeat_interleave(g, dim=2).transpose(1, 2).requires_grad_()
    vh = v.detach().repeat_interleave(g, dim=2).transpose(1, 2).requires_grad_()
    if backend == "flash_attn":
        from flash_attn import flash_attn_func

        qh, kh, vh = (t.detach().transpose(1, 2).contiguous().requires_grad_() for t in (qh, kh, vh))
        return (lambda: flash_attn_func(qh, kh, vh, causal=True)), (qh, kh, vh)
    sdp = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}[backend]

    def fwd():
        with sdpa_kernel(sdp):
            return torch.nn.functional.scaled_dot_product_attention(qh, kh, vh, is_causal=True)

    return fwd, (qh, kh, vh)


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def timed(fn):
    """Median ms of fn() (nsa_bench.timing.time_calls), repeats scaled to about 1.5 s."""
    fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    est_ms = (time.perf_counter() - t0) * 1e3
    repeats = int(min(50, max(3, 1500 / max(est_ms, 1e-3))))
    return time_calls(fn, warmup=1, repeats=repeats, device=DEV).ms


def stage_flops(stage, p: Problem, config: NSAConfig):
    """Matmul FLOPs a stage executes: forward QK+PV; select recomputes QK of the compressed
    branch; dq kernels QK, dP, dQ; dkv kernels QK, dP, dV, dK. Totals use the FlashAttention
    convention instead (backward = 2.5x the forward's attention matmuls), see run_timing."""
    c = nsa_key_counts(p.seq_len, config)
    pairs = {"cmp": c.cmp, "slc": c.slc, "win": c.win}
    mm = lambda pairs, d: 2.0 * d * pairs * p.q_heads * p.batch  # noqa: E731
    branch, _, part = stage.partition("_")
    if stage == "select":
        return mm(c.cmp, p.dk)
    if branch not in pairs:
        return 0.0
    width = {"attn": p.dk + p.dv, "dq": 2 * p.dk + p.dv, "dkv": 2 * p.dk + 2 * p.dv}.get(part)
    return mm(pairs[branch], width) if width else 0.0


def attention_flops(p: Problem, config: NSAConfig, mode: str):
    """NSA's attention-matmul FLOPs (three branches), backward = 2.5x forward (FA convention)."""
    fwd = sum(stage_flops(s, p, config) for s in ("cmp_attn", "slc_attn", "win_attn"))
    return fwd if mode == "fwd" else 2.5 * fwd


TUNE_FWD = [dict(rows=64, keys=64, warps=4, stages=2), dict(rows=64, keys=64, warps=4, stages=3),
            dict(rows=128, keys=64, warps=8, stages=2), dict(rows=128, keys=64, warps=8, stages=3),
            dict(rows=64, keys=128, warps=8, stages=2), dict(rows=64, keys=64, warps=4, stages=4),
            dict(rows=128, keys=64, warps=4, stages=3), dict(rows=64, keys=128, warps=4, stages=3),
            dict(rows=128, keys=128, warps=8, stages=2), dict(rows=32, keys=64, warps=4, stages=3)]
TUNE_DQ = [dict(rows=64, keys=64, warps=4, stages=2), dict(rows=64, keys=64, warps=4, stages=3),
           dict(rows=64, keys=32, warps=4, stages=3), dict(rows=128, keys=64, warps=8, stages=2),
           dict(rows=128, keys=64, warps=8, stages=3), dict(rows=64, keys=128, warps=8, stages=2),
           dict(rows=64, keys=128, warps=8, stages=3)]  # 8 warps on 64 rows x 64 keys ran 2x slower
TUNE_DKV = [dict(rows=64, keys=64, warps=4, stages=2), dict(rows=64, keys=64, warps=4, stages=3),
            dict(rows=32, keys=64, warps=4, stages=3), dict(rows=32, keys=64, warps=4, stages=4),
            dict(rows=64, keys=128, warps=8, stages=2), dict(rows=64, keys=128, warps=8, stages=3),
            dict(rows=64, keys=128, warps=8, stages=4), dict(rows=32, keys=128, warps=8, stages=3),
            dict(rows=32, keys=128, warps=8, stages=4)]  # 8 warps on 64 keys, or 128 rows, ran 2x slower
TUNE_SLC = [dict(warps=4, stages=2), dict(warps=4, stages=3), dict(warps=2, stages=2), dict(warps=2, stages=3),
            dict(warps=1, stages=2), dict(warps=1, stages=3), dict(warps=1, stages=2, keys=32),
            dict(warps=1, stages=3, keys=32)]  # 8 warps ran 1.9x slower (slc_launch_h200_fa67bc9)
TUNE = {  # stage -> (settings dict, key, candidates)
    "cmp_attn": (triton_band.LAUNCH, "cmp_fwd", TUNE_FWD),
    "select": (triton_select.LAUNCH, "select", [dict(rows=64, warps=4, stages=2), dict(rows=64, warps=4, stages=3),
                                                 dict(rows=64, warps=8, stages=2), dict(rows=128, warps=8, stages=2)]),
    "slc_attn": (triton_sparse.LAUNCH, "slc_fwd", TUNE_SLC),
    "win_gated": (triton_band.LAUNCH, "win_fwd", TUNE_FWD),
    "cmp_dq": (triton_band.LAUNCH, "cmp_dq", TUNE_DQ),
    "cmp_dkv": (triton_band.LAUNCH, "cmp_dkv", [dict(c, seg=s) for c in TUNE_DKV for s in (1024, 2048, 4096)]),
    "slc_dq": (triton_sparse.LAUNCH, "slc_dq", TUNE_SLC[:4]),  # 1 warp spills (1.5x slower)
    "slc_dkv": (triton_sparse.LAUNCH, "slc_dkv", [dict(c, chunk=ch) for c in (
        dict(rows=64, warps=4, stages=2), dict(rows=64, warps=4, stages=3), dict(rows=32, warps=4, stages=3))
        for ch in (1024, 4096)]),  # 8 warps ran 2x slower
    "win_dq": (triton_band.LAUNCH, "win_dq", TUNE_DQ),
    "win_dkv": (triton_band.LAUNCH, "win_dkv", [dict(c, seg=1 << 30) for c in TUNE_DKV]),
}


def run_tuning(writer, seq, hq, h, d, stages=None):
    """Try each stage's launch candidates on the timing shape (the stages named, or all); keep
    the fastest in its LAUNCH."""
    config = NSAConfig.parse(PAPER)
    dtype = torch.bfloat16 if DEV == "cuda" else torch.float16
    x = make_inputs(1, seq, hq, h, d, d, config, dtype)
    dout = torch.randn(1, seq, hq, d, device=DEV, dtype=dtype)
    fwd = dict(call(nsa_forward_stages, x, config))
    bwd = dict(call(nsa_backward_stages, x, config, dout=dout))
    for stage, (launch, key, candidates) in TUNE.items():
        if stages and stage not in stages:
            continue
        fn = fwd.get(stage) or bwd[stage]
        best = None
        default = dict(launch[key])  # a candidate overrides these settings; the others keep their values
        for cand in candidates:
            cand = {**default, **cand}
            launch[key] = cand
            try:
                if stage == "slc_dkv":
                    bwd["slc_index"]()  # the token chunks are part of the index
                fn()
                sync()
                ms = time_calls(fn, warmup=1, repeats=5, device=DEV).ms
            except Exception as e:  # noqa: BLE001 - e.g. out of shared memory: skip the candidate
                print(f"tune {stage:9s} {cand} failed: {type(e).__name__}", flush=True)
                continue
            writer.write({"kind": "tune", "stage": stage, "seq_len": seq, "launch": str(cand), "ms": ms})
            print(f"tune {stage:9s} {str(cand):60s} {ms:8.3f} ms", flush=True)
            if best is None or ms < best[0]:
                best = (ms, cand)
        launch[key] = best[1]
        if stage == "slc_dkv":
            bwd["slc_index"]()
        print(f"tune {stage:9s} BEST {best[1]} {best[0]:.3f} ms", flush=True)
    del x, dout, fwd, bwd


def run_timing(writer, seq, summary, hq=64, h=4, d=128):
    config = NSAConfig.parse(PAPER)
    batch = 1
    p = Problem(seq_len=seq, batch=batch, q_heads=hq, kv_heads=h, dk=d, dv=d)
    dtype = torch.bfloat16 if DEV == "cuda" else torch.float16  # bf16 dots are broken in the interpreter
    base = {"kind": "timing", "dtype": str(dtype).split(".")[-1], "batch": batch, "seq_len": seq, "q_heads": hq, "kv_heads": h,
            "dk": d, "dv": d, "nsa_config": PAPER}
    x = make_inputs(batch, seq, hq, h, d, d, config, dtype)
    dout = torch.randn(batch, seq, hq, d, device=DEV, dtype=dtype)
    res = {}

    def row(impl, stage, mode, ms, flops):
        tf = flops / ms / 1e9 if flops and ms else None
        writer.write({**base, "impl": impl, "stage": stage, "mode": mode, "ms": ms, "tflops": tf})
        print(f"  T={seq:6d} {impl:10s} {mode:3s} {stage:12s} {ms:9.3f} ms" + (f"  {tf:6.1f} TFLOP/s" if tf else ""),
              flush=True)
        res[(impl, stage, mode)] = ms

    baselines = ["flash_attn" if flash_attn_importable() else "flash"] if DEV == "cuda" else []
    if cudnn_attention_available():
        baselines.append("cudnn")
    for backend in baselines:
        name = "fa2" if backend in ("flash", "flash_attn") else "cudnn"
        try:
            fwd, leaves = fa2_call(x["q"], x["k"], x["v"], backend)
            with torch.no_grad():
                row(name, "total", "fwd", timed(fwd), full_attention_flops(p, "fwd"))
            out = fwd()
            go = dout if backend == "flash_attn" else dout.transpose(1, 2)
            row(name, "total", "bwd", timed(backward_call(out, leaves, go)), full_attention_flops(p, "bwd"))
            del out, leaves
        except (RuntimeError, torch.OutOfMemoryError) as e:
            print(f"  {name} failed: {str(e).splitlines()[0]}", flush=True)

    raw = {n: x[n] for n in ("q", "k", "v", "g_cmp", "g_slc", "g_win")}
    if DEV == "cuda":
        torch.cuda.empty_cache()
    row("nsa", "compress", "fwd", timed(lambda: (mean_pool_compress(raw["k"], config),
                                                  mean_pool_compress(raw["v"], config))), 0.0)
    for stage, fn in call(nsa_forward_stages, x, config):
        row("nsa", stage, "fwd", timed(fn), stage_flops(stage, p, config))
    for stage, fn in call(nsa_backward_stages, x, config, dout=dout):
        row("nsa", stage, "bwd", timed(fn), stage_flops(stage, p, config))
    torch.cuda.empty_cache()

    def whole():
        kc, vc = mean_pool_compress(raw["k"], config), mean_pool_compress(raw["v"], config)
        return nsa_attention(raw["q"], raw["k"], raw["v"], kc, vc, raw["g_cmp"], raw["g_slc"], raw["g_win"], config)

    with torch.no_grad():
        row("nsa", "total", "fwd", timed(whole), attention_flops(p, config, "fwd"))
    leaves = {n: t.detach().requires_grad_() for n, t in raw.items()}
    raw = leaves
    out = whole()
    row("nsa", "total", "bwd", timed(backward_call(out, list(leaves.values()), dout)),
        attention_flops(p, config, "bwd"))
    del out
    torch.cuda.empty_cache()
    for mode in ("fwd", "bwd"):
        for impl in ("fa2", "cudnn"):
            if (impl, "total", mode) in res:
                sp = res[(impl, "total", mode)] / res[("nsa", "total", mode)]
                writer.write({**base, "impl": "nsa", "stage": f"speedup_vs_{impl}", "mode": mode, "speedup": sp})
                summary.append((seq, mode, impl, res[(impl, "total", mode)], res[("nsa", "total", mode)], sp))


def matrix_instructions(writer):
    """Record whether each compiled kernel's PTX uses wgmma (Hopper) or mma.sync."""
    kernels = {
        "band_fwd": triton_band._band_fwd_kernel, "band_dq": triton_band._band_dq_kernel,
        "band_dkv": triton_band._band_dkv_kernel, "select": triton_select._select_blocks_kernel,
        "slc_fwd": triton_sparse._slc_fwd_kernel, "slc_dq": triton_sparse._slc_dq_kernel,
        "slc_dkv": triton_sparse._slc_dkv_kernel, "gate_grads": triton_gates._gate_grad_kernel,
    }
    for name, fn in kernels.items():
        seen = set()
        for cache in fn.device_caches.values():
            for compiled in cache[0].values():
                ptx = compiled.asm.get("ptx", "")
                meta = compiled.metadata
                info = (("wgmma" in ptx), ("mma.sync" in ptx), getattr(meta, "num_warps", None),
                        getattr(meta, "shared", None))
                if info in seen:
                    continue
                seen.add(info)
                writer.write({"kind": "isa", "name": name, "wgmma": info[0], "mma_sync": info[1],
                              "num_warps": info[2], "shared_bytes": info[3], "n_regs": getattr(compiled, "n_regs", None),
                              "n_spills": getattr(compiled, "n_spills", None)})
                print(f"isa {name:10s} wgmma={info[0]} mma.sync={info[1]} warps={info[2]} smem={info[3]} "
                      f"regs={getattr(compiled, 'n_regs', None)} spills={getattr(compiled, 'n_spills', None)}",
                      flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/triton_nsa_h100.csv")
    ap.add_argument("--checks", default="all", help="comma-separated check names (see CHECKS), 'all' or 'none'")
    ap.add_argument("--lengths", default="8192,16384,32768,65536")
    ap.add_argument("--heads", default="64/4/128", help="timing shape HQ/H/d")
    ap.add_argument("--tune", type=int, default=0, metavar="T",
                    help="first pick each kernel's launch settings at sequence length T (0: keep the defaults)")
    ap.add_argument("--tune-stages", default="", help=f"comma-separated stages to tune (default: all of {list(TUNE)})")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny run under TRITON_INTERPRET=1 (no GPU)")
    args = ap.parse_args()
    if DEV != "cuda" and not args.cpu_smoke:
        print("no CUDA GPU: this script needs one (or --cpu-smoke under TRITON_INTERPRET=1)", file=sys.stderr)
        return 2
    hq, h, d = (int(v) for v in args.heads.split("/"))
    writer = ResultWriter(args.out, extra={"fa2_baseline": fa2_baseline()})
    print(f"device {torch.cuda.get_device_name() if DEV == 'cuda' else 'cpu'}  FA2 = {fa2_baseline()}", flush=True)
    if args.tune:
        stages = {st for st in args.tune_stages.split(",") if st}
        if stages - set(TUNE):
            print(f"unknown --tune-stages {sorted(stages - set(TUNE))}; known: {list(TUNE)}", file=sys.stderr)
            return 2
        run_tuning(writer, args.tune, hq, h, d, stages)
        settings = {**triton_band.LAUNCH, **triton_select.LAUNCH, **triton_sparse.LAUNCH}
        print(f"launch settings: {settings}", flush=True)
        writer.write({"kind": "launch", "launch": str(settings)})
    all_ok = True
    names = {c[0] for c in CHECKS} if args.checks == "all" else set(args.checks.split(",")) - {"none"}
    unknown = names - {c[0] for c in CHECKS}
    if unknown:
        print(f"unknown checks {sorted(unknown)}; known: {[c[0] for c in CHECKS]}", file=sys.stderr)
        return 2
    checks = [c for c in CHECKS if c[0] in names]
    if args.cpu_smoke:
        checks = [("cpu-smoke", 1, 150, 4, 2, 32, 32, "8/4/16/4/32", True, 40)]
    for check in checks:
        for dtype in (torch.bfloat16, torch.float16) if DEV == "cuda" else (torch.float16,):
            if check[2] >= 65536 and dtype == torch.float16:
                continue
            try:
                all_ok &= run_check(writer, *check, dtype)
            except Exception as e:  # noqa: BLE001 - OOM, out of shared memory, ...: a failed check, the others go on
                print(f"check {check[0]:14s} {str(dtype):15s} FAIL {type(e).__name__}: {str(e).splitlines()[0]}", flush=True)
                writer.write({"kind": "check", "name": check[0], "dtype": str(dtype).split(".")[-1], "passed": False,
                              "status": status_of(e)})
                all_ok = False
            torch.cuda.empty_cache()
    summary = []
    for seq in [int(s) for s in args.lengths.split(",") if s]:
        run_timing(writer, seq, summary, hq, h, d)
    if DEV == "cuda":
        matrix_instructions(writer)
    print(f"\ncorrectness: {'all passed' if all_ok else 'FAILURES'}")
    print(f"{'T':>6} {'mode':4} {'base':6} {'base ms':>9} {'nsa ms':>9} {'speedup':>7}")
    for seq, mode, impl, b, n, sp in summary:
        print(f"{seq:6d} {mode:4} {impl:6} {b:9.2f} {n:9.2f} {sp:7.2f}x")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
