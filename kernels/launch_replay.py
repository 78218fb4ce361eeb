"""Repeated Triton launches without Triton's per-call dispatch.

`kernel[grid](**args)` binds the arguments, specialises every integer and pointer, looks the
compiled kernel up and only then launches: on the H200 machine's host about 40-80 us per launch
with the decode kernels' 40-odd arguments (results/decode_host_h200.csv), several times the GPU
work of a decode step. A decode step launches the same kernels with the same arguments step after
step, except for a few tensors (the new query, gates, output). `record` launches once through
Triton and keeps the compiled kernel with its arguments in signature order; `Replay` launches it
again with those tensors swapped in, straight through the compiled kernel's launcher.

A replay is only valid while Triton would pick the same compiled kernel: callers keep one per
`specialization_key` of the swapped tensors (shape, strides, dtype, device, 16-byte alignment)
and record anew when the key changes. Under the CPU interpreter nothing is recorded.
"""

from __future__ import annotations

import functools
import inspect

import torch


def specialization_key(*tensors: torch.Tensor) -> tuple | None:
    """What Triton specialises a launch on, for each tensor argument that changes between calls;
    None when one is not a tensor (no recording matches it, so the caller's checks run)."""
    if not all(isinstance(t, torch.Tensor) for t in tensors):
        return None
    return tuple((t.shape, t.stride(), t.dtype, t.device, t.data_ptr() % 16 == 0) for t in tensors)


class Replay:
    """One recorded launch: the compiled kernel's launcher, its grid and its arguments, with the
    positions of the arguments replaced at each call."""

    def __init__(self, runner, values: list, slots: list[int]):
        self._runner, self._values, self._slots = runner, values, slots

    def __call__(self, stream: int, *tensors: torch.Tensor) -> None:
        values = self._values.copy()
        for slot, t in zip(self._slots, tensors):
            values[slot] = t
        self._runner(*values, stream=stream)


def compiled_runner(fn, grid: tuple, args: dict, options: dict):
    """Launch fn[grid](**args, **options) through Triton and return the compiled kernel's launcher
    for that grid, called as runner(*values in signature order, stream=...); None under the
    interpreter, which compiles nothing."""
    compiled = fn[grid](**args, **options)
    if hasattr(compiled, "result"):  # Triton's asynchronous compilation mode
        compiled = compiled.result()
    if not hasattr(compiled, "packed_metadata"):
        return None
    return compiled[(*grid, 1, 1)[:3]]  # the launcher reads three grid sizes


def record(fn, grid: tuple, args: dict, swapped: tuple[str, ...], **options) -> Replay | None:
    """fn[grid](**args, **options), kept as a Replay whose call takes the `swapped` arguments
    in that order; None where there is nothing to replay (the CPU interpreter)."""
    runner = compiled_runner(fn, grid, args, options)
    if runner is None:
        return None
    params = inspect.signature(fn.fn).parameters  # fn.fn: the Python function (jit or interpreter)
    values = [args[name] if name in args else p.default for name, p in params.items()]
    names = list(params)
    return Replay(runner, values, [names.index(name) for name in swapped])


def current_stream(device: torch.device) -> int:
    """The raw handle of the current CUDA stream on device, as Triton's own launches take it
    (0 off CUDA, where only tests replay)."""
    if device.type != "cuda":
        return 0
    return _stream_getter()(device.index)


@functools.cache
def _stream_getter():
    """Triton's current-stream function, looked up once (Triton is imported only when a step runs)."""
    from triton.runtime import driver  # noqa: PLC0415

    return driver.active.get_current_stream
