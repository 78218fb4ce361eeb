"""How fast can the SMs read key/value tiles that sit in L2? The bound of the selected-block forward.

  NSA_BENCH_GIT_REV=<rev> python scripts/gpu_l2_read_bandwidth.py --out results/l2_read_h200.csv

Each of P programs reads R tiles of 64 rows x 128 bf16 (16 KiB, a selected block's keys or values
at d=128) from a buffer and sums them (so every byte reaches the registers, as the attention's dots
read them), through a tensor descriptor (TMA, as slc_attn_fwd loads its tiles) or a row gather.
Cases: "l2_random", tiles at random positions of a 16 MiB buffer (the K and V of one 8k sequence at
4 KV heads: it stays in the 50 MiB L2); "l2_same", every program reads the same R tiles;
"hbm_random", random tiles of a 2 GiB buffer (mostly misses: the memory's bandwidth). The slc_attn
forward at 8k, paper config, reads P = 8192 tokens x 4 KV heads programs x 32 tiles (16 blocks of
keys and values) = 17.2 GB. One CSV row per (case, load, warps): ms, GB moved, TB/s and bytes per
SM clock at the SM clock given (--sm-mhz, nvidia-smi's clocks.max.sm).
"""

from __future__ import annotations

import argparse

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from nsa_bench.results import ResultWriter
from nsa_bench.timing import time_calls

ROWS, COLS = 64, 128


@triton.jit
def _read_tiles_kernel(SRC, DESC, IDX, OUT, R: tl.constexpr, BR: tl.constexpr, ROWS: tl.constexpr,
                       COLS: tl.constexpr, TMA: tl.constexpr):
    """OUT[pid] = the sum of this program's R tiles [ROWS, COLS] at tile indices IDX[pid, :R]."""
    pid = tl.program_id(0)
    r = tl.arange(0, BR)
    sel = tl.load(IDX + pid.to(tl.int64) * R + r, mask=r < R, other=0)  # [BR]
    rows = tl.arange(0, ROWS)
    cols = tl.arange(0, COLS)
    acc = tl.zeros([COLS], tl.float32)  # [COLS]
    for i in range(R):
        j = tl.sum(tl.where(r == i, sel, 0))
        if TMA:
            x = DESC.load([j * ROWS, 0])  # [ROWS, COLS]
        else:
            x = tl.load(SRC + (j.to(tl.int64) * ROWS + rows)[:, None] * COLS + cols[None, :])  # [ROWS, COLS]
        acc += tl.sum(x.to(tl.float32), 0)
    tl.store(OUT + pid, tl.sum(acc))


def read_tiles(src: torch.Tensor, idx: torch.Tensor, tma: bool, warps: int) -> torch.Tensor:
    """Launch one program per row of idx [P, R] over src [n_tiles * ROWS, COLS]."""
    programs, reads = idx.shape
    out = torch.empty(programs, device=src.device, dtype=torch.float32)
    desc = TensorDescriptor(src, list(src.shape), [src.stride(0), 1], [ROWS, COLS]) if tma else None
    _read_tiles_kernel[(programs,)](src, desc, idx, out, R=reads, BR=triton.next_power_of_2(reads), ROWS=ROWS,
                                    COLS=COLS, TMA=tma, num_warps=warps, num_stages=2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--programs", type=int, default=8192 * 4)
    ap.add_argument("--reads", type=int, default=32)
    ap.add_argument("--warps", default="1,4")
    ap.add_argument("--sm-mhz", type=float, required=True, help="SM clock for bytes per SM clock")
    args = ap.parse_args()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    writer = ResultWriter(args.out, extra={"programs": args.programs, "reads": args.reads, "sms": sms,
                                           "sm_mhz": args.sm_mhz})
    gen = torch.Generator(device="cuda").manual_seed(0)
    buffers = {"l2": 16 << 20, "hbm": 2 << 30}
    for case in ("l2_random", "l2_same", "hbm_random"):
        size = buffers[case.split("_")[0]]
        n_tiles = size // (ROWS * COLS * 2)
        src = torch.randn(n_tiles * ROWS, COLS, device="cuda", generator=gen).to(torch.bfloat16)
        if case.endswith("random"):
            idx = torch.randint(0, n_tiles, (args.programs, args.reads), device="cuda", generator=gen, dtype=torch.int32)
        else:
            idx = torch.arange(args.reads, device="cuda", dtype=torch.int32).repeat(args.programs, 1)
        moved = args.programs * args.reads * ROWS * COLS * 2
        for tma in (True, False):
            for warps in (int(w) for w in args.warps.split(",")):
                call = lambda src=src, idx=idx, tma=tma, warps=warps: read_tiles(src, idx, tma, warps)  # noqa: E731
                t = time_calls(call, warmup=3, repeats=20, device="cuda")
                tbs = moved / (t.ms * 1e-3) / 1e12
                per_clk = moved / (t.ms * 1e-3) / (sms * args.sm_mhz * 1e6)
                writer.write({"case": case, "load": "tma" if tma else "gather", "warps": warps, "ms": t.ms,
                              "ms_p20": t.ms_p20, "ms_p80": t.ms_p80, "gb": moved / 1e9, "tb_per_s": tbs,
                              "bytes_per_sm_clk": per_clk})
                print(f"{case:11s} {'tma' if tma else 'gather':6s} w{warps} {t.ms:8.3f} ms {tbs:6.2f} TB/s "
                      f"{per_clk:5.1f} B/clk/SM", flush=True)
        del src, idx
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
