"""ModelConfig: the sizes of our Llama-style decoder, and the named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from nsa_bench.kernels import NSAConfig

ATTENTIONS = ("full", "nsa")


@dataclass(frozen=True)
class ModelConfig:
    """A decoder: RMSNorm, RoPE, SwiGLU MLP, grouped-query attention that is `full` or `nsa`.

    nsa            NSA block sizes as 'l/d/l_sel/n/w' (NSAConfig.parse)
    nsa_shared_kv  one k/v projection for the three NSA branches instead of three (the paper's default
                   is independent k/v per branch)
    tokenizer      'byte' (built in, no files), a local Hugging Face tokenizer directory (a relative one is
                   found in the checkpoint's directory), or 'bpe' in a preset: train one (nsa_bench.train)
    """

    vocab_size: int = 320
    dim: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn_dim: int = 704
    max_seq_len: int = 1024
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    attention: str = "nsa"
    nsa: str = "32/16/64/16/512"
    nsa_shared_kv: bool = False
    tokenizer: str = "byte"

    def __post_init__(self) -> None:
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        if self.dim % self.n_heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of n_heads ({self.n_heads})")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")
        if (self.dim // self.n_heads) % 2:
            raise ValueError(f"head dim ({self.dim // self.n_heads}) must be even for RoPE")
        NSAConfig.parse(self.nsa)

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def nsa_config(self) -> NSAConfig:
        return NSAConfig.parse(self.nsa)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        """Build from a dict, ignoring keys that are not config fields (e.g. a format marker)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def with_(self, **changes) -> "ModelConfig":
        return replace(self, **changes)


# tiny: trains on a CPU in seconds (tests). gpu: 23M parameters (full) / 30M (NSA: three k/v projections),
# about 0.12 / 0.24 s per step of 8 x 8192 tokens on an H100.
PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=176, max_seq_len=256, nsa="8/4/16/4/32"
    ),
    "small": ModelConfig(
        dim=256, n_layers=4, n_heads=4, n_kv_heads=1, ffn_dim=704, max_seq_len=2048, nsa="16/8/32/8/128"
    ),
    "gpu": ModelConfig(
        dim=512, n_layers=8, n_heads=8, n_kv_heads=2, ffn_dim=1408, max_seq_len=8192, nsa="32/16/64/16/512"
    ),
    # needle: the retrieval recipe's model (README "Training"), with a subword tokenizer trained with it.
    # 4 layers with 64-wide heads: in the H200 sweep (results/recipe_sweep2_h200.*) this shape learned
    # retrieval within 2,000 steps where 2-layer models, and the paper's group of 16 at this width (one
    # 32-wide KV head a layer), did not; MHA here (G=1), which the Triton NSA kernels support.
    # needle-tiny: the needle preset's depth and head width at CPU size (the recipe's CPU test)
    "needle-tiny": ModelConfig(
        dim=128, n_layers=4, n_heads=2, n_kv_heads=2, ffn_dim=336, max_seq_len=256, nsa="8/4/16/4/32", tokenizer="bpe"
    ),
    "needle": ModelConfig(
        dim=256, n_layers=4, n_heads=4, n_kv_heads=4, ffn_dim=704, max_seq_len=4096, nsa="32/16/64/16/512",
        tokenizer="bpe",
    ),
}


def preset(name: str, **changes) -> ModelConfig:
    """A preset config with optional field changes; ValueError for an unknown name."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name].with_(**changes)
