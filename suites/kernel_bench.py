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
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch

from nsa_bench.flops import full_attention_bytes, full_attention_flops, nsa_bytes, nsa_ceiling, nsa_flops
from nsa_bench.kernels import nsa_attention_ref
from nsa_bench.results import Unsupported, status_of
from nsa_bench.suites.kernel_baselines import full_attention_case
from nsa_bench.suites.kernel_cases import (
    EXPECTED_STAGES,
    Case,
    check_nsa,
    graphed,
    kernels_attr,
    nsa_case,
    nsa_decode_case,
    nsa_stage_cases,
    stage_flops,
)
from nsa_bench.suites.kernel_check import tolerance
from nsa_bench.suites.kernel_peers import fla_case, nsa_triton_case
from nsa_bench.suites.kernel_spec import IMPLS, INTERPRET_SPEC, MODES, KernelBenchSpec
from nsa_bench.timing import FLUSH_TIMING, PeakMemory, Timing, time_calls

COLUMNS = (
    "kind", "impl", "impl_detail", "mode", "seq_len", "batch", "q_heads", "kv_heads", "dk", "dv",
    "dtype", "nsa_config", "status", "ms", "ms_p20", "ms_p80", "repeats", "tflops", "gbps", "flops",
    "bytes", "speedup_fa2", "speedup_cudnn", "ceiling", "efficiency", "peak_mem_gb", "max_rel_err",
    "check_rows", "check_tie_rows", "timing",
)
INTERPRETER_TIMING = "cpu, Triton interpreter: smoke run, not performance"
CUDA_TIMING = {mode: f"cuda events, {name}" for mode, name in FLUSH_TIMING.items()}


def build_case(impl: str, spec: KernelBenchSpec, seq_len: int, mode: str) -> Case:
    """The prepared measurement of one implementation (IMPLS) in one mode at one length."""
    if impl in ("fa2", "cudnn"):
        if mode != "decode" and seq_len > spec.baseline_max_len:
            raise Unsupported(f"full attention's {mode} is not timed beyond --baseline-max-len {spec.baseline_max_len} "
                              f"(quadratic: {(seq_len / 65536) ** 2:.0f}x its time at 64k)")
        return full_attention_case(impl, spec, seq_len, mode)
    if impl == "nsa":
        if mode == "decode":
            return nsa_decode_case(spec, seq_len)
        return nsa_case(spec, seq_len, mode, kernels_attr("nsa_attention"),
                         "bundled Triton NSA (nsa_attention) with mean-pool compression")
    if impl == "fla":
        return fla_case(spec, seq_len, mode)
    if impl == "nsa_triton":
        return nsa_triton_case(spec, seq_len, mode)
    if impl == "ref":
        if mode == "decode":
            raise Unsupported("the reference has no decode step")
        if seq_len > spec.ref_max_len:
            raise Unsupported(f"the reference runs only up to --ref-max-len {spec.ref_max_len} tokens")
        return nsa_case(spec, seq_len, mode, nsa_attention_ref,
                         "PyTorch reference (nsa_attention_ref, float32 math) with mean-pool compression")
    raise ValueError(f"unknown implementation {impl!r}")


# ---- measuring -----------------------------------------------------------------------------------

class DeviceLost(RuntimeError):
    """The GPU's context is unusable after a case failed (an illegal memory access is sticky):
    nothing more can run in this process. `row` is the failed case's row, when known."""

    def __init__(self, status: str, row: dict | None = None):
        super().__init__(status)
        self.status, self.row = status, row


def release_memory() -> None:
    """Drop what a failed or finished measurement left behind; DeviceLost when the GPU cannot."""
    gc.collect()
    if torch.cuda.is_available():
        try:
            torch.cuda.empty_cache()
        except Exception as error:  # noqa: BLE001 - a sticky CUDA error: every later call fails the same way
            raise DeviceLost(status_of(error)) from None


def guarded(work: Callable[[], object]) -> tuple[str, object]:
    """Run work(); ('ok', result) or (status, None) for OOM, unsupported and errors."""
    try:
        return "ok", work()
    except Exception as error:  # noqa: BLE001 - every failure becomes a row (OOM included)
        status = status_of(error)
    try:
        release_memory()
    except DeviceLost:  # the failure took the GPU with it: its row keeps the failure's status
        raise DeviceLost(status) from None
    return status, None


def measure(case_builder: Callable[[], Case], spec: KernelBenchSpec) -> tuple[str, str, Timing | None, float | None]:
    """Build and time one case: (status, detail, timing, peak GB)."""
    detail = ""

    def work():
        nonlocal detail
        with PeakMemory(spec.device) as peak:
            case = case_builder()
            detail = case.detail
            timing = time_calls(case.call, warmup=spec.warmup, repeats=spec.repeats, device=spec.device,
                                flush=spec.l2_flush)
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
               timing=INTERPRETER_TIMING if spec.interpret else CUDA_TIMING[spec.l2_flush])
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


@contextmanager
def _case_row_on_loss(spec: KernelBenchSpec, impl: str, mode: str, seq_len: int):
    """A DeviceLost raised inside leaves with the row of the case it hit (impl, mode, length)."""
    try:
        yield
    except DeviceLost as lost:
        raise DeviceLost(lost.status, {**empty_row(spec, impl, mode, seq_len), "status": lost.status}) from None


def _timed_row(spec, impl, mode, seq_len, case_builder) -> dict:
    row = empty_row(spec, impl, mode, seq_len)
    with _case_row_on_loss(spec, impl, mode, seq_len):
        status, detail, timing, peak = measure(case_builder, spec)
    row.update(status=status, impl_detail=detail, peak_mem_gb=math.nan if peak is None else peak)
    if timing is not None:
        row.update(ms=timing.ms, ms_p20=timing.ms_p20, ms_p80=timing.ms_p80, repeats=timing.repeats)
    return row


def _counts(spec: KernelBenchSpec, impl: str, mode: str, seq_len: int) -> tuple[float, float, float]:
    p = spec.problem(seq_len, mode)
    if impl in ("fa2", "cudnn"):
        return full_attention_flops(p, mode), full_attention_bytes(p, mode), 1.0
    if impl in ("fla", "nsa_triton"):  # no window branch (fla: its own compression): NSA's counts do not apply
        return math.nan, math.nan, math.nan
    return nsa_flops(p, spec.nsa, mode), nsa_bytes(p, spec.nsa, mode), nsa_ceiling(p, spec.nsa, mode)


def sweep_rows(spec: KernelBenchSpec, seq_len: int, mode: str):
    """Yield the rows of one (length, mode), in order, each as soon as it is measured."""
    baseline_ms: dict[str, float] = {}
    impls = [i for i in IMPLS if i in spec.impls]
    for impl in impls:
        with _case_row_on_loss(spec, impl, mode, seq_len):
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

    def record(row: dict) -> None:
        writer.write(row)
        rows.append(row)
        on_row(row)

    try:
        for seq_len in spec.seq_lens:
            for mode in [m for m in MODES if m in spec.modes]:
                for row in sweep_rows(spec, seq_len, mode):
                    record(row)
    except DeviceLost as lost:  # the failed case's row is written; nothing after it can run
        if lost.row is not None:
            record(lost.row)
        raise
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


def run_kernel_bench(spec: KernelBenchSpec, out_dir: str | Path, reports_dir: str | Path, tag: str | None = None,
                     *, command: str = "", console=None, force: bool = False) -> tuple[Path, Path]:
    """The whole command: sweep with a progress bar, CSV, plots, markdown and a terminal table.

    Returns (csv path, markdown path). An existing CSV is replaced only with `force` (see free_tag).
    """
    from nsa_bench.suites.kernel_plots import write_report
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from nsa_bench.results import ResultWriter

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

        try:
            rows = run_sweep(spec, writer, on_row)
        except DeviceLost as lost:
            where = f"{lost.row['impl']} {lost.row['mode']} T={lost.row['seq_len']}" if lost.row else "a case"
            raise DeviceLost(f"the GPU failed in {where} ({lost.status}) and can run nothing more in this process; "
                             f"the sweep stopped, its rows so far are in {csv_path}", lost.row) from None
        progress.update(task, total=len(rows), completed=len(rows), description="kernels: done")
    wide = Console(file=console.file, width=max(console.width, 110))  # never elide numbers
    wide.print(_summary_table(rows))
    method = {"warmup": spec.warmup, "repeats": spec.repeats, "check_rows": spec.check_rows,
              "check_prefix": spec.check_prefix}
    md_path = write_report(csv_path, reports_dir, tag, command=command, copy_gbps=copy_gbps, method=method)
    console.print(f"rows: {csv_path}\nreport: {md_path}")
    return csv_path, md_path
