"""Our checkpoints as Hugging Face model directories (`nsa-bench export`).

A full-attention model becomes a standard Llama (LlamaForCausalLM: the same RMSNorm, rotate-half
RoPE, SwiGLU, grouped-query attention and tied embeddings), which transformers and lm-eval's `hf`
model load with no code of ours. An NSA model becomes model type `nsa_bench` (hf_model), which
`AutoModelForCausalLM` loads once nsa_bench is imported (hf_auto), or, with nsa-bench installed,
with trust_remote_code=True (the directory's modeling_nsa_bench.py imports it).

The tokenizer goes with it: a checkpoint's Hugging Face tokenizer (the directory its config names,
`tokenizer/` beside the weights as train saves it) is re-saved without BOS, as our models are trained; the built-in
byte tokenizer becomes an equivalent Hugging Face tokenizer (byte_tokenizer).
"""

from __future__ import annotations

import json
from pathlib import Path

from .checkpoint import is_checkpoint, load_checkpoint
from .config import ModelConfig
from .model import Transformer
from .tokenizer import ByteTokenizer

REMOTE_CODE = "modeling_nsa_bench"
REMOTE_CODE_TEXT = '''"""nsa-bench's model for transformers' trust_remote_code (needs `pip install nsa-bench`)."""

from nsa_bench.models.hf_model import NSABenchConfig, NSABenchForCausalLM  # noqa: F401
'''

# Our per-block parameter names -> Llama's (under model.layers.N.)
LLAMA_BLOCK_NAMES = {
    "attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm",
    "attn.wq": "self_attn.q_proj", "attn.wk": "self_attn.k_proj", "attn.wv": "self_attn.v_proj",
    "attn.wo": "self_attn.o_proj", "mlp.w1": "mlp.gate_proj", "mlp.w3": "mlp.up_proj", "mlp.w2": "mlp.down_proj",
}


def _byte_chars() -> list[str]:
    """The character byte-level pre-tokenization stands each byte 0..255 in for (GPT-2's table:
    printable Latin-1 bytes as themselves, the others as code points from 256 up)."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    chars, shifted = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + shifted))
            shifted += 1
    return chars


def byte_tokenizer():
    """A Hugging Face tokenizer equal to ByteTokenizer: UTF-8 bytes as ids 0..255, then <bos>, <eos>,
    <pad> (256, 257, 258); encoding adds no special token; invalid UTF-8 decodes to U+FFFD."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(_byte_chars())}, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    raw.decoder = decoders.ByteLevel()
    byte = ByteTokenizer()
    specials = {byte.bos_id: "<bos>", byte.eos_id: "<eos>", byte.pad_id: "<pad>"}
    raw.add_special_tokens([specials[i] for i in sorted(specials)])
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", model_max_length=10**30
    )


def checkpoint_tokenizer(checkpoint: Path, cfg: ModelConfig):
    """The Hugging Face tokenizer of a checkpoint (no BOS added, as in training)."""
    if cfg.tokenizer == "byte":
        return byte_tokenizer()
    from transformers import AutoTokenizer

    place = checkpoint / cfg.tokenizer  # a relative directory lies in the checkpoint (save_checkpoint)
    if not place.is_dir():
        raise ValueError(f"{checkpoint}: tokenizer directory {cfg.tokenizer!r} not found")
    tokenizer = AutoTokenizer.from_pretrained(str(place), add_bos_token=False)
    if tokenizer.encode("a") != tokenizer.encode("a", add_special_tokens=False):
        tokenizer.backend_tokenizer.post_processor = None  # transformers 4 ignores add_bos_token here
    return tokenizer


def _special_ids(tokenizer) -> dict:
    return {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}


def llama_model(model: Transformer, special_ids: dict):
    """A LlamaForCausalLM with model's weights (full attention only)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    c = model.cfg
    if c.attention != "full":
        raise ValueError(f"only full-attention models are Llamas; this one has {c.attention} attention")
    config = LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.dim, intermediate_size=c.ffn_dim, num_hidden_layers=c.n_layers,
        num_attention_heads=c.n_heads, num_key_value_heads=c.n_kv_heads, head_dim=c.head_dim,
        max_position_embeddings=c.max_seq_len, rms_norm_eps=c.norm_eps, rope_theta=c.rope_theta,
        hidden_act="silu", tie_word_embeddings=True, **special_ids,
    )
    weights = {"model.embed_tokens.weight": model.embed.weight, "model.norm.weight": model.norm.weight}
    for name, tensor in model.blocks.state_dict().items():
        index, rest = name.split(".", 1)
        stem, kind = rest.rsplit(".", 1)
        weights[f"model.layers.{index}.{LLAMA_BLOCK_NAMES[stem]}.{kind}"] = tensor
    llama = LlamaForCausalLM(config)
    missing, unexpected = llama.load_state_dict(weights, strict=False)
    if set(missing) - {"lm_head.weight"} or unexpected:
        raise ValueError(f"Llama weights do not match: missing {missing}, unexpected {unexpected}")
    llama.tie_weights()
    return llama


def nsa_model(model: Transformer, special_ids: dict):
    """An NSABenchForCausalLM (hf_model) with model's weights (either attention)."""
    from .hf_model import NSABenchConfig, NSABenchForCausalLM

    own = model.cfg.with_(tokenizer="byte" if model.cfg.tokenizer == "byte" else ".")  # "." : this directory's files
    hf = NSABenchForCausalLM(NSABenchConfig(model=own.to_dict(), **special_ids))
    hf.model.load_state_dict(model.state_dict())
    hf.config.auto_map = {kind: f"{REMOTE_CODE}.{cls.__name__}" for kind, cls in
                          (("AutoConfig", NSABenchConfig), ("AutoModelForCausalLM", NSABenchForCausalLM))}
    return hf


def export_checkpoint(checkpoint: str | Path, out: str | Path) -> Path:
    """Write checkpoint as a Hugging Face model directory `out` (which must be new or empty):
    config.json, model.safetensors, generation_config.json and the tokenizer's files."""
    checkpoint, out = Path(checkpoint), Path(out)
    if not is_checkpoint(checkpoint):
        inside = sorted(p.name for p in checkpoint.iterdir() if is_checkpoint(p)) if checkpoint.is_dir() else []
        hint = f"; it holds checkpoints {', '.join(inside)}: export one of them" if inside else ""
        raise ValueError(f"{checkpoint} is not an nsa-bench checkpoint{hint}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not an empty directory; give a new one")
    cfg = ModelConfig.from_dict(json.loads((checkpoint / "config.json").read_text()))
    tokenizer = checkpoint_tokenizer(checkpoint, cfg)
    model = load_checkpoint(checkpoint, "cpu", nsa_impl="reference")
    build = llama_model if cfg.attention == "full" else nsa_model
    hf = build(model, _special_ids(tokenizer))
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(out)
    if cfg.attention == "nsa":
        (out / f"{REMOTE_CODE}.py").write_text(REMOTE_CODE_TEXT)
    tokenizer.save_pretrained(out)
    return out
