"""Compile every Triton NSA kernel for a CUDA target without a GPU; nothing is launched.

The public forward + backward and a decode step run on CPU tensors with a stand-in driver; each
kernel launch is compiled for the target (default sm_90: H100/H200) instead of launched, and
its resources (registers and spill stack from the bundled cuobjdump, shared memory from
Triton) become one CSV row. On a machine without a GPU this is how a Triton release's compiler
is checked, not only its interpreter (the tests): does every kernel compile, at what cost.
Usage: python scripts/compile_kernels.py --out results/compile_sm90_triton39.csv [--arch 90]
  [--set slc_fwd.keys=32 ...]  (a launch setting of a kernels module's LAUNCH, for this run)
  [--sass DIR]  (each paper-case kernel's SASS, DIR/<kernel>.sass, e.g. to count a loop's instructions)
"""

from __future__ import annotations

import argparse
import csv
import inspect
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # before triton is imported: kernels stay compilable

import torch  # noqa: E402
import triton  # noqa: E402
from triton import knobs  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
from triton.runtime import driver  # noqa: E402

PAPER = "32/16/64/16/512"
# case, dtype, NSA config, B, T, query heads, KV heads, (dk, dv), separate k/v per branch (decode: no
# grad); the head dims of scripts/gpu_check_kernels.py's checks, so each launch setting they take compiles here
CASES = [
    ("fwd+bwd paper", torch.bfloat16, PAPER, 1, 4096, 64, 4, (128, 128), False),
    ("fwd+bwd G=16 d=64 separate", torch.float16, PAPER, 1, 4096, 16, 1, (64, 64), True),
    ("fwd+bwd G=2 dk=192 separate", torch.bfloat16, PAPER, 1, 2053, 16, 8, (192, 128), True),
    ("fwd+bwd G=8 dk=64 dv=128", torch.bfloat16, PAPER, 1, 5000, 16, 2, (64, 128), False),
    ("fwd+bwd G=1 dv=64", torch.bfloat16, PAPER, 1, 3001, 8, 8, (128, 64), False),
    ("decode paper", torch.bfloat16, PAPER, 2, 8192, 64, 4, (128, 128), False),
]
SHARED_LIMIT = {90: 232448, 80: 166912}  # bytes of shared memory one block may use (sm_90: 227 KiB)


class StandInDriver:
    """What JITFunction.run asks of the active driver before it compiles."""

    def __init__(self, target):
        self.target = target

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return self.target

    def get_active_torch_device(self):
        return torch.device("cpu")


def resources(cubin: bytes) -> tuple[int, int]:
    """(registers, stack bytes) of a cubin's one kernel, read with Triton's bundled cuobjdump."""
    found = re.search(r"REG:(\d+) STACK:(\d+)", cuobjdump(["--dump-resource-usage"], cubin))
    return int(found.group(1)), int(found.group(2))


FIELDS = ["triton", "arch", "case", "stage", "kernel", "warps", "stages", "regs", "stack_bytes", "shared_bytes"]


def calling_stage() -> str:
    """The kernels' driver function that made this launch (parallel.py / decode.py), e.g. cmp_attn."""
    for frame in inspect.stack():
        if Path(frame.filename).name in ("parallel.py", "decode.py", "cache.py"):
            return frame.function
    return "?"


def cuobjdump(args: list[str], cubin: bytes) -> str:
    """The output of Triton's bundled cuobjdump with args on a cubin."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.cubin"
        path.write_bytes(cubin)
        tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
        return subprocess.run([str(tool), *args, str(path)], capture_output=True, text=True, check=True).stdout


def compile_hook(target, write, case: list, sass_dir: Path | None = None):
    """A jit_cache_hook: compile the launch for the target, write its row (and, for the paper case,
    its SASS into sass_dir), skip the launch."""

    def hook(*, key, repr, fn, compile, is_manual_warmup, already_compiled):
        src = ASTSource(fn.jit_function, compile["signature"], compile["constants"], compile["configs"][0])
        options = {name: compile[name] for name in ("num_warps", "num_ctas", "num_stages", "enable_fp_fusion")}
        kernel = triton.compile(src, target=target, options=options)
        if sass_dir is not None and case[0] == "fwd+bwd paper":
            (sass_dir / f"{fn.name}.sass").write_text(cuobjdump(["-sass"], kernel.asm["cubin"]))
        regs, stack = resources(kernel.asm["cubin"])
        write(dict(triton=triton.__version__, arch=f"sm_{target.arch}", case=case[0], stage=calling_stage(),
                   kernel=fn.name, warps=options["num_warps"], stages=options["num_stages"], regs=regs,
                   stack_bytes=stack, shared_bytes=kernel.metadata.shared))
        return True

    return hook


def run_case(name, dtype, config, batch, seq, q_heads, kv_heads, dims, separate):
    """Call the public kernels once on CPU tensors (the hook compiles instead of launching)."""
    from nsa_bench.kernels import NSAConfig, nsa_attention, nsa_decode
    from nsa_bench.kernels.decode import make_decode_problem

    cfg = NSAConfig.parse(config)
    dk, dv = dims
    if name.startswith("decode"):
        q, cache, gates = make_decode_problem(batch, seq, q_heads, kv_heads, dk, dv, cfg, dtype, "cpu")
        nsa_decode(q, cache, *gates)
        return
    gen = torch.Generator().manual_seed(0)
    rnd = lambda *s: torch.randn(*s, generator=gen).to(dtype).requires_grad_()  # noqa: E731
    n_cmp = cfg.num_cmp_blocks(seq)
    args = [rnd(batch, seq, q_heads, dk), rnd(batch, seq, kv_heads, dk), rnd(batch, seq, kv_heads, dv),
            rnd(batch, n_cmp, kv_heads, dk), rnd(batch, n_cmp, kv_heads, dv)]
    args += [rnd(batch, seq, q_heads) for _ in range(3)]  # gates
    branch = {n: rnd(batch, seq, kv_heads, dk if n[0] == "k" else dv)
              for n in ("k_slc", "v_slc", "k_win", "v_win")} if separate else {}
    out = nsa_attention(*args, cfg, **branch)
    out.backward(torch.ones_like(out))


def set_launch(item: str) -> None:
    """Apply one --set STAGE.KEY=VALUE (an int, or true/false) to the kernels module whose LAUNCH has STAGE."""
    from nsa_bench.kernels import triton_band, triton_select, triton_sparse

    name, _, value = item.partition("=")
    stage, _, key = name.partition(".")
    launch = next((m.LAUNCH for m in (triton_band, triton_select, triton_sparse) if stage in m.LAUNCH), None)
    flag = value.lower() in ("true", "false")
    if launch is None or key not in launch[stage] or not (flag or value.isdigit()):
        raise ValueError(f"--set {item!r}: expected STAGE.KEY=VALUE with a known stage and key, an int or true/false")
    launch[stage][key] = value.lower() == "true" if flag else int(value)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="CSV to write (must not exist)")
    ap.add_argument("--arch", type=int, default=90, help="CUDA compute capability, e.g. 90 (default)")
    ap.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE",
                    help="override a launch setting for this run, e.g. slc_fwd.keys=32 (repeatable)")
    ap.add_argument("--sass", type=Path, help="folder for the paper case's SASS, one file per kernel")
    args = ap.parse_args(argv)
    if Path(args.out).exists():
        print(f"compile_kernels: {args.out} exists; choose another --out", file=sys.stderr)
        return 2
    try:
        for item in args.set:
            set_launch(item)
    except ValueError as e:
        print(f"compile_kernels: {e}", file=sys.stderr)
        return 2
    if args.sass:
        args.sass.mkdir(parents=True, exist_ok=True)
    from nsa_bench.kernels import triton_common

    target = GPUTarget("cuda", args.arch, 32)
    driver.set_active(StandInDriver(target))
    triton_common.POISON_OUTPUTS = True  # NaN / -7 outputs: host code after a skipped launch stays in range
    knobs.runtime.interpret = False
    os.environ["TRITON_INTERPRET"] = "1"  # read only by the wrappers' CUDA-tensor check, which it lets CPU tensors pass
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()

        limit = SHARED_LIMIT.get(args.arch)
        over = []

        def write(row):
            writer.writerow(row)
            f.flush()
            too_much = limit is not None and row["shared_bytes"] > limit
            if too_much:
                over.append(row)
            print(f"{row['case']:28s} {row['stage']:14s} {row['kernel']:22s} regs {row['regs']:3d}  "
                  f"stack {row['stack_bytes']:4d} B  shared {row['shared_bytes']:6d} B"
                  + (f"  OVER the sm_{args.arch} limit of {limit} B" if too_much else ""), flush=True)

        case: list = [None]
        knobs.runtime.jit_cache_hook = compile_hook(target, write, case, args.sass)
        for spec in CASES:
            case[0] = spec[0]
            run_case(*spec)
    if over:
        print(f"compile_kernels: {len(over)} launches need more shared memory than sm_{args.arch} has", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
