"""NSA attention: the config, the PyTorch reference, compression, and the Triton kernels."""

from .compression import CompressionMLP, mean_pool_compress
from .cache import NSACache
from .config import NSAConfig
from .decode import nsa_decode
from .parallel import nsa_attention, nsa_forward_stages
from .reference import full_attention_ref, nsa_attention_ref, nsa_select_blocks

__all__ = [
    "CompressionMLP",
    "NSACache",
    "NSAConfig",
    "full_attention_ref",
    "mean_pool_compress",
    "nsa_attention",
    "nsa_attention_ref",
    "nsa_decode",
    "nsa_forward_stages",
    "nsa_select_blocks",
]
