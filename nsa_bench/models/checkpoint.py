"""Checkpoints of our models: model.safetensors plus config.json (marked as nsa-bench's own)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
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


def read_config_json(path: str | Path) -> dict:
    """The JSON object in path/config.json; ValueError naming the file when it is not one."""
    file = Path(path) / "config.json"
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{file} is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{file} is not a JSON object")
    return data


def check_checkpoint(path: str | Path, **changes) -> ModelConfig:
    """The config of the checkpoint in directory path, once its weights' names and shapes fit it (read
    from the safetensors header, no tensors loaded); ValueError naming the file and what is wrong."""
    path = Path(path)
    data = read_config_json(path)
    if data.get("format") != FORMAT:
        raise ValueError(f"{path} is not an nsa-bench checkpoint (no config.json with format {FORMAT!r})")
    try:
        cfg = ModelConfig.from_dict(data).with_(**changes)
        if (path / cfg.tokenizer).is_dir() and not Path(cfg.tokenizer).is_absolute():
            cfg = cfg.with_(tokenizer=str((path / cfg.tokenizer).resolve()))
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in Transformer(cfg).state_dict().items()}
    except (TypeError, ValueError, KeyError, AssertionError) as error:
        raise ValueError(f"{path / 'config.json'} does not describe a model: {error}") from None
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise ValueError(f"{weights} is missing")
    try:
        with safe_open(str(weights), "pt") as file:
            shapes = {k: tuple(file.get_slice(k).get_shape()) for k in file.keys()}
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{weights} is not a complete safetensors file (truncated or corrupt?): {error}") from None
    for name, shape in shapes.items():
        if name not in expected:
            raise ValueError(f"{weights} does not fit {path / 'config.json'}: the config's model has no {name}")
        if expected[name] != shape:
            raise ValueError(f"{weights} does not fit {path / 'config.json'}: {name} has shape {list(shape)}, "
                             f"the config's model {list(expected[name])}")
    return cfg


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", nsa_impl: str = "auto", **changes) -> Transformer:
    """The model saved in directory path, on device; `changes` override config fields (e.g. nsa).
    A broken or mismatched checkpoint raises ValueError with one line naming the file."""
    path = Path(path)
    model = Transformer(check_checkpoint(path, **changes), nsa_impl=nsa_impl)
    try:
        load_model(model, str(path / "model.safetensors"), device=str(device))
    except (SafetensorError, RuntimeError) as error:
        detail = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), str(error))
        raise ValueError(f"{path / 'model.safetensors'} does not fit {path / 'config.json'}: {detail}") from None
    return model.to(device)
