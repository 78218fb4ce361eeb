"""Host time of one eager nsa_decode step on the GPU, split into its parts.

  python scripts/gpu_decode_host.py --out results/decode_host_h200.csv

For each context length (B=8, HQ=64, H=4, d=128, bf16, paper config) it times, with
time.perf_counter over many calls and no synchronisation inside the loop (the GPU queue is
drained before each measurement): the whole eager step, its argument checks, each of the four
launches alone, the L2-flushed CUDA-event time the benchmark reports, and the step's GPU time
(CUDA graph replay). Where the host time of the step exceeds its GPU time, an eager step is
host-bound and the benchmark's eager figure is the host's.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import torch

from nsa_bench.kernels import NSAConfig, nsa_decode
from nsa_bench.kernels import decode as dec
from nsa_bench.kernels.decode import make_decode_problem
from nsa_bench.results import ResultWriter
from nsa_bench.suites.kernel_cases import Case, graphed
from nsa_bench.timing import time_calls


def host_us(fn, calls: int = 200) -> float:
    """Mean host microseconds per call of fn, the GPU queue drained first."""
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed = time.perf_counter() - start
    torch.cuda.synchronize()
    return elapsed / calls * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--lengths", default="8192,16384,32768,65536")
    ap.add_argument("--profile", action="store_true", help="print the host functions of 500 steps at the last length")
    args = ap.parse_args()
    config = NSAConfig.parse("32/16/64/16/512")
    writer = ResultWriter(args.out)
    for seq in (int(s) for s in args.lengths.split(",")):
        q, cache, gates = make_decode_problem(8, seq, 64, 4, 128, 128, config, torch.bfloat16, "cuda")
        out = torch.empty(8, 1, 64, 128, dtype=q.dtype, device="cuda")
        step = lambda: nsa_decode(q, cache, *gates, config, out=out)  # noqa: E731
        row = {"seq_len": seq,
               "host_step_us": host_us(step),
               "event_step_us": time_calls(step, warmup=5, repeats=50, device="cuda").ms * 1e3,
               "graph_step_us": time_calls(graphed(Case(step, "")).call, warmup=5, repeats=50, device="cuda").ms * 1e3}
        row["host_checks_us"] = host_us(lambda: dec._check_inputs(q, cache, *gates, config), 2000)  # noqa: SLF001
        row["host_empty_us"] = host_us(lambda: torch.empty(8, 1, 64, 128, dtype=q.dtype, device="cuda"), 2000)
        writer.write(row)
        print(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(lambda: [step() for _ in range(500)])
        torch.cuda.synchronize()
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
