"""Which NSA implementation a model calls: the Triton kernels on CUDA, the PyTorch reference otherwise.

impl = 'auto'       on CUDA the Triton kernel (`nsa_bench.kernels.nsa_attention`), falling back to the
                    reference, with one warning on stderr, where the kernel rejects the shapes (e.g. a
                    GQA group it does not support); on CPU the reference
       'triton'     the Triton kernel, or an error saying why not (training at long context needs it)
       'reference'  the PyTorch reference everywhere (correct, slow at long context)
"""

from __future__ import annotations

import sys
from typing import Callable

import torch

from nsa_bench.kernels import nsa_attention_ref

IMPLS = ("auto", "triton", "reference")
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        print(f"nsa-bench: warning: {message}", file=sys.stderr)


def _kernel_or_reference(kernel: Callable) -> Callable:
    """kernel, except that inputs it rejects (ValueError) go to the reference, with a warning."""

    def nsa(*args, **kwargs):
        try:
            return kernel(*args, **kwargs)
        except ValueError as error:
            _warn_once(f"Triton NSA cannot run these inputs ({error}); using the slow PyTorch reference")
            return nsa_attention_ref(*args, **kwargs)

    return nsa


def nsa_function(device: torch.device, impl: str = "auto") -> Callable:
    """The nsa_attention(q, k, v, k_cmp, v_cmp, g_cmp, g_slc, g_win, config, ...) to call on device."""
    if impl not in IMPLS:
        raise ValueError(f"NSA implementation must be one of {IMPLS}, got {impl!r}")
    if impl == "reference":
        return nsa_attention_ref
    on_cuda = torch.device(device).type == "cuda"
    if impl == "triton" and not on_cuda:
        raise RuntimeError(f"the Triton NSA kernel needs a CUDA device, got {device}")
    if not on_cuda:
        return nsa_attention_ref
    from nsa_bench.kernels import nsa_attention as kernel  # Triton, imported on first use

    return kernel if impl == "triton" else _kernel_or_reference(kernel)
