"""NSA attention: the config, the PyTorch reference, compression, and the Triton kernels.

The Triton forward/backward (parallel.py: nsa_attention, nsa_attention_with_indices and the stage
functions nsa_forward_stages, nsa_backward_stages) is imported on first use, as decode.py already
imports its kernels, so the config, the reference, compression and the cache import without
Triton, and Triton is imported only after a command has settled TRITON_INTERPRET.
"""

from .cache import NSACache
from .compression import CompressionMLP, mean_pool_compress
from .config import NSAConfig
from .decode import nsa_decode
from .reference import full_attention_ref, nsa_attention_ref, nsa_select_blocks

_TRITON = ("nsa_attention", "nsa_attention_with_indices", "nsa_backward_stages", "nsa_forward_stages")  # .parallel


def __getattr__(name: str):
    """The Triton entry points, imported when first asked for (PEP 562)."""
    if name not in _TRITON:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(".parallel", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "CompressionMLP",
    "NSACache",
    "NSAConfig",
    "full_attention_ref",
    "mean_pool_compress",
    "nsa_attention",
    "nsa_attention_ref",
    "nsa_attention_with_indices",
    "nsa_backward_stages",
    "nsa_decode",
    "nsa_forward_stages",
    "nsa_select_blocks",
]
