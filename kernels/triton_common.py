"""Helpers shared by the Triton NSA modules: output allocation and small size rules."""

from __future__ import annotations

import os

import torch

# Tests set this to True: every kernel output then starts as NaN (ints as -7), so an element a
# kernel forgot to write shows up in the comparison instead of passing as leftover memory.
POISON_OUTPUTS = False


def new_output(shape, dtype: torch.dtype, device) -> torch.Tensor:
    """An uninitialised tensor for a kernel to fill (NaN / -7 filled when POISON_OUTPUTS)."""
    out = torch.empty(shape, dtype=dtype, device=device)
    if POISON_OUTPUTS:
        out.fill_(float("nan") if dtype.is_floating_point else -7)
    return out


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (and >= 1)."""
    return 1 << max(0, (int(n) - 1).bit_length())


def dot_precision(dtype: torch.dtype) -> str:
    """tl.dot input precision: exact fp32 products for fp32 inputs, the default otherwise."""
    return "ieee" if dtype == torch.float32 else "tf32"


def cache_strides(name: str, t: torch.Tensor) -> dict:
    """The kernels' stride arguments s_<name>_b, s_<name>_h, s_<name>_t of a head-major cache tensor."""
    return {f"s_{name}_b": t.stride(0), f"s_{name}_h": t.stride(1), f"s_{name}_t": t.stride(2)}


def kv_strides(k: torch.Tensor, v: torch.Tensor) -> dict:
    """The attention kernels' token and head strides s_k_t, s_k_h, s_v_t, s_v_h of keys/values [B, NK, H, d]
    (constexprs: one compilation per layout, the same for every length)."""
    return {"s_k_t": k.stride(1), "s_k_h": k.stride(2), "s_v_t": v.stride(1), "s_v_h": v.stride(2)}


def token_major(t: torch.Tensor) -> bool:
    """Whether the kernels read t [B, T, ...] in place: unit stride over its last dim, a batch
    stride of T token strides, and for keys/values [B, T, H, d] a positive head stride dividing
    the token stride (a slice of a wider token-major tensor, like the model's per-branch k/v)."""
    if t.stride(-1) != 1 or (t.shape[0] > 1 and t.stride(0) != t.shape[1] * t.stride(1)):
        return False
    return t.dim() != 4 or (t.stride(2) > 0 and t.stride(1) % t.stride(2) == 0)


def _interpreter_numpy_compat() -> None:
    """Let triton 3.6's CPU interpreter run loops with run-time bounds under numpy >= 2.4.

    The interpreter holds scalars as 1-element arrays and turns a loop bound into a Python int
    with int(array), which numpy 2.4 rejects ("only 0-dimensional arrays can be converted to
    Python scalars"); this takes the element instead. Only the interpreter is touched.
    """
    from triton.runtime import interpreter

    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None or getattr(original, "nsa_compat", False):
        return

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched.nsa_compat = True
    interpreter._patch_lang_tensor = patched


def _interpreter_compare_dtype() -> None:
    """Label the CPU interpreter's comparison results int1, as the compiler types them.

    The interpreter computes `x <= y` with numpy (bool data) but tags the handle with the
    operands' dtype, so splatting a scalar comparison (`block_mask & (j >= 0)`) makes an int32
    array. Triton 3.6 took that as a load mask; 3.9 rejects it ("mask has unsupported dtype").
    Only the interpreter is touched: compiled kernels never see this builder.
    """
    import numpy as np
    import triton.language as tl
    from triton.runtime.interpreter import InterpreterBuilder, TensorHandle

    original = InterpreterBuilder.binary_op
    if getattr(original, "nsa_compat", False):
        return

    def patched(self, lhs, rhs, op):
        out = original(self, lhs, rhs, op)
        return TensorHandle(out.data, tl.int1) if out.data.dtype == np.bool_ else out

    patched.nsa_compat = True
    InterpreterBuilder.binary_op = patched


if os.environ.get("TRITON_INTERPRET") == "1":
    _interpreter_numpy_compat()
    _interpreter_compare_dtype()
