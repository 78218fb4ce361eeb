"""load_lm: our models and Hugging Face models behind the nsa_bench.lm.CausalLM interface."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Sequence

import torch
from safetensors import SafetensorError

from nsa_bench.environment import resolve_device
from nsa_bench.errors import UsageError
from nsa_bench.kernels import NSAConfig

from .checkpoint import check_checkpoint, is_checkpoint, load_checkpoint, read_config_json
from .config import ATTENTIONS, PRESETS, preset
from .model import Transformer, bf16_autocast
from .tokenizer import load_tokenizer


class _Greedy:
    """Greedy generation with stop strings over a subclass's _start(ids, max_new_tokens) / _next(token) logits."""

    eos_id: int | None = None

    def generate(self, ids: Sequence[int], max_new_tokens: int, stop: Sequence[str] = ()) -> list[int]:
        """Greedy continuation: new ids only, ending at EOS or once the new text contains a stop string.
        The prompt is cut from the left to leave room for max_new_tokens within max_length."""
        ids = list(ids)[-max(1, self.max_length - max_new_tokens) :]
        out: list[int] = []
        with torch.no_grad():
            logits = self._start(ids, max_new_tokens)
            for _ in range(max_new_tokens):
                nxt = int(logits.argmax(-1))
                out.append(nxt)
                if nxt == self.eos_id or (stop and any(s in self.decode(out) for s in stop)):
                    break
                logits = self._next(nxt)
        return out


class NativeLM(_Greedy):
    """One of our Transformer models with its tokenizer (CausalLM).

    Our models are trained without BOS, so encoding adds none unless asked (add_special_tokens=True
    puts BOS first)."""

    adds_special_tokens = False

    def __init__(self, model: Transformer, name: str):
        self.model = model.eval()
        self.name = name
        self.attention = model.cfg.attention
        self.max_length = model.cfg.max_seq_len
        self.device = model.embed.weight.device
        self.tokenizer = load_tokenizer(model.cfg.tokenizer)
        self.eos_id = self.tokenizer.eos_id
        self._cache = None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids = self.tokenizer.encode(text)
        bos = self.tokenizer.bos_id
        return [bos, *ids] if add_special_tokens and bos is not None else ids

    def token_text(self, token_id: int) -> str | None:
        """The text of a special token (None for the byte tokenizer's, which have none)."""
        hf = getattr(self.tokenizer, "tok", None)
        return None if hf is None else hf.decode([int(token_id)])

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), bf16_autocast(self.device):
            return self.model(ids.to(self.device)).float()

    def _start(self, ids: list[int], max_new_tokens: int) -> torch.Tensor:
        self._cache = self.model.new_cache(max_len=len(ids) + max_new_tokens)
        with bf16_autocast(self.device):
            return self.model(torch.tensor([ids], device=self.device), self._cache)[0, -1]

    def _next(self, token: int) -> torch.Tensor:
        with bf16_autocast(self.device):
            return self.model(torch.tensor([[token]], device=self.device), self._cache)[0, -1]


def context_length(config, tokenizer=None, default: int = 2048) -> int:
    """A Hugging Face model's context length as lm-eval reads it: the text config's n_positions,
    max_position_embeddings or n_ctx, else the tokenizer's model_max_length when set, else default."""
    config = getattr(config, "text_config", None) or config
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    from_tokenizer = getattr(tokenizer, "model_max_length", None)
    return int(from_tokenizer) if from_tokenizer is not None and from_tokenizer < 10**18 else default


def cache_argument(model) -> str:
    """The name under which a transformers model takes and returns its KV cache: `cache` in current
    transformers (5.2x), `past_key_values` before (deprecated there, removed in 5.40)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class HFLM(_Greedy):
    """A Hugging Face causal LM from a local directory, with full (SDPA) or NSA attention (CausalLM).

    add_bos_token (None: the tokenizer's own setting) is handed to the tokenizer as lm-eval's HFLM does;
    encode(text, add_special_tokens=True) adds the special tokens (BOS) it then adds."""

    def __init__(
        self, path: str, attention: str, device: torch.device, nsa_config: NSAConfig | None, dtype=None,
        add_bos_token: bool | None = None, device_map: str | None = None,
    ):
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from . import hf_nsa

        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
        self.model = AutoModelForCausalLM.from_pretrained(
            path,
            attn_implementation="nsa" if attention == "nsa" else "sdpa",
            local_files_only=True,
            **{dtype_key: dtype},
            **({"device_map": device_map} if device_map else {}),
        )
        if device_map:  # spread over the devices: inputs go where the embeddings are
            device = self.model.get_input_embeddings().weight.device
        else:
            self.model.to(device)
        self.model.eval()
        if attention == "nsa" and nsa_config is not None:
            hf_nsa.set_model_nsa(self.model, config=nsa_config)
        bos_setting = {} if add_bos_token is None else {"add_bos_token": add_bos_token}
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, **bos_setting)
        self.adds_special_tokens = add_bos_token is not False
        self.name = path
        self.attention = attention
        self.max_length = context_length(self.model.config, self.tokenizer)
        self.device = device
        self.eos_id = self.tokenizer.eos_token_id
        self._cache_arg = cache_argument(self.model)
        self._cache = None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens)

    def token_text(self, token_id: int) -> str:
        """The text of a token, special tokens included (e.g. '<s>')."""
        return self.tokenizer.decode([int(token_id)])

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(input_ids=ids.to(self.device)).logits.float()

    def _start(self, ids: list[int], max_new_tokens: int) -> torch.Tensor:
        self._cache = None
        return self._next(ids)

    def _next(self, ids: int | list[int]) -> torch.Tensor:
        """Logits after feeding ids (one token or the prompt), continuing the KV cache the model returns."""
        rows = torch.tensor([ids if isinstance(ids, list) else [ids]], device=self.device)
        out = self.model(input_ids=rows, use_cache=True, **{self._cache_arg: self._cache})
        self._cache = out[self._cache_arg]
        return out.logits[0, -1].float()


def load_lm(
    path_or_preset: str | Path,
    attention: str | None = None,
    device: str | torch.device | None = None,
    nsa_config: NSAConfig | str | None = None,
    *,
    nsa_impl: str = "auto",
    dtype: torch.dtype | None = None,
    seed: int = 0,
    add_bos_token: bool | None = None,
    device_map: str | None = None,
):
    """A CausalLM for our checkpoint directory, a preset name (random weights, seeded), or a Hugging Face
    model directory (config.json not ours).

    attention: 'nsa' or 'full'; None means the checkpoint's own (presets: 'nsa'; Hugging Face: 'full').
    Our checkpoints run only with the attention they were trained with. nsa_config overrides the NSA
    block sizes (str 'l/d/l_sel/n/w' or NSAConfig). device defaults to CUDA when present.
    add_bos_token: whether the lm-eval class encodes texts with special tokens such as BOS (None: as
    the tokenizer does by default, which for Hugging Face tokenizers means yes; our models: no).
    device_map: a Hugging Face model's placement over devices (e.g. 'auto': over every GPU; then device
    is unused); our own models take none.
    """
    if attention is not None and attention not in ATTENTIONS:
        raise UsageError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
    device = resolve_device(device)
    nsa = None if nsa_config is None else str(nsa_config if isinstance(nsa_config, NSAConfig) else NSAConfig.parse(str(nsa_config)))
    spec = str(path_or_preset)
    changes = {} if nsa is None else {"nsa": nsa}
    kind = _check(spec, attention, changes)
    if device_map is not None and kind != "hf":
        raise UsageError(f"{spec}: device_map (parallelize) is for Hugging Face models; ours run on one device")
    if kind == "preset":
        torch.manual_seed(seed)
        model = Transformer(preset(spec, attention=attention or "nsa", **changes), nsa_impl=nsa_impl).to(device)
        return _native(model, spec, add_bos_token)
    if kind == "checkpoint":
        return _native(load_checkpoint(spec, device, nsa_impl=nsa_impl, **changes), spec, add_bos_token)
    if nsa_impl != "auto":
        from . import hf_nsa

        hf_nsa.configure(impl=nsa_impl)
    try:
        return HFLM(spec, attention or "full", device, nsa, dtype, add_bos_token, device_map)
    except (OSError, RuntimeError, SafetensorError) as error:  # e.g. truncated or mismatched weights
        raise ValueError(f"{spec}: cannot load the Hugging Face model: {_first_line(error)}") from None


def _native(model: Transformer, name: str, add_bos_token: bool | None) -> NativeLM:
    lm = NativeLM(model, name)
    if add_bos_token is not None:
        lm.adds_special_tokens = add_bos_token
    return lm


def check_lm(path_or_preset: str | Path, attention: str | None = None, nsa_config: NSAConfig | None = None) -> None:
    """Raise what load_lm would for a path that is no model, a broken checkpoint (one that does not fit
    its config.json) or an attention the checkpoint cannot run, without loading any weights."""
    _check(str(path_or_preset), attention, {} if nsa_config is None else {"nsa": str(nsa_config)})


def _check(spec: str, attention: str | None, changes: dict) -> str:
    """'preset', 'checkpoint' (ours, checked) or 'hf' (a directory with a valid config.json)."""
    if spec in PRESETS and not Path(spec).exists():
        return "preset"
    path = Path(spec)
    if not (path / "config.json").is_file():
        raise UsageError(f"{spec} is neither a preset ({', '.join(PRESETS)}) nor a model directory with config.json")
    read_config_json(path)  # a malformed config.json is named as such, not left to transformers
    if not is_checkpoint(path):
        return "hf"
    cfg = check_checkpoint(path, **changes)
    if attention is not None and attention != cfg.attention:
        raise UsageError(f"{spec} was trained with {cfg.attention} attention; it cannot run with {attention}")
    return "checkpoint"


def _first_line(error: BaseException) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
