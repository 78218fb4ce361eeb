"""Does the benchmark's L2 flush charge the timed call for the flush's own writes?

  python scripts/gpu_l2_flush_ab.py --out results/l2_flush_ab_h200.csv

Until 4ebba23 nsa_bench.timing zeroed a 256 MiB buffer before each timed call (flush="write", as
triton.testing.do_bench does). That leaves the L2 full of dirty lines, and the timed kernel writes
them back to memory as it misses. This script times the same prepared cases (the sweep's own,
suites.kernel_bench.build_case) with the three flush modes of time_calls, interleaved over rounds:
  - a probe: summing a 64 MiB buffer (at about 350 GB/s it is too slow to show the write-back:
    189-193 us after every flush),
  - decode at each length: fa2, cudnn and nsa, eager and replayed as a CUDA graph (B=8),
  - the forward at the first length: fa2, cudnn and nsa.
One CSV row per (case, flush, round): ms (median of --repeats), p20, p80.
"""

from __future__ import annotations

import argparse

import torch

from nsa_bench.results import ResultWriter
from nsa_bench.timing import FLUSH_MODES, time_calls
from nsa_bench.suites.kernel_bench import build_case
from nsa_bench.suites.kernel_cases import Case, graphed
from nsa_bench.suites.kernel_spec import KernelBenchSpec


def cases(spec: KernelBenchSpec, seq_len: int, fwd: bool) -> list[tuple[str, str, Case]]:
    """(impl, mode, case) of one length: decode eager and graphed, and the forward if asked."""
    out = []
    for impl in ("fa2", "cudnn", "nsa"):
        step = build_case(impl, spec, seq_len, "decode")
        out += [(impl, "decode", step), (f"{impl}:cuda_graph", "decode", graphed(step))]
        if fwd:
            out.append((impl, "fwd", build_case(impl, spec, seq_len, "fwd")))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--lengths", default="8192,16384,32768,65536")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    spec = KernelBenchSpec()
    writer = ResultWriter(args.out)
    probe_src = torch.ones(64 << 20, dtype=torch.int8, device="cuda")
    probe = Case(lambda: probe_src.sum(dtype=torch.int32), "sum of a 64 MiB int8 buffer")
    for i, seq in enumerate(int(s) for s in args.lengths.split(",")):
        todo = [("probe_read_64mib", "probe", probe)] if i == 0 else []
        todo += cases(spec, seq, fwd=i == 0)
        for rnd in range(args.rounds):
            for impl, mode, case in todo:
                for flush in FLUSH_MODES:
                    t = time_calls(case.call, warmup=3, repeats=args.repeats, device="cuda", flush=flush)
                    writer.write({"impl": impl, "mode": mode, "seq_len": seq, "flush": flush, "round": rnd,
                                  "us": t.ms * 1e3, "us_p20": t.ms_p20 * 1e3, "us_p80": t.ms_p80 * 1e3})
                    print(f"T={seq:6d} {impl:18s} {mode:6s} flush={flush:5s} round={rnd} {t.ms * 1e3:9.1f} us",
                          flush=True)
        del todo
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
