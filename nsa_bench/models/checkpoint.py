"""Checkpoints of our models: model.safetensors plus config.json (marked as nsa-bench's own)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from .config import ModelConfig
from .model import Transformer

FORMAT = "nsa-bench-lm"
TOKENIZER_DIR = "tokenizer"  # a checkpoint's own tokenizer, beside model.safetensors


def is_checkpoint(path: str | Path) -> bool:
    """Whether path is a directory holding one of our checkpoints (not a Hugging Face model)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("format") == FORMAT
    except (json.JSONDecodeError, AttributeError):
        return False


def save_checkpoint(model: Transformer, path: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write model.safetensors (in dtype, default the model's) and config.json into directory path; returns it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if dtype is not None:
        model = copy.deepcopy(model).to(dtype)
    save_model(model, str(path / "model.safetensors"))
    config = model.cfg.to_dict()
    tokenizer = Path(model.cfg.tokenizer)
    if tokenizer.is_dir():  # the tokenizer travels with the checkpoint, as TOKENIZER_DIR beside the weights
        if tokenizer.resolve() != (path / TOKENIZER_DIR).resolve():
            shutil.copytree(tokenizer, path / TOKENIZER_DIR, dirs_exist_ok=True)
        config["tokenizer"] = TOKENIZER_DIR
    (path / "config.json").write_text(json.dumps({"format": FORMAT, **config}, indent=2) + "\n")
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", nsa_impl: str = "auto", **changes) -> Transformer:
    """The model saved in directory path, on device; `changes` override config fields (e.g. nsa)."""
    path = Path(path)
    if not is_checkpoint(path):
        raise ValueError(f"{path} is not an nsa-bench checkpoint (no config.json with format {FORMAT!r})")
    cfg = ModelConfig.from_dict(json.loads((path / "config.json").read_text())).with_(**changes)
    if (path / cfg.tokenizer).is_dir() and not Path(cfg.tokenizer).is_absolute():
        cfg = cfg.with_(tokenizer=str((path / cfg.tokenizer).resolve()))
    model = Transformer(cfg, nsa_impl=nsa_impl)
    load_model(model, str(path / "model.safetensors"), device=str(device))
    return model.to(device)
