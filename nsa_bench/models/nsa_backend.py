"""Which NSA implementation a model calls: the Triton kernels on CUDA, the PyTorch reference otherwise.

impl = 'auto'       Triton on CUDA when `nsa_bench.kernels.nsa_attention` exists (else the reference,
                    with one warning on stderr), the reference on CPU
       'triton'     Triton, or an error saying why not (training at long context needs it)
       'reference'  the PyTorch reference everywhere (correct, slow at long context)
"""

from __future__ import annotations

import sys
from typing import Callable

import torch

from nsa_bench.kernels import nsa_attention_ref

IMPLS = ("auto", "triton", "reference")
_warned = False


def triton_nsa() -> Callable | None:
    """nsa_bench.kernels.nsa_attention when the kernels package provides it, else None."""
    try:
        from nsa_bench.kernels import nsa_attention
    except ImportError:
        return None
    return nsa_attention


def nsa_function(device: torch.device, impl: str = "auto") -> Callable:
    """The nsa_attention(q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, config, ...) to call on device."""
    global _warned
    if impl not in IMPLS:
        raise ValueError(f"NSA implementation must be one of {IMPLS}, got {impl!r}")
    if impl == "reference":
        return nsa_attention_ref
    on_cuda = torch.device(device).type == "cuda"
    kernel = triton_nsa() if on_cuda or impl == "triton" else None
    if impl == "triton" and kernel is None:
        raise RuntimeError(
            "the Triton NSA kernel (nsa_bench.kernels.nsa_attention) is not available in this checkout; "
            "use the PyTorch reference explicitly (nsa_impl='reference', --nsa-impl reference) if slow is fine"
        )
    if impl == "triton" and not on_cuda:
        raise RuntimeError(f"the Triton NSA kernel needs a CUDA device, got {device}")
    if kernel is None and on_cuda and not _warned:
        print(
            "nsa-bench: warning: Triton NSA kernel not available; using the slow PyTorch reference on CUDA",
            file=sys.stderr,
        )
        _warned = True
    return kernel or nsa_attention_ref
