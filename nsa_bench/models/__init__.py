"""Models with either attention: our small Llama-style decoder, checkpoints, tokenizers, and load_lm,
which puts ours and Hugging Face models behind the nsa_bench.lm.CausalLM interface.

`nsa_bench.models.hf_nsa` (imported on demand: it needs transformers) registers NSA as a
transformers attention implementation.
"""

from .adapter import HFLM, NativeLM, check_lm, load_lm
from .checkpoint import is_checkpoint, load_checkpoint, save_checkpoint
from .config import PRESETS, ModelConfig, preset
from .model import Transformer
from .tokenizer import ByteTokenizer, HFTokenizer, load_tokenizer

__all__ = [
    "ByteTokenizer",
    "HFLM",
    "HFTokenizer",
    "ModelConfig",
    "NativeLM",
    "PRESETS",
    "Transformer",
    "check_lm",
    "is_checkpoint",
    "load_checkpoint",
    "load_lm",
    "load_tokenizer",
    "preset",
    "save_checkpoint",
]
