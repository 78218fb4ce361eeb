"""A small Llama-style decoder (RMSNorm, RoPE, SwiGLU, GQA) whose attention is full or NSA."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from nsa_bench.kernels import CompressionMLP

from .config import ModelConfig
from .nsa_backend import nsa_function


def bf16_autocast(device: torch.device):
    """bf16 autocast on CUDA (training and inference alike), a no-op elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight.to(x.dtype)


def rope(x: torch.Tensor, start: int, theta: float) -> torch.Tensor:
    """Rotary position embedding of x [B, T, H, D] for positions start .. start+T-1 (rotate-half form)."""
    t, d = x.shape[1], x.shape[-1]
    inv_freq = 1.0 / theta ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angles = torch.outer(torch.arange(start, start + t, device=x.device, dtype=torch.float32), inv_freq)
    cos = torch.cat([angles.cos(), angles.cos()], -1)[None, :, None, :]
    sin = torch.cat([angles.sin(), angles.sin()], -1)[None, :, None, :]
    xf = x.float()
    x1, x2 = xf[..., : d // 2], xf[..., d // 2 :]
    return (xf * cos + torch.cat([-x2, x1], -1) * sin).to(x.dtype)


class LayerCache:
    """Keys and values seen so far by one attention layer, token-major [B, T, ...]."""

    def __init__(self):
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[1]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k = k if self.k is None else torch.cat([self.k, k], dim=1)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=1)
        return self.k, self.v


class NSADecodeCache:
    """One NSA layer's cache on the Triton decode kernels (nsa_bench.kernels.NSACache, nsa_decode).

    The prompt runs through nsa_attention and fills an NSACache of max_len tokens (the layer's
    CompressionMLPs compress its blocks); each later token is appended and attends with nsa_decode,
    which reads only the compressed keys, the selected blocks and the window.
    """

    def __init__(self, max_len: int):
        self.max_len = max_len
        self.kernel_cache = None
        self.length = 0

    def attend(self, layer: "NSAAttention", q, k, v, gates, nsa_fn) -> torch.Tensor:
        """Output [B, t, HQ, d] for q/k/v/gates of t new tokens (the prompt, then one at a time)."""
        from nsa_bench.kernels import NSACache, nsa_decode

        cmp, slc, win = layer.branch_index
        separate = layer.branches == 3
        branch_kv = dict(k_slc=k[:, :, slc], v_slc=v[:, :, slc], k_win=k[:, :, win], v_win=v[:, :, win]) if separate else {}
        if self.kernel_cache is None:
            y = layer.attend(q, k, v, gates, nsa_fn)
            b, _, _, h, d = k.shape
            self.kernel_cache = NSACache(
                b, self.max_len, h, d, d, layer.nsa, dtype=q.dtype, device=q.device, separate_slc=separate,
                separate_win=separate, compress_k=layer.compress_k, compress_v=layer.compress_v,
            )
            self.kernel_cache.prefill(k[:, :, cmp].contiguous(), v[:, :, cmp].contiguous(), **branch_kv)
        else:
            if q.shape[1] != 1:
                raise ValueError("after the prompt, the NSA decode cache takes one token at a time")
            self.kernel_cache.append(k[:, :, cmp], v[:, :, cmp], **branch_kv)
            y = nsa_decode(q, self.kernel_cache, gates[:, :, 0], gates[:, :, 1], gates[:, :, 2], layer.nsa)
        self.length += q.shape[1]
        return y


class FullAttention(nn.Module):
    """Causal grouped-query softmax attention through torch SDPA (the flash backend on CUDA)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * hd, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=False)
        self.wo = nn.Linear(cfg.n_heads * hd, cfg.dim, bias=False)

    def forward(self, x, start: int, cache: LayerCache | None, nsa_fn=None):
        b, t, _ = x.shape
        c = self.cfg
        q = rope(self.wq(x).view(b, t, c.n_heads, c.head_dim), start, c.rope_theta)
        k = rope(self.wk(x).view(b, t, c.n_kv_heads, c.head_dim), start, c.rope_theta)
        v = self.wv(x).view(b, t, c.n_kv_heads, c.head_dim)
        if cache is not None:
            k, v = cache.append(k, v)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))
        n_keys = k.shape[2]
        if n_keys == t:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:  # queries are the last t of n_keys positions
            mask = torch.arange(n_keys, device=x.device) <= torch.arange(n_keys - t, n_keys, device=x.device)[:, None]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        return self.wo(y.transpose(1, 2).reshape(b, t, -1))


class NSAAttention(nn.Module):
    """Native Sparse Attention (NSA_SPEC.md): compressed, selected and sliding-window branches.

    Each branch has its own key/value projection unless cfg.nsa_shared_kv; compressed keys/values
    come from CompressionMLP (an MLP over each block with an intra-block position table); a gate
    MLP with a sigmoid gives g_cmp, g_slc, g_win per token and query head.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.nsa = cfg.nsa_config
        hd = cfg.head_dim
        self.branches = 1 if cfg.nsa_shared_kv else 3
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * hd, bias=False)
        self.wk = nn.Linear(cfg.dim, self.branches * cfg.n_kv_heads * hd, bias=False)
        self.wv = nn.Linear(cfg.dim, self.branches * cfg.n_kv_heads * hd, bias=False)
        self.wo = nn.Linear(cfg.n_heads * hd, cfg.dim, bias=False)
        self.compress_k = CompressionMLP(hd, self.nsa)
        self.compress_v = CompressionMLP(hd, self.nsa)
        gate_hidden = max(32, cfg.dim // 4)
        self.gate = nn.Sequential(nn.Linear(cfg.dim, gate_hidden), nn.SiLU(), nn.Linear(gate_hidden, 3 * cfg.n_heads))
        nn.init.zeros_(self.gate[2].weight)
        nn.init.zeros_(self.gate[2].bias)

    @property
    def branch_index(self) -> tuple[int, int, int]:
        """Which of the projected k/v branches the compressed, selected and window branches use."""
        return (0, 0, 0) if self.branches == 1 else (0, 1, 2)

    def forward(self, x, start: int, cache: LayerCache | NSADecodeCache | None, nsa_fn):
        b, t, _ = x.shape
        c = self.cfg
        q = rope(self.wq(x).view(b, t, c.n_heads, c.head_dim), start, c.rope_theta)
        k = self.wk(x).view(b, t, self.branches * c.n_kv_heads, c.head_dim)
        k = rope(k, start, c.rope_theta).view(b, t, self.branches, c.n_kv_heads, c.head_dim).to(q.dtype)
        v = self.wv(x).view(b, t, self.branches, c.n_kv_heads, c.head_dim).to(q.dtype)
        gates = torch.sigmoid(self.gate(x).float()).to(q.dtype).view(b, t, 3, c.n_heads)
        if isinstance(cache, NSADecodeCache):
            y = cache.attend(self, q, k, v, gates, nsa_fn)
        else:
            if cache is not None:
                k, v = cache.append(k, v)
            y = self.attend(q, k, v, gates, nsa_fn)
        return self.wo(y.reshape(b, t, -1))

    def attend(self, q, k, v, gates, nsa_fn) -> torch.Tensor:
        """NSA for queries q [B, t, HQ, d] at the last t of the positions of k/v [B, T, branches, H, d]."""
        t, n_keys = q.shape[1], k.shape[1]
        cmp, slc, win = self.branch_index
        k_cmp = self.compress_k(k[:, :, cmp]).to(q.dtype)
        v_cmp = self.compress_v(v[:, :, cmp]).to(q.dtype)
        if n_keys > t:  # queries are the last t positions; earlier rows are padding, dropped below
            q = F.pad(q, (0, 0, 0, 0, n_keys - t, 0))
            gates = F.pad(gates, (0, 0, 0, 0, n_keys - t, 0))
        y = nsa_fn(
            q, k[:, :, slc], v[:, :, slc], k_cmp, v_cmp, gates[:, :, 0], gates[:, :, 1], gates[:, :, 2], self.nsa,
            k_win=k[:, :, win], v_win=v[:, :, win],
        )
        return y[:, n_keys - t :]


class MLP(nn.Module):
    """SwiGLU feed-forward."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = NSAAttention(cfg) if cfg.attention == "nsa" else FullAttention(cfg)
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, start, cache, nsa_fn):
        x = x + self.attn(self.attn_norm(x), start, cache, nsa_fn)
        return x + self.mlp(self.mlp_norm(x))


class Transformer(nn.Module):
    """Decoder-only LM: token embedding (tied to the output head), blocks, final RMSNorm.

    nsa_impl ('auto', 'triton', 'reference') picks the NSA implementation (see nsa_backend).
    """

    def __init__(self, cfg: ModelConfig, nsa_impl: str = "auto"):
        super().__init__()
        self.cfg = cfg
        self.nsa_impl = nsa_impl
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.head.weight = self.embed.weight
        self._init_weights()

    def _init_weights(self) -> None:
        """Normal(0, 0.02) for embeddings and projections, residual outputs scaled by depth (as GPT-2);
        the compression MLPs and the gate's last layer keep their own (zero-start) init."""
        for name, module in self.named_modules():
            if "compress" in name or "gate" in name:
                continue
            if isinstance(module, (nn.Linear, nn.Embedding)):
                std = 0.02 / math.sqrt(2 * self.cfg.n_layers) if name.endswith(("wo", "w2")) else 0.02
                nn.init.normal_(module.weight, mean=0.0, std=std)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def new_cache(self, max_len: int | None = None, decode_kernels: bool | None = None) -> list:
        """Per-layer caches for generation. NSA layers use the Triton decode kernels (NSADecodeCache,
        which needs max_len, the most tokens the cache will hold) when decode_kernels is True, or, by
        default, on CUDA when nsa_impl is not 'reference'; otherwise they
        keep raw keys/values and attend with nsa_attention over them."""
        if decode_kernels is None:
            device = self.embed.weight.device
            decode_kernels = (
                self.cfg.attention == "nsa" and max_len is not None and device.type == "cuda"
                and self.nsa_impl != "reference"
            )
        if decode_kernels:
            if self.cfg.attention != "nsa" or max_len is None:
                raise ValueError("decode kernels need an NSA model and max_len")
            return [NSADecodeCache(max_len) for _ in self.blocks]
        return [LayerCache() for _ in self.blocks]

    def forward(self, ids: torch.Tensor, cache: list[LayerCache] | None = None) -> torch.Tensor:
        """Logits [B, T, V] (float32) for ids [B, T], continuing the cache when one is given."""
        start = cache[0].length if cache else 0
        nsa_fn = nsa_function(ids.device, self.nsa_impl) if self.cfg.attention == "nsa" else None
        x = self.embed(ids)
        for i, block in enumerate(self.blocks):
            x = block(x, start, cache[i] if cache else None, nsa_fn)
        return self.head(self.norm(x)).float()

    @torch.no_grad()
    def generate(
        self,
        ids: list[int],
        max_new_tokens: int,
        temperature: float = 0.0,
        top_k: int | None = None,
        stop_ids: tuple[int, ...] = (),
        generator: torch.Generator | None = None,
    ) -> list[int]:
        """New token ids after ids: greedy when temperature == 0, else sampled (optionally top-k).

        Keys and values are cached, so each step runs the model on one token; NSA attends over the
        cached keys with its own compression, selection and window (nsa_decode on CUDA).
        """
        device = self.embed.weight.device
        cache = self.new_cache(max_len=len(ids) + max_new_tokens)
        logits = self(torch.tensor([ids], device=device), cache)[:, -1]
        out: list[int] = []
        for _ in range(max_new_tokens):
            if temperature <= 0:
                nxt = int(logits.argmax(-1))
            else:
                scaled = logits / temperature
                if top_k is not None:
                    kth = torch.topk(scaled, min(top_k, scaled.shape[-1])).values[:, -1:]
                    scaled = scaled.masked_fill(scaled < kth, float("-inf"))
                nxt = int(torch.multinomial(F.softmax(scaled, -1), 1, generator=generator))
            out.append(nxt)
            if nxt in stop_ids:
                break
            logits = self(torch.tensor([[nxt]], device=device), cache)[:, -1]
        return out
