"""Timing of GPU work: CUDA events around each call, median and 20/80th percentiles, peak memory.

Method (triton.testing.do_bench's, with counts instead of milliseconds and a clean L2 flush):
- `warmup` untimed calls first (compilation, autotuning, allocator warm-up).
- Then `repeats` timed calls; before each, a 256 MiB buffer is read (flush="read", the default)
  so the L2 cache holds none of the inputs, and a CUDA event pair brackets the call alone. Times
  are read after one final synchronisation, so the host never stalls the queue between calls.
  triton.testing.do_bench zeroes the buffer instead (flush="write"): that leaves the L2 full of
  dirty lines, which the timed call then writes back as it misses. On the H200 this added 5.8-6.4
  us to every graphed FA2 decode step and 2.8-5.3 us to every graphed NSA step
  (results/l2_flush_ab_h200.csv), up to 11% of steps of 30-50 us. "none" skips the flush.
- On a CPU (the Triton interpreter smoke run) `time.perf_counter` brackets each call instead.

Backward is timed alone: the forward runs once, outside the timed region, and keeps its graph;
each timed call is `torch.autograd.grad(out, inputs, grad_out, retain_graph=True)`, which runs
the backward kernels only and returns fresh gradients (nothing accumulates into `.grad`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

L2_FLUSH_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Timing:
    """Milliseconds per call: median and 20th/80th percentiles over `repeats` timed calls."""

    ms: float
    ms_p20: float
    ms_p80: float
    repeats: int


def summarize(times_ms: Sequence[float]) -> Timing:
    """Median and 20/80th percentiles of a list of per-call times."""
    if not times_ms:
        raise ValueError("no timings to summarize")
    arr = np.asarray(times_ms, dtype=np.float64)
    p20, p50, p80 = np.percentile(arr, [20, 50, 80])
    return Timing(ms=float(p50), ms_p20=float(p20), ms_p80=float(p80), repeats=len(arr))


# flush mode -> how a result row names it (`timing` column)
FLUSH_TIMING = {"read": "L2 flushed by a read (clean lines)", "write": "L2 flushed", "none": "no L2 flush"}
FLUSH_MODES = tuple(FLUSH_TIMING)


class _L2Flusher:
    """Evicts the L2 cache by writing (zeroing) or reading a buffer larger than it (lazily
    allocated, reused). A write leaves the L2 full of dirty lines, which the next kernel writes
    back to memory as it misses; a read leaves clean lines."""

    def __init__(self) -> None:
        self._buffers: dict[torch.device, torch.Tensor] = {}

    def __call__(self, device: torch.device, mode: str = "read") -> None:
        if mode == "none":
            return
        buf = self._buffers.get(device)
        if buf is None:
            buf = self._buffers[device] = torch.zeros(L2_FLUSH_BYTES // 4, dtype=torch.int32, device=device)
        if mode == "write":
            buf.zero_()
        else:
            buf.max()


_flush_l2 = _L2Flusher()


def time_calls(fn: Callable[[], object], *, warmup: int, repeats: int, device: torch.device | str,
               flush: str = "read") -> Timing:
    """Time fn() after `warmup` untimed calls (see the module docstring for the method)."""
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    if flush not in FLUSH_MODES:
        raise ValueError(f"flush must be one of {FLUSH_MODES}, got {flush!r}")
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    if device.type != "cuda":
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
        return summarize(times)
    torch.cuda.synchronize(device)
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    for start, end in events:
        _flush_l2(device, flush)
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize(device)
    return summarize([start.elapsed_time(end) for start, end in events])


def backward_call(out: torch.Tensor, inputs: Sequence[torch.Tensor], grad_out: torch.Tensor | None = None):
    """A zero-argument call that runs the backward of an already computed `out` w.r.t. `inputs`.

    The graph is kept (retain_graph=True) so the call can repeat; the forward is not rerun.
    """
    grad = torch.randn_like(out) if grad_out is None else grad_out
    inputs = tuple(inputs)

    def run():
        return torch.autograd.grad(out, inputs, grad, retain_graph=True)

    return run


class PeakMemory:
    """Context manager: peak GPU memory allocated inside it, above what was allocated on entry (GB).

    `gb` is None off CUDA. The L2-flush buffer is allocated before entry so it is not counted.
    """

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.gb: float | None = None
        self._base = 0

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            _flush_l2(self.device)
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.device.type == "cuda" and exc_type is None:
            torch.cuda.synchronize(self.device)
            self.gb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 1e9
        return None
