"""`nsa-bench kernels`: NSA against FlashAttention-2 and cuDNN attention, forward, backward, decode.

The sweep runs implementations x modes x sequence lengths. For every (mode, length) the baselines
run first (fa2, cudnn), then nsa (after a correctness check against the reference), then NSA's
stages one by one (forward and backward), then the reference where the length allows; decode adds
each implementation's step replayed as a CUDA graph (`<impl>:cuda_graph`). Each measurement is
one CSV row, written as soon as it is done; a measurement that runs out of memory or is not
supported becomes a row with that status and the sweep goes on. FLOPs and bytes come from
nsa_bench.flops, times from nsa_bench.timing; both modules' docstrings state the conventions.
"""

from __future__ import annotations

import gc
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from nsa_bench.flops import (
    BACKWARD_MATMUL_FACTOR,
    Problem,
    full_attention_bytes,
    full_attention_flops,
    nsa_bytes,
    nsa_ceiling,
    nsa_flops,
    nsa_stage_flops,
)
from nsa_bench.kernels import NSAConfig, mean_pool_compress, nsa_attention_ref
from nsa_bench.suites.kernel_check import check_backward, check_decode, check_forward, tolerance
from nsa_bench.results import Unsupported, status_of
from nsa_bench.timing import PeakMemory, Timing, backward_call, time_calls

IMPLS = ("fa2", "cudnn", "nsa", "ref")  # also the order of a sweep: baselines first
MODES = ("fwd", "bwd", "decode")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

COLUMNS = (
    "kind", "impl", "impl_detail", "mode", "seq_len", "batch", "q_heads", "kv_heads", "dk", "dv",
    "dtype", "nsa_config", "status", "ms", "ms_p20", "ms_p80", "repeats", "tflops", "gbps", "flops",
    "bytes", "speedup_fa2", "speedup_cudnn", "ceiling", "efficiency", "peak_mem_gb", "max_rel_err",
    "check_rows", "check_tie_rows", "timing",
)
INTERPRETER_TIMING = "cpu, Triton interpreter: smoke run, not performance"
CUDA_TIMING = "cuda events, L2 flushed"


@dataclass(frozen=True)
class KernelBenchSpec:
    """What one `nsa-bench kernels` run measures."""

    seq_lens: tuple[int, ...] = (8192, 16384, 32768, 65536)
    batch: int = 1
    q_heads: int = 64
    kv_heads: int = 4
    dk: int = 128
    dv: int = 128
    dtype: str = "bf16"
    nsa: NSAConfig = field(default_factory=NSAConfig)
    impls: tuple[str, ...] = ("fa2", "cudnn", "nsa")
    modes: tuple[str, ...] = MODES
    stages: bool = True
    cuda_graphs: bool = True
    warmup: int = 5
    repeats: int = 20
    decode_batch: int = 8
    check_rows: int = 1024
    check_prefix: int = 2048
    ref_max_len: int = 4096
    tie_rtol: float = 1e-2
    interpret: bool = False
    seed: int = 0

    @property
    def device(self) -> torch.device:
        return torch.device("cpu" if self.interpret else "cuda")

    def problem(self, seq_len: int, mode: str) -> Problem:
        batch = self.decode_batch if mode == "decode" else self.batch
        return Problem(seq_len, batch, self.q_heads, self.kv_heads, self.dk, self.dv, self.dtype)

    def validate(self) -> None:
        """Raise ValueError on a spec that cannot run."""
        for name in ("batch", "q_heads", "kv_heads", "dk", "dv", "repeats", "decode_batch", "check_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError("warmup must be >= 0")
        if self.q_heads % self.kv_heads:
            raise ValueError(f"q_heads ({self.q_heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not self.seq_lens or min(self.seq_lens) < 1:
            raise ValueError("give at least one positive sequence length")
        for name, values, known in (("impl", self.impls, IMPLS), ("mode", self.modes, MODES)):
            bad = [v for v in values if v not in known]
            if bad or not values:
                raise ValueError(f"unknown {name} {', '.join(bad) or '(none)'}; choose from {', '.join(known)}")


# Defaults: the H100 setup, and the tiny CPU smoke run of --interpret.
H100_SPEC = KernelBenchSpec()
INTERPRET_SPEC = KernelBenchSpec(
    seq_lens=(64, 96), batch=1, q_heads=2, kv_heads=1, dk=16, dv=16, dtype="fp16",
    nsa=NSAConfig.parse("8/4/16/4/32"), impls=("fa2", "nsa", "ref"), warmup=0, repeats=2,
    decode_batch=2, check_rows=128, check_prefix=128, ref_max_len=128, interpret=True,
)


# ---- inputs ------------------------------------------------------------------------------------

def _randn(shape, spec: KernelBenchSpec, seed: int) -> torch.Tensor:
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
        "q": _randn((b, tq, spec.q_heads, spec.dk), spec, seed),
        "k": _randn((b, t, spec.kv_heads, spec.dk), spec, seed + 1),
        "v": _randn((b, t, spec.kv_heads, spec.dv), spec, seed + 2),
    }
    for i, name in enumerate(("g_cmp", "g_slc", "g_win")):
        args[name] = torch.sigmoid(_randn((b, tq, spec.q_heads), spec, seed + 3 + i))
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


def _kernels_attr(name: str, module: str = "nsa_bench.kernels"):
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


def _nsa_case(spec: KernelBenchSpec, seq_len: int, mode: str, attention, detail: str) -> Case:
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
    make = _kernels_attr("make_decode_problem", "nsa_bench.kernels.decode")
    return make(spec.decode_batch, seq_len, spec.q_heads, spec.kv_heads, spec.dk, spec.dv, spec.nsa,
                DTYPES[spec.dtype], spec.device, seed=spec.seed * 1_000_003 + seq_len)


def _nsa_decode_case(spec: KernelBenchSpec, seq_len: int) -> Case:
    decode = _kernels_attr("nsa_decode")
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


def _sdpa_backend(impl: str):
    from torch.nn.attention import SDPBackend

    name = "FLASH_ATTENTION" if impl == "fa2" else "CUDNN_ATTENTION"
    backend = getattr(SDPBackend, name, None)
    if backend is None:
        raise Unsupported(f"this torch has no SDPBackend.{name}")
    return backend


_PROBES: dict[tuple, bool] = {}


def _sdpa_runs(impl: str, spec: KernelBenchSpec, gqa: bool) -> bool:
    """Whether SDPA with the impl's backend runs fwd+bwd here on a tiny problem (cached)."""
    from torch.nn.attention import sdpa_kernel

    key = (impl, spec.dtype, spec.dk, spec.dv, spec.q_heads // spec.kv_heads, gqa, str(spec.device))
    if key not in _PROBES:
        group = spec.q_heads // spec.kv_heads
        dtype = DTYPES[spec.dtype]
        q = torch.randn(1, 2 * group, 128, spec.dk, device=spec.device, dtype=dtype, requires_grad=True)
        k = torch.randn(1, 2 if gqa else 2 * group, 128, spec.dk, device=spec.device, dtype=dtype)
        v = torch.randn(1, k.shape[1], 128, spec.dv, device=spec.device, dtype=dtype)
        kwargs = {"enable_gqa": True} if gqa else {}
        try:
            with sdpa_kernel(_sdpa_backend(impl)):
                out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, **kwargs)
            out.sum().backward()
            if spec.device.type == "cuda":
                torch.cuda.synchronize()
            _PROBES[key] = True
        except (RuntimeError, TypeError, Unsupported):
            _PROBES[key] = False
    return _PROBES[key]


def _flash_attn_package():
    """flash_attn's functions when the package imports (CUDA only), else None."""
    try:
        from flash_attn import flash_attn_func, flash_attn_with_kvcache
    except Exception:
        return None
    return flash_attn_func, flash_attn_with_kvcache


def _full_attention_case(impl: str, spec: KernelBenchSpec, seq_len: int, mode: str) -> Case:
    """fa2 (flash_attn, else SDPA's flash backend) or cudnn (SDPA's cuDNN backend)."""
    from nsa_bench.environment import cudnn_attention_available, fa2_baseline

    sdpa = torch.nn.functional.scaled_dot_product_attention
    batch = spec.decode_batch if mode == "decode" else spec.batch
    group = spec.q_heads // spec.kv_heads

    if spec.interpret:
        if impl == "cudnn":
            raise Unsupported("cuDNN attention needs a CUDA GPU")
        detail = "torch SDPA on the CPU (interpreter smoke stand-in, not FlashAttention)"
        backend_ctx = None
    elif impl == "fa2" and _flash_attn_package() is not None:
        return _flash_attn_case(spec, seq_len, mode, batch, fa2_baseline())
    else:
        if impl == "cudnn" and not cudnn_attention_available():
            raise Unsupported("torch SDPA's cuDNN backend does not run here")
        detail = fa2_baseline() if impl == "fa2" else "torch SDPA cuDNN backend"
        backend_ctx = _sdpa_backend(impl)

    def attend(q, k, v, **kwargs):
        if backend_ctx is None:
            return sdpa(q, k, v, **kwargs)
        from torch.nn.attention import sdpa_kernel

        with sdpa_kernel(backend_ctx):
            return sdpa(q, k, v, **kwargs)

    args = nsa_inputs(spec, seq_len, batch, query_len=1 if mode == "decode" else None)
    q, k, v = (args[n].transpose(1, 2).contiguous() for n in ("q", "k", "v"))  # SDPA: [B,H,T,D]
    del args
    if mode == "decode":
        # One new token per sequence: its G query heads of a KV group become G query rows over
        # that group's cache, so no KV head is repeated and the cache is read once.
        q_step = q.reshape(batch, spec.kv_heads, group, spec.dk)  # query head h*G + g uses KV head h
        detail += "; decode: G query heads of a KV group as G query rows, cache read once"
        return Case(lambda: attend(q_step, k, v), detail)

    kwargs = {"is_causal": True}
    if group > 1:
        if spec.interpret or _sdpa_runs(impl, spec, gqa=True):
            kwargs["enable_gqa"] = True
            detail += "; GQA via enable_gqa"
        else:
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
            detail += "; GQA via KV heads repeated before the timed call"
    if mode == "fwd":
        def call():
            with torch.no_grad():
                return attend(q, k, v, **kwargs)
        return Case(call, detail)
    q, k, v = (t.requires_grad_(True) for t in (q, k, v))
    out = attend(q, k, v, **kwargs)
    return Case(backward_call(out, [q, k, v]), detail)


def _flash_attn_case(spec: KernelBenchSpec, seq_len: int, mode: str, batch: int, detail: str) -> Case:
    """The flash_attn package: native GQA, token-major layout."""
    flash_attn_func, flash_attn_with_kvcache = _flash_attn_package()
    args = nsa_inputs(spec, seq_len, batch, requires_grad=mode == "bwd", query_len=1 if mode == "decode" else None)
    q, k, v = args["q"], args["k"], args["v"]
    if mode == "decode":
        lens = torch.full((batch,), seq_len, dtype=torch.int32, device=q.device)
        return Case(lambda: flash_attn_with_kvcache(q, k, v, cache_seqlens=lens),
                    detail + "; decode: flash_attn_with_kvcache")
    if mode == "fwd":
        def call():
            with torch.no_grad():
                return flash_attn_func(q, k, v, causal=True)
        return Case(call, detail)
    out = flash_attn_func(q, k, v, causal=True)
    return Case(backward_call(out, [q, k, v]), detail)


def build_case(impl: str, spec: KernelBenchSpec, seq_len: int, mode: str) -> Case:
    """The prepared measurement of one implementation (IMPLS) in one mode at one length."""
    if impl in ("fa2", "cudnn"):
        return _full_attention_case(impl, spec, seq_len, mode)
    if impl == "nsa":
        if mode == "decode":
            return _nsa_decode_case(spec, seq_len)
        return _nsa_case(spec, seq_len, mode, _kernels_attr("nsa_attention"),
                         "bundled Triton NSA (nsa_attention) with mean-pool compression")
    if impl == "ref":
        if mode == "decode":
            raise Unsupported("the reference has no decode step")
        if seq_len > spec.ref_max_len:
            raise Unsupported(f"the reference runs only up to --ref-max-len {spec.ref_max_len} tokens")
        return _nsa_case(spec, seq_len, mode, nsa_attention_ref,
                         "PyTorch reference (nsa_attention_ref, float32 math) with mean-pool compression")
    raise ValueError(f"unknown implementation {impl!r}")


# ---- NSA stages -----------------------------------------------------------------------------------

# Kernel stages are named '<branch>_<what>' (nsa_forward_stages / nsa_backward_stages). The
# branch names the nsa_bench.flops NSA_STAGES the stage computes; in the backward the suffix says
# which matmuls it runs: a dq pass recomputes QK^T and dP and forms dQ (3 matmuls, 1.5x the
# forward's 2), a dk/dv pass also recomputes them and forms dK and dV (2x), a fused one 2.5x.
STAGE_BRANCHES = {"compress": ["compress"], "cmp": ["cmp_attn"], "select": ["importance", "topk"],
                  "slc": ["slc_attn"], "win": ["win_attn"], "combine": ["gates"], "gate": ["gates"]}
BACKWARD_STAGE_FACTORS = {"dq": 1.5, "dkv": 2.0, "bwd": BACKWARD_MATMUL_FACTOR}
EXPECTED_STAGES = {"fwd": 6, "bwd": 8}  # for the progress bar only


def stage_flops(spec: KernelBenchSpec, seq_len: int, mode: str, stage: str) -> float:
    """Counted FLOPs of one named kernel stage (see STAGE_BRANCHES); NaN for an unknown name, 0 for
    bookkeeping stages (e.g. building an index)."""
    branch, _, what = stage.partition("_")
    parts = STAGE_BRANCHES.get(branch)
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
        stages = list(_kernels_attr("nsa_forward_stages")(**args, config=spec.nsa))
        k, v = args["k"], args["v"]

        def compress():
            return mean_pool_compress(k, spec.nsa), mean_pool_compress(v, spec.nsa)

        stages.insert(0, ("compress", compress))
        source = "nsa_forward_stages"
    else:
        shape = (spec.batch, seq_len, spec.q_heads, spec.dv)
        dout = _randn(shape, spec, spec.seed + seq_len + 7)
        try:
            backward_stages = _kernels_attr("nsa_backward_stages")
        except Unsupported:  # defined beside nsa_attention, not exported by the package
            backward_stages = _kernels_attr("nsa_backward_stages", "nsa_bench.kernels.parallel")
        stages = list(backward_stages(**args, config=spec.nsa, dout=dout))
        source = "nsa_backward_stages"
    return [(name, Case(fn, "mean_pool_compress of k and v (torch)" if name == "compress" and mode == "fwd"
                        else f"{source}: {name}")) for name, fn in stages]


# ---- correctness ---------------------------------------------------------------------------------

def check_nsa(spec: KernelBenchSpec, seq_len: int, mode: str):
    """Run the kernel_check of one mode on fresh inputs: CheckResult (kernel_check docstring)."""
    tie_rtol = spec.tie_rtol
    if mode == "decode":
        q, cache, gates = nsa_decode_problem(spec, seq_len)
        return check_decode(_kernels_attr("nsa_decode"), q, cache, gates, spec.nsa, tie_rtol=tie_rtol)
    attention = _kernels_attr("nsa_attention")
    args = with_compression(nsa_inputs(spec, seq_len, spec.batch), spec.nsa)
    if mode == "fwd":
        return check_forward(attention, args, spec.nsa, spec.check_rows, tie_rtol=tie_rtol)
    return check_backward(attention, args, spec.nsa, spec.check_prefix, tie_rtol=tie_rtol)


# ---- measuring -----------------------------------------------------------------------------------

def release_memory() -> None:
    """Drop what a failed or finished measurement left behind."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def guarded(work: Callable[[], object]) -> tuple[str, object]:
    """Run work(); ('ok', result) or (status, None) for OOM, unsupported and errors."""
    try:
        return "ok", work()
    except Exception as error:  # noqa: BLE001 - every failure becomes a row (OOM included)
        status = status_of(error)
    release_memory()
    return status, None


def measure(case_builder: Callable[[], Case], spec: KernelBenchSpec) -> tuple[str, str, Timing | None, float | None]:
    """Build and time one case: (status, detail, timing, peak GB)."""
    detail = ""

    def work():
        nonlocal detail
        with PeakMemory(spec.device) as peak:
            case = case_builder()
            detail = case.detail
            timing = time_calls(case.call, warmup=spec.warmup, repeats=spec.repeats, device=spec.device)
        return timing, peak.gb

    status, result = guarded(work)
    release_memory()
    if result is None:
        return status, detail, None, None
    return status, detail, result[0], result[1]


def empty_row(spec: KernelBenchSpec, impl: str, mode: str, seq_len: int) -> dict:
    """A row with every column, the problem filled in and no measurement yet."""
    p = spec.problem(seq_len, mode)
    row = {c: math.nan for c in COLUMNS}
    row.update(kind="kernel", impl=impl, impl_detail="", mode=mode, seq_len=seq_len, batch=p.batch,
               q_heads=p.q_heads, kv_heads=p.kv_heads, dk=p.dk, dv=p.dv, dtype=p.dtype,
               nsa_config=str(spec.nsa), status="", repeats=spec.repeats, check_rows=math.nan,
               timing=INTERPRETER_TIMING if spec.interpret else CUDA_TIMING)
    return row


def fill_rates(row: dict, flops: float, nbytes: float, ceiling: float) -> dict:
    """Counts, TFLOP/s, GB/s and the ceiling into a row."""
    row.update(flops=flops, bytes=nbytes, ceiling=ceiling)
    ms = row["ms"]
    if isinstance(ms, float) and ms > 0 and not math.isnan(ms):
        if flops and not math.isnan(flops):
            row["tflops"] = flops / (ms * 1e-3) / 1e12
        if nbytes and not math.isnan(nbytes):
            row["gbps"] = nbytes / (ms * 1e-3) / 1e9
    return row


def fill_speedups(row: dict, baseline_ms: dict[str, float], suffix: str = "") -> dict:
    """speedup_fa2/speedup_cudnn (baseline ms over this row's ms) and efficiency = speedup / ceiling.

    suffix: ':cuda_graph' compares graph replays with the baselines' graph replays.
    """
    ms = row["ms"]
    ok = isinstance(ms, float) and not math.isnan(ms) and ms > 0
    for impl in ("fa2", "cudnn"):
        base = baseline_ms.get(impl + suffix)
        if ok and base:
            row[f"speedup_{impl}"] = base / ms
    ceiling = row.get("ceiling")
    if not math.isnan(row["speedup_fa2"]) and isinstance(ceiling, float) and ceiling > 0 and not math.isnan(ceiling):
        row["efficiency"] = row["speedup_fa2"] / ceiling
    return row


def _timed_row(spec, impl, mode, seq_len, case_builder) -> dict:
    row = empty_row(spec, impl, mode, seq_len)
    status, detail, timing, peak = measure(case_builder, spec)
    row.update(status=status, impl_detail=detail, peak_mem_gb=math.nan if peak is None else peak)
    if timing is not None:
        row.update(ms=timing.ms, ms_p20=timing.ms_p20, ms_p80=timing.ms_p80, repeats=timing.repeats)
    return row


def _counts(spec: KernelBenchSpec, impl: str, mode: str, seq_len: int) -> tuple[float, float, float]:
    p = spec.problem(seq_len, mode)
    if impl in ("fa2", "cudnn"):
        return full_attention_flops(p, mode), full_attention_bytes(p, mode), 1.0
    return nsa_flops(p, spec.nsa, mode), nsa_bytes(p, spec.nsa, mode), nsa_ceiling(p, spec.nsa, mode)


def sweep_rows(spec: KernelBenchSpec, seq_len: int, mode: str):
    """Yield the rows of one (length, mode), in order, each as soon as it is measured."""
    baseline_ms: dict[str, float] = {}
    impls = [i for i in IMPLS if i in spec.impls]
    for impl in impls:
        check = _check_first(spec, seq_len, mode) if impl == "nsa" else None
        row = _timed_row(spec, impl, mode, seq_len, lambda impl=impl: build_case(impl, spec, seq_len, mode))
        if check is not None and row["status"] == "ok":
            _record_check(spec, mode, row, *check)
        fill_rates(row, *_counts(spec, impl, mode, seq_len))
        if impl in ("fa2", "cudnn") and row["status"] == "ok":
            baseline_ms[impl] = row["ms"]
        yield fill_speedups(row, baseline_ms)
        if impl == "nsa" and mode in ("fwd", "bwd") and spec.stages:
            yield from _stage_rows(spec, seq_len, mode, baseline_ms)
    if mode == "decode" and spec.cuda_graphs and spec.device.type == "cuda":
        for impl in [i for i in impls if i != "ref"]:
            name = f"{impl}:cuda_graph"
            row = _timed_row(spec, name, mode, seq_len, lambda impl=impl: graphed(build_case(impl, spec, seq_len, mode)))
            fill_rates(row, *_counts(spec, impl, mode, seq_len))
            if impl in ("fa2", "cudnn") and row["status"] == "ok":
                baseline_ms[name] = row["ms"]
            yield fill_speedups(row, baseline_ms, ":cuda_graph")


def _check_first(spec: KernelBenchSpec, seq_len: int, mode: str):
    """Check nsa against the reference before it is timed: (status, CheckResult or None)."""
    status, result = guarded(lambda: check_nsa(spec, seq_len, mode))
    release_memory()
    return status, result


def _record_check(spec: KernelBenchSpec, mode: str, row: dict, status: str, result) -> None:
    """Put the check into the row; a failed check turns the row's status into an error."""
    if result is None:
        row["status"] = f"ok (check not run: {status})"
        return
    row.update(max_rel_err=result.max_rel_err, check_rows=result.rows, check_tie_rows=result.tie_rows)
    tol = tolerance(spec.dtype, backward=mode == "bwd")
    if not result.max_rel_err <= tol:
        row["status"] = f"error: differs from the reference (max_rel_err {result.max_rel_err:.3g} > {tol:g})"


def _stage_rows(spec: KernelBenchSpec, seq_len: int, mode: str, baseline_ms: dict[str, float]):
    status, cases = guarded(lambda: nsa_stage_cases(spec, seq_len, mode))
    if cases is None:
        row = empty_row(spec, "nsa:stages", mode, seq_len)
        row["status"] = status
        yield row
        return
    for name, case in cases:
        row = _timed_row(spec, f"nsa:{name}", mode, seq_len, lambda case=case: case)
        fill_rates(row, stage_flops(spec, seq_len, mode, name), math.nan, math.nan)
        yield fill_speedups(row, baseline_ms)
    del cases
    release_memory()


def copy_bandwidth_gbps(spec: KernelBenchSpec, nbytes: int = 1 << 30) -> float:
    """Measured device-to-device copy bandwidth (read + write bytes per second), for the decode plot."""
    if spec.device.type != "cuda":
        return math.nan
    buffers = torch.empty(2, nbytes, dtype=torch.uint8, device=spec.device)
    timing = time_calls(lambda: buffers[1].copy_(buffers[0]), warmup=3, repeats=10, device=spec.device)
    buffers = None
    release_memory()
    return 2 * nbytes / (timing.ms * 1e-3) / 1e9


def planned_rows(spec: KernelBenchSpec) -> int:
    """Rows the sweep will write, guessing the number of stages (the bar is corrected at the end)."""
    per_mode = len([i for i in IMPLS if i in spec.impls])
    stage_rows = sum(EXPECTED_STAGES[m] for m in ("fwd", "bwd") if m in spec.modes) if (
        spec.stages and "nsa" in spec.impls) else 0
    graph_rows = len([i for i in spec.impls if i != "ref"]) if (
        "decode" in spec.modes and spec.cuda_graphs and spec.device.type == "cuda") else 0
    return len(spec.seq_lens) * (len(spec.modes) * per_mode + stage_rows + graph_rows)


def run_sweep(spec: KernelBenchSpec, writer, on_row: Callable[[dict], None] = lambda row: None) -> list[dict]:
    """Measure everything the spec asks for; write each row through `writer` as it is done."""
    spec.validate()
    rows = []
    for seq_len in spec.seq_lens:
        for mode in [m for m in MODES if m in spec.modes]:
            for row in sweep_rows(spec, seq_len, mode):
                writer.write(row)
                rows.append(row)
                on_row(row)
    return rows


# ---- the command ---------------------------------------------------------------------------------

def default_tag(spec: KernelBenchSpec) -> str:
    """'interpret' for the smoke run, else the GPU's name as a slug (e.g. 'h100_80gb_hbm3')."""
    if spec.interpret or not torch.cuda.is_available():
        return "interpret"
    name = torch.cuda.get_device_name(0).lower().replace("nvidia", "")
    return re.sub(r"[^a-z0-9]+", "_", name).strip("_") or "gpu"


def free_tag(out_dir: str | Path, reports_dir: str | Path, tag: str | None, spec: KernelBenchSpec,
             force: bool = False) -> str:
    """The tag of the run's files, never replacing an existing kernels_<tag>.csv or .md unless `force`:
    the default tag (the GPU) gets the date and time added; a given tag that exists is refused (UsageError)."""
    import datetime

    from nsa_bench.errors import UsageError

    chosen = tag or default_tag(spec)
    taken = [p for p in (Path(out_dir) / f"kernels_{chosen}.csv", Path(reports_dir) / f"kernels_{chosen}.md") if p.exists()]
    if force or not taken:
        return chosen
    if tag:
        raise UsageError(f"{taken[0]} exists; give another --tag, or --force to replace it")
    return f"{chosen}_{datetime.datetime.now().strftime('%Y%m%d_%H%M%S')}"


def slow_interpret(spec: KernelBenchSpec, longest: int = 512) -> str | None:
    """A warning when an --interpret run's sizes will take long on a CPU (the interpreter runs each
    Triton program in Python), else None."""
    if not spec.interpret or max(spec.seq_lens) <= longest:
        return None
    return (f"--seq {max(spec.seq_lens)} under the Triton interpreter takes minutes to hours on a CPU; "
            f"lengths up to {longest} (the default is {','.join(map(str, INTERPRET_SPEC.seq_lens))}) take seconds")


def _summary_table(rows: list[dict]):
    """The terminal's summary (80 columns): the CSV and the markdown have every column."""
    from rich import box
    from rich.table import Table

    table = Table(title="nsa-bench kernels", caption="rate: TFLOP/s (fwd, bwd) or GB/s (decode)",
                  box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    for name in ("mode", "T", "impl", "status", "ms", "rate", "xFA2", "xcuDNN", "ceil", "eff", "err"):
        table.add_column(name, justify="left" if name in ("mode", "impl", "status") else "right", no_wrap=True)

    def f(value, spec=".3g", suffix=""):
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:{spec}}{suffix}"

    for r in rows:
        word = r["status"].split(":")[0].split(" (")[0]  # the CSV and the report have the whole reason
        status = word if r["status"] == "ok" else f"[yellow]{word}[/]"
        rate = f(r["gbps"], ".0f") if r["mode"] == "decode" else f(r["tflops"], ".1f")
        length = f"{r['seq_len'] // 1024}k" if r["seq_len"] % 1024 == 0 else str(r["seq_len"])
        table.add_row(r["mode"], length, r["impl"], status, f(r["ms"], ".4g"), rate,
                      f(r["speedup_fa2"], ".3g", "x"), f(r["speedup_cudnn"], ".3g", "x"),
                      f(r["ceiling"], ".3g", "x"), f(r["efficiency"], ".0%"), f(r["max_rel_err"], ".0e"))
    return table


def _csv_list(text: str, what: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    if not items:
        raise ValueError(f"give at least one {what}")
    return items


def spec_command(spec: KernelBenchSpec, out: str, reports: str, tag: str | None) -> str:
    """The full `nsa-bench kernels` command line that reproduces a spec."""
    parts = ["nsa-bench kernels"]
    if spec.interpret:
        parts.append("--interpret")
    parts += [
        f"--seq {','.join(str(n) for n in spec.seq_lens)}", f"--batch {spec.batch}", f"--q-heads {spec.q_heads}",
        f"--kv-heads {spec.kv_heads}", f"--dk {spec.dk}", f"--dv {spec.dv}", f"--dtype {spec.dtype}",
        f"--nsa-config {spec.nsa}", f"--impl {','.join(spec.impls)}", f"--mode {','.join(spec.modes)}",
        "--stages" if spec.stages else "--no-stages", "--cuda-graph" if spec.cuda_graphs else "--no-cuda-graph",
        f"--decode-batch {spec.decode_batch}",
        f"--warmup {spec.warmup}", f"--repeats {spec.repeats}", f"--check-rows {spec.check_rows}",
        f"--check-prefix {spec.check_prefix}", f"--ref-max-len {spec.ref_max_len}", f"--out {out}",
        f"--reports {reports}",
    ]
    if tag:
        parts.append(f"--tag {tag}")
    return " ".join(parts)


def spec_from_options(*, interpret: bool, out: str, reports: str, tag: str | None, seq: str | None,
                      nsa_config: str | None, impl: str | None, mode: str | None, stages: bool,
                      cuda_graphs: bool = True,
                      cmp_block=None, cmp_stride=None, slc_block=None, slc_count=None, window=None,
                      **sizes) -> tuple[KernelBenchSpec, str]:
    """The spec of the CLI's options (None: the H100 default, or the --interpret preset) and its
    reproducing command. Bad input raises nsa_bench.errors.UsageError."""
    from dataclasses import replace

    from nsa_bench.errors import UsageError
    from nsa_bench.flops import parse_size

    base = INTERPRET_SPEC if interpret else H100_SPEC
    try:
        changes = {k: v for k, v in sizes.items() if v is not None}
        if seq is not None:
            changes["seq_lens"] = tuple(parse_size(x) for x in _csv_list(seq, "sequence length"))
        if impl is not None:
            changes["impls"] = _csv_list(impl, "implementation")
        if mode is not None:
            changes["modes"] = _csv_list(mode, "mode")
        config = NSAConfig.parse(nsa_config) if nsa_config is not None else base.nsa
        overrides = {k: v for k, v in dict(cmp_block=cmp_block, cmp_stride=cmp_stride, slc_block=slc_block,
                                           slc_count=slc_count, window=window).items() if v is not None}
        changes["nsa"] = replace(config, **overrides) if overrides else config
        spec = replace(base, stages=stages, cuda_graphs=cuda_graphs, **changes)
        spec.validate()
    except ValueError as error:
        raise UsageError(str(error)) from None
    if tag is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", tag):
        raise UsageError(f"--tag {tag!r}: use letters, digits, '.', '_' or '-'")
    return spec, spec_command(spec, out, reports, tag)


def run_kernel_bench(spec: KernelBenchSpec, out_dir: str | Path, reports_dir: str | Path, tag: str | None = None,
                     *, command: str = "", console=None, force: bool = False) -> tuple[Path, Path]:
    """The whole command: sweep with a progress bar, CSV, plots, markdown and a terminal table.

    Returns (csv path, markdown path). An existing CSV is replaced only with `force` (see free_tag).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from nsa_bench.results import ResultWriter
    from nsa_bench.suites.kernel_plots import write_report

    spec.validate()
    console = console or Console()
    chosen = free_tag(out_dir, reports_dir, tag, spec, force)
    if chosen != (tag or default_tag(spec)):
        console.print(f"kernels_{default_tag(spec)} exists in {out_dir} or {reports_dir}: this run's tag is {chosen} "
                      "(--force replaces it)", highlight=False)
    tag = chosen
    csv_path = Path(out_dir) / f"kernels_{tag}.csv"
    if csv_path.exists():
        console.print(f"replacing {csv_path} (--force)", highlight=False)
        csv_path.unlink()
    copy_gbps = copy_bandwidth_gbps(spec)
    writer = ResultWriter(csv_path, extra={"copy_gbps": copy_gbps, "warmup": spec.warmup, "command": command})
    if spec.interpret:
        console.print("[bold yellow]--interpret: Triton interpreter on the CPU at tiny sizes; "
                      "timings are a smoke test, not performance[/]")
        if slow_interpret(spec):
            console.print(f"[bold yellow]warning:[/] {slow_interpret(spec)}", highlight=False, soft_wrap=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("kernels", total=planned_rows(spec))

        def on_row(row: dict) -> None:
            line = f"{row['mode']} T={row['seq_len']} {row['impl']}: {row['status'][:30]}"
            progress.update(task, advance=1, description=line)
            if not console.is_terminal:  # a log file gets one line per row instead of a live bar
                ms = "" if math.isnan(row["ms"]) else f" {row['ms']:.4g} ms"
                console.print(line + ms, highlight=False)

        rows = run_sweep(spec, writer, on_row)
        progress.update(task, total=len(rows), completed=len(rows), description="kernels: done")
    wide = Console(file=console.file, width=max(console.width, 110))  # never elide numbers
    wide.print(_summary_table(rows))
    method = {"warmup": spec.warmup, "repeats": spec.repeats, "check_rows": spec.check_rows,
              "check_prefix": spec.check_prefix}
    md_path = write_report(csv_path, reports_dir, tag, command=command, copy_gbps=copy_gbps, method=method)
    console.print(f"rows: {csv_path}\nreport: {md_path}")
    return csv_path, md_path
