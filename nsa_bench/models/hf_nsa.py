"""NSA inside Hugging Face models: an `nsa` attention implementation for transformers' AttentionInterface.

Importing this module registers it, after which

    AutoModelForCausalLM.from_pretrained(path, attn_implementation="nsa")

runs Llama-, Qwen2- and Mistral-family checkpoints with NSA in place of softmax attention. The model
was not trained with NSA, so compression is parameter-free (mean pooling) and the gates are fixed.
The default gates, g_cmp=0, g_slc=0.5, g_win=0.5, make NSA equal to full attention whenever the
selected blocks and the window cover the whole context, so what a long context loses is the
sparsity's doing. Set the defaults with `configure(...)`, or one model's with `set_model_nsa(...)`.

Inputs must be unpadded (every row of a batch full-length): the causal structure is NSA's own and
the attention mask is not read. A sliding-window setting of the model (Mistral) is replaced by NSA's.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from nsa_bench.kernels import NSAConfig, mean_pool_compress

from .nsa_backend import IMPLS, nsa_function

NAME = "nsa"
_defaults = {"config": NSAConfig(), "gates": (0.0, 0.5, 0.5), "impl": "auto"}


def _settings(config=None, gates=None, impl=None) -> dict:
    out = {}
    if config is not None:
        out["config"] = config if isinstance(config, NSAConfig) else NSAConfig.parse(str(config))
    if gates is not None:
        gates = tuple(float(g) for g in gates)
        if len(gates) != 3:
            raise ValueError(f"gates must be three numbers (g_cmp, g_slc, g_win), got {gates}")
        out["gates"] = gates
    if impl is not None:
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        out["impl"] = impl
    return out


def configure(config: NSAConfig | str | None = None, gates=None, impl: str | None = None) -> None:
    """Set the defaults for every model: NSA block sizes, fixed gates (g_cmp, g_slc, g_win), implementation."""
    _defaults.update(_settings(config, gates, impl))


def set_model_nsa(model, config: NSAConfig | str | None = None, gates=None, impl: str | None = None) -> None:
    """Give one loaded model its own NSA settings (stored on model.config.nsa_attention)."""
    current = dict(getattr(model.config, "nsa_attention", None) or {})
    new = _settings(config, gates, impl)
    if "config" in new:
        new["config"] = str(new["config"])
    model.config.nsa_attention = {**current, **new}


def model_settings(module) -> dict:
    """The settings for one attention module: the defaults overridden by its model config's."""
    own = getattr(getattr(module, "config", None), "nsa_attention", None) or {}
    return {**_defaults, **_settings(own.get("config"), own.get("gates"), own.get("impl"))}


def nsa_attention_forward(module, query, key, value, attention_mask=None, scaling=None, dropout=0.0, **kwargs):
    """AttentionInterface entry: query [B,HQ,Tq,D], key/value [B,H,Tk,D] (not repeated for GQA);
    returns ([B,Tq,HQ,D], None). With a KV cache (Tq < Tk) the queries are the last Tq positions."""
    if kwargs.get("softcap") is not None:
        raise ValueError("nsa attention does not support attention logit soft-capping")
    s = model_settings(module)
    cfg = s["config"]
    q, k, v = (x.transpose(1, 2) for x in (query, key, value))
    b, tq, hq, _ = q.shape
    tk = k.shape[1]
    if tq < tk:
        q = F.pad(q, (0, 0, 0, 0, tk - tq, 0))
    g_cmp, g_slc, g_win = (torch.full((b, tk, hq), g, dtype=q.dtype, device=q.device) for g in s["gates"])
    fn = nsa_function(q.device, s["impl"])
    out = fn(
        q, k, v, mean_pool_compress(k, cfg), mean_pool_compress(v, cfg), g_cmp, g_slc, g_win, cfg, scale=scaling
    )
    return out[:, tk - tq :].contiguous(), None


def register() -> None:
    """Register `nsa` with transformers (AttentionInterface, or the older global mapping)."""
    try:
        from transformers import AttentionInterface
    except ImportError:  # transformers < 4.50
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        ALL_ATTENTION_FUNCTIONS[NAME] = nsa_attention_forward
        return
    AttentionInterface.register(NAME, nsa_attention_forward)


register()
