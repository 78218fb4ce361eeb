"""NSA attention: the config, the PyTorch reference, compression, and the Triton kernels."""

from .compression import CompressionMLP, mean_pool_compress
from .config import NSAConfig
from .parallel import nsa_attention, nsa_forward_stages
from .reference import full_attention_ref, nsa_attention_ref, nsa_select_blocks

__all__ = [
    "CompressionMLP",
    "NSAConfig",
    "full_attention_ref",
    "mean_pool_compress",
    "nsa_attention",
    "nsa_attention_ref",
    "nsa_forward_stages",
    "nsa_select_blocks",
]
