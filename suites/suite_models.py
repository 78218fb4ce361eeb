"""Which model each attention runs in a quality suite, and loading it with one-line errors.

`--model PATH` runs the same model with each attention (presets, Hugging Face directories);
`--model nsa=PATH --model full=PATH` names one model per attention (our trained pairs: a checkpoint
runs only with the attention it was trained with).
"""

from __future__ import annotations

from typing import Sequence

from nsa_bench.errors import UsageError

_ATTENTIONS = {"nsa": ("nsa",), "full": ("full",), "both": ("nsa", "full")}


def attentions(attn: str) -> tuple[str, ...]:
    """'nsa' | 'full' | 'both' -> the attentions to run."""
    if attn not in _ATTENTIONS:
        raise UsageError(f"--attn must be nsa, full or both, got {attn!r}")
    return _ATTENTIONS[attn]


def models_by_attention(models: Sequence[str], attns: Sequence[str]) -> dict[str, str]:
    """attention -> model from `--model` values: `PATH` (every attention) and/or `nsa=PATH`, `full=PATH`."""
    shared, chosen = None, {}
    for value in models:
        prefix, sep, rest = value.partition("=")
        if sep and prefix in ("nsa", "full"):
            if not rest:
                raise UsageError(f"--model {value}: no path after '='")
            chosen[prefix] = rest
        elif shared is None:
            shared = value
        else:
            raise UsageError("--model: give one PATH, or nsa=PATH and full=PATH")
    picked = {a: chosen.get(a, shared) for a in attns}
    missing = [a for a, m in picked.items() if not m]
    if missing:
        raise UsageError(f"--model: no model for attention {missing[0]} (give PATH or {missing[0]}=PATH)")
    return picked


def check_models(models: dict[str, str], nsa_config: str | None = None) -> None:
    """Before any work: every attention's model exists, its checkpoint is whole and fits its config.json,
    and it can run with that attention; else UsageError (one line)."""
    from nsa_bench.models import check_lm

    config = _nsa_config(nsa_config)
    for attention, model in models.items():
        _as_usage_error(model, lambda: check_lm(model, attention, config))


def load_model(model: str, attention: str, device: str | None = None, nsa_config: str | None = None):
    """The CausalLM for a path or preset with the given attention; bad input -> UsageError."""
    from nsa_bench.distributed import rank_device
    from nsa_bench.models import load_lm

    device = rank_device(device)  # resolve_device's, and under torchrun this rank's GPU
    config = _nsa_config(nsa_config)
    return _as_usage_error(model, lambda: load_lm(model, attention=attention, device=device, nsa_config=config))


def _nsa_config(text: str | None):
    if not text:
        return None
    from nsa_bench.kernels.config import NSAConfig

    try:
        return NSAConfig.parse(text)
    except ValueError as error:
        raise UsageError(f"--nsa-config: {error}") from None


def _as_usage_error(model: str, action):
    """action(), with a bad model (ValueError, OSError) as one UsageError line naming --model."""
    try:
        return action()
    except UsageError:
        raise
    except (OSError, ValueError) as error:
        raise UsageError(f"--model {model}: {error}") from None
