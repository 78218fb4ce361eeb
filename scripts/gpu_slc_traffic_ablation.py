"""How much of the forward's selected-block attention is key/value traffic, and what would sharing
the forced blocks between neighbouring tokens buy at most?

  NSA_BENCH_GIT_REV=<rev> python scripts/gpu_slc_traffic_ablation.py --out results/slc_traffic_h200.csv

On the sweep's own inputs (suites.kernel_cases.nsa_inputs, paper config, B=1, 64/4 heads, d=128)
it times, in one process and with the sweep's timing (time_calls, L2 flushed by a read):
  - fa2 and nsa forwards (the goal's ratio) and every NSA forward stage;
  - slc_attn_fwd on the kernel's own selection ("selected"), and on edits of it that keep every
    program's loop, dots and stores but mask some block loads off (a masked gather moves no
    bytes; with TMA tiles, the default where head dims are powers of two, a dropped block is read
    as block 0, always hot in L2): "no_forced" drops the three forced blocks (0 and the two local
    ones), the traffic a kernel would have if neighbouring tokens fetched those blocks once, for free;
    "no_blocks" drops all of them (what is left: the dots, q loads, o stores, scheduling, and with
    TMA the reads of one hot block);
  - "local16": every token takes its 16 most recent blocks, so neighbours share all of them (the
    bytes moved are the same as "selected"; only where they come from changes).
With --backward, the backward's stages too. With --launch slc_fwd:2,3 slc_fwd:1,2,32 slc_dq:1,2, the
forward (slc_attn_fwd on the kernel's own selection) or the backward's slc_dq stage again under each
(warps, stages[, keys a tile]) launch setting. --no-tma: the forward and dq kernels
gather their key/value tiles row by row instead of loading them through tensor descriptors.
One CSV row per (length, case): ms (median), p20, p80, and the ms the goal allows (FA2 / 1.5).
"""

from __future__ import annotations

import argparse
import math

import torch

from nsa_bench.kernels import nsa_attention_with_indices
from nsa_bench.kernels.triton_sparse import LAUNCH, slc_attn_fwd
from nsa_bench.results import ResultWriter
from nsa_bench.suites.kernel_bench import build_case
from nsa_bench.suites.kernel_cases import nsa_inputs, nsa_stage_cases, with_compression
from nsa_bench.suites.kernel_spec import KernelBenchSpec
from nsa_bench.timing import time_calls


def edited_selections(indices: torch.Tensor, slc_block: int) -> dict[str, torch.Tensor]:
    """The selection [B,T,H,n] and its edits (module docstring), same shape and dtype."""
    seq, n = indices.shape[1], indices.shape[3]
    cur = (torch.arange(seq, device=indices.device) // slc_block).view(1, seq, 1, 1)
    forced = (indices == 0) | (indices == cur) | (indices == cur - 1)
    none = torch.full_like(indices, -1)
    rank = torch.arange(n, device=indices.device).view(1, 1, 1, n)
    recent = (cur - n + 1).clamp(min=0) + rank  # ascending, -1 padded like the kernel's own
    local = torch.where(rank <= cur, recent, -1).expand_as(indices).to(indices.dtype).contiguous()
    return {"selected": indices, "no_forced": torch.where(forced, none, indices), "no_blocks": none,
            "local16": local}


def launch_item(item: str) -> tuple[str, int, int, int | None]:
    """One --launch item, stage:warps,stages[,keys], as (stage, warps, stages, keys or None)."""
    stage, _, setting = item.partition(":")
    values = setting.split(",")
    if stage not in ("slc_fwd", "slc_dq") or len(values) not in (2, 3) or not all(v.isdigit() for v in values):
        raise argparse.ArgumentTypeError(f"{item!r}: expected slc_fwd|slc_dq:warps,stages[,keys], e.g. slc_fwd:1,2,32")
    nums = [int(v) for v in values]
    return stage, nums[0], nums[1], nums[2] if len(nums) == 3 else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--lengths", default="8192,16384,32768,65536")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--backward", action="store_true")
    ap.add_argument("--no-tma", action="store_true")
    ap.add_argument("--launch", type=launch_item, nargs="*", default=[],
                    help="stage:warps,stages[,keys] items, e.g. slc_fwd:1,2,32 slc_dq:1,2")
    args = ap.parse_args()
    spec = KernelBenchSpec()
    writer = ResultWriter(args.out, extra={"tma": not args.no_tma})
    for stage in ("slc_fwd", "slc_dq"):
        LAUNCH[stage]["tma"] = not args.no_tma

    def record(seq: int, case: str, call, goal_ms: float) -> float:
        t = time_calls(call, warmup=3, repeats=args.repeats, device="cuda")
        writer.write({"seq_len": seq, "case": case, "ms": t.ms, "ms_p20": t.ms_p20, "ms_p80": t.ms_p80,
                      "goal_ms": goal_ms})
        print(f"T={seq:6d} {case:22s} {t.ms:8.3f} ms", flush=True)
        return t.ms

    for seq in (int(s) for s in args.lengths.split(",")):
        fa2 = record(seq, "fa2_fwd", build_case("fa2", spec, seq, "fwd").call, math.nan)
        goal = fa2 / 1.5
        record(seq, "nsa_fwd", build_case("nsa", spec, seq, "fwd").call, goal)
        for mode in ("fwd", "bwd") if args.backward else ("fwd",):
            for name, case in nsa_stage_cases(spec, seq, mode):
                record(seq, f"{mode}_stage:{name}", case.call, goal if mode == "fwd" else math.nan)
        x = with_compression(nsa_inputs(spec, seq, spec.batch), spec.nsa)
        with torch.no_grad():
            _, indices = nsa_attention_with_indices(**x, config=spec.nsa)
        scale = 1.0 / math.sqrt(spec.dk)
        for name, idx in edited_selections(indices, spec.nsa.slc_block).items():
            record(seq, f"slc:{name}", lambda idx=idx, x=x: slc_attn_fwd(x["q"], x["k"], x["v"], idx, spec.nsa, scale),
                   goal)
        calls = {"slc_fwd": lambda x=x, idx=indices: slc_attn_fwd(x["q"], x["k"], x["v"], idx, spec.nsa, scale)}
        if any(item[0] == "slc_dq" for item in args.launch):
            calls["slc_dq"] = dict(nsa_stage_cases(spec, seq, "bwd"))["slc_dq"].call
        for stage, warps, stages, keys in args.launch:
            default = dict(LAUNCH[stage])
            LAUNCH[stage].update(warps=warps, stages=stages, keys=keys or default["keys"])
            record(seq, f"{stage}:w{warps}s{stages}k{LAUNCH[stage]['keys']}", calls[stage],
                   goal if stage == "slc_fwd" else math.nan)
            LAUNCH[stage].update(default)
        del x, indices
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
