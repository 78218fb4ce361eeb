"""The NSA side of `nsa-bench kernels`: its inputs, the timed calls (whole NSA, decode step, each
forward and backward stage), their FLOPs, and the correctness check run before timing."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from nsa_bench.flops import BACKWARD_MATMUL_FACTOR, nsa_stage_flops
from nsa_bench.kernels import NSAConfig, mean_pool_compress
from nsa_bench.results import Unsupported
from nsa_bench.suites.kernel_check import check_backward, check_decode, check_forward
from nsa_bench.suites.kernel_spec import DTYPES, KernelBenchSpec
from nsa_bench.timing import backward_call

# ---- inputs ------------------------------------------------------------------------------------

def randn(shape, spec: KernelBenchSpec, seed: int) -> torch.Tensor:
    gen = torch.Generator(device=spec.device).manual_seed(seed)
    return torch.randn(shape, generator=gen, device=spec.device, dtype=DTYPES[spec.dtype])


def nsa_inputs(spec: KernelBenchSpec, seq_len: int, batch: int, *, requires_grad: bool = False,
               query_len: int | None = None) -> dict:
    """Random q, k, v [B,T,H*,d] and sigmoid gates [B,T,HQ] (token-major, the kernels' layout).

    query_len: rows of q and the gates (default T; 1 for a decode step's new token).
    """
    b, t = batch, seq_len
    tq = seq_len if query_len is None else query_len
    seed = spec.seed * 1_000_003 + seq_len
    args = {
        "q": randn((b, tq, spec.q_heads, spec.dk), spec, seed),
        "k": randn((b, t, spec.kv_heads, spec.dk), spec, seed + 1),
        "v": randn((b, t, spec.kv_heads, spec.dv), spec, seed + 2),
    }
    for i, name in enumerate(("g_cmp", "g_slc", "g_win")):
        args[name] = torch.sigmoid(randn((b, tq, spec.q_heads), spec, seed + 3 + i))
    for tensor in args.values():
        tensor.requires_grad_(requires_grad)
    return args


def with_compression(args: dict, config: NSAConfig) -> dict:
    """The kernel's full argument set: args plus mean-pooled k_cmp, v_cmp (detached)."""
    with torch.no_grad():
        k_cmp, v_cmp = mean_pool_compress(args["k"], config), mean_pool_compress(args["v"], config)
    return {**{n: t.detach() for n, t in args.items()}, "k_cmp": k_cmp, "v_cmp": v_cmp}


# ---- implementations ---------------------------------------------------------------------------

@dataclass
class Case:
    """One prepared measurement: the call to time and what ran."""

    call: Callable[[], object]
    detail: str


def kernels_attr(name: str, module: str = "nsa_bench.kernels"):
    """A name from the kernels package (or one of its modules), imported lazily: the Triton code
    is imported only once TRITON_INTERPRET is settled."""
    import importlib

    value = getattr(importlib.import_module(module), name, None)
    if value is None:
        raise Unsupported(f"{module}.{name} is not in this tree")
    return value


def _nsa_pipeline(attention, config: NSAConfig):
    """The whole NSA of one layer: mean-pool compression of k and v, then the attention."""

    def run(q, k, v, g_cmp, g_slc, g_win):
        k_cmp, v_cmp = mean_pool_compress(k, config), mean_pool_compress(v, config)
        return attention(q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, config)

    return run


def nsa_case(spec: KernelBenchSpec, seq_len: int, mode: str, attention, detail: str) -> Case:
    pipeline = _nsa_pipeline(attention, spec.nsa)
    args = nsa_inputs(spec, seq_len, spec.batch, requires_grad=mode == "bwd")
    if mode == "fwd":
        def call():
            with torch.no_grad():
                return pipeline(**args)
        return Case(call, detail)
    out = pipeline(**args)
    return Case(backward_call(out, list(args.values())), detail)


def nsa_decode_problem(spec: KernelBenchSpec, seq_len: int):
    """(q [B,1,HQ,dk], NSACache holding seq_len random tokens per sequence, gates) for one step."""
    make = kernels_attr("make_decode_problem", "nsa_bench.kernels.decode")
    return make(spec.decode_batch, seq_len, spec.q_heads, spec.kv_heads, spec.dk, spec.dv, spec.nsa,
                DTYPES[spec.dtype], spec.device, seed=spec.seed * 1_000_003 + seq_len)


def nsa_decode_case(spec: KernelBenchSpec, seq_len: int) -> Case:
    decode = kernels_attr("nsa_decode")
    q, cache, gates = nsa_decode_problem(spec, seq_len)
    out = torch.empty(spec.decode_batch, 1, spec.q_heads, spec.dv, dtype=q.dtype, device=q.device)
    return Case(lambda: decode(q, cache, *gates, spec.nsa, out=out),
                "bundled Triton NSA decode step (nsa_decode over an NSACache, mean-pool compression)")


def graphed(case: Case) -> Case:
    """The case captured once into a CUDA graph (after 3 warm-up calls on a side stream) and
    replayed: the time of the kernels without the host's launch overhead."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            case.call()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        case.call()
    return Case(graph.replay, case.detail + "; replayed as a CUDA graph")


# ---- NSA stages -----------------------------------------------------------------------------------

# Kernel stages are named '<branch>_<what>' (nsa_forward_stages / nsa_backward_stages). The
# branch names the nsa_bench.flops NSA_STAGES the stage computes; in the backward the suffix says
# which matmuls it runs: a dq pass recomputes QK^T and dP and forms dQ (3 matmuls, 1.5x the
# forward's 2), a dk/dv pass also recomputes them and forms dK and dV (2x), a fused one 2.5x.
STAGE_BRANCHES = {"compress": ["compress"], "cmp": ["cmp_attn"], "select": ["importance", "topk"],
                  "slc": ["slc_attn"], "win": ["win_attn"], "gate": ["gates"],
                  "win_gated": ["win_attn", "gates"]}  # a stage's full name, where it fuses more than its branch
BACKWARD_STAGE_FACTORS = {"dq": 1.5, "dkv": 2.0, "bwd": BACKWARD_MATMUL_FACTOR}
EXPECTED_STAGES = {"fwd": 5, "bwd": 8}  # for the progress bar only


def stage_flops(spec: KernelBenchSpec, seq_len: int, mode: str, stage: str) -> float:
    """Counted FLOPs of one named kernel stage (see STAGE_BRANCHES); NaN for an unknown name, 0 for
    bookkeeping stages (e.g. building an index)."""
    branch, _, what = stage.partition("_")
    parts = STAGE_BRANCHES.get(stage, STAGE_BRANCHES.get(branch))
    if parts is None:
        return math.nan
    factor = 1.0
    if mode == "bwd" and any(p.endswith("_attn") for p in parts):
        factor = BACKWARD_STAGE_FACTORS.get(what, 0.0)
    p = spec.problem(seq_len, mode)
    return factor * float(sum(nsa_stage_flops(p, spec.nsa, s) for s in parts))


def nsa_stage_cases(spec: KernelBenchSpec, seq_len: int, mode: str) -> list[tuple[str, Case]]:
    """(stage name, case) for each stage of the NSA forward or backward, in launch order.

    The stages come from nsa_bench.kernels.nsa_forward_stages / nsa_backward_stages, which run
    the forward once to prepare every stage's inputs. The forward gets the mean-pool compression
    of k and v as a first stage (it is part of the timed whole).
    """
    args = with_compression(nsa_inputs(spec, seq_len, spec.batch), spec.nsa)
    if mode == "fwd":
        stages = list(kernels_attr("nsa_forward_stages")(**args, config=spec.nsa))
        k, v = args["k"], args["v"]

        def compress():
            return mean_pool_compress(k, spec.nsa), mean_pool_compress(v, spec.nsa)

        stages.insert(0, ("compress", compress))
        source = "nsa_forward_stages"
    else:
        shape = (spec.batch, seq_len, spec.q_heads, spec.dv)
        dout = randn(shape, spec, spec.seed + seq_len + 7)
        stages = list(kernels_attr("nsa_backward_stages")(**args, config=spec.nsa, dout=dout))
        source = "nsa_backward_stages"
    return [(name, Case(fn, "mean_pool_compress of k and v (torch)" if name == "compress" and mode == "fwd"
                        else f"{source}: {name}")) for name, fn in stages]


# ---- correctness ---------------------------------------------------------------------------------

def check_nsa(spec: KernelBenchSpec, seq_len: int, mode: str):
    """Run the kernel_check of one mode on fresh inputs: CheckResult (kernel_check docstring)."""
    tie_rtol = spec.tie_rtol
    if mode == "decode":
        q, cache, gates = nsa_decode_problem(spec, seq_len)
        return check_decode(kernels_attr("nsa_decode"), q, cache, gates, spec.nsa, tie_rtol=tie_rtol)
    attention = kernels_attr("nsa_attention")
    args = with_compression(nsa_inputs(spec, seq_len, spec.batch), spec.nsa)
    if mode == "fwd":
        return check_forward(attention, args, spec.nsa, spec.check_rows, tie_rtol=tie_rtol)
    return check_backward(attention, args, spec.nsa, spec.check_prefix, tie_rtol=tie_rtol)
