"""What this machine is: device, versions, baselines. Stamped onto every result row."""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

import torch

from nsa_bench.errors import UsageError

_PACKAGES = ("torch", "triton", "flash-attn", "lm-eval", "transformers")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device a command runs on, the one rule of every command: none given (or 'auto') -> CUDA
    when present, else the CPU; an explicit CUDA request on a machine without CUDA is a UsageError
    (one line), never a quiet fall-back to the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise UsageError(f"bad device {str(device)!r}: use cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {str(device)!r} asked for, but there is no CUDA GPU here")
    return resolved


def package_version(name: str) -> str | None:
    """Installed version of a distribution, or None when it is absent."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def flash_attn_importable() -> bool:
    try:
        import flash_attn  # noqa: F401
    except Exception:
        return False
    return True


def fa2_baseline() -> str:
    """Which FlashAttention-2 the benchmarks use: the flash_attn package, else torch SDPA's flash backend."""
    if not torch.cuda.is_available():
        return "none (no CUDA GPU)"
    if flash_attn_importable():
        return f"flash_attn {package_version('flash-attn')}"
    return "torch SDPA flash backend (FA2 code)"


@functools.cache
def cudnn_attention_available() -> bool:
    """Whether torch SDPA's cuDNN backend runs here (tried on a tiny causal bf16 problem)."""
    if not torch.cuda.is_available():
        return False
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if not hasattr(SDPBackend, "CUDNN_ATTENTION"):
        return False
    q = torch.randn(1, 2, 128, 64, device="cuda", dtype=torch.bfloat16)
    try:
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
        torch.cuda.synchronize()
    except RuntimeError:
        return False
    return True


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else None


@functools.cache
def git_revision() -> str:
    """The source tree's git revision (with '-dirty' for uncommitted changes), or 'unknown'.

    NSA_BENCH_GIT_REV overrides it, for copies of the tree that travel without .git (a GPU runner).
    """
    if os.environ.get("NSA_BENCH_GIT_REV"):
        return os.environ["NSA_BENCH_GIT_REV"]
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root,
                             capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


@functools.cache
def environment_info() -> dict:
    """A flat dict of the machine and software facts that make a result reproducible."""
    cuda = torch.cuda.is_available()
    info = {
        "device": "cuda" if cuda else "cpu",
        "gpu": torch.cuda.get_device_name(0) if cuda else "none",
        "gpu_capability": ".".join(map(str, torch.cuda.get_device_capability(0))) if cuda else "none",
        "driver": (_nvidia_driver() or "unknown") if cuda else "none",
        "cuda": torch.version.cuda or "none",
        "python": platform.python_version(),
    }
    for name in _PACKAGES:
        info[name.replace("-", "_")] = package_version(name) or "absent"
    info["cudnn_attention"] = cudnn_attention_available()
    info["fa2_baseline"] = fa2_baseline()
    info["git_rev"] = git_revision()
    return info


def run_metadata() -> dict:
    """environment_info() plus the time of the run, for stamping result rows."""
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {**environment_info(), "timestamp": stamp}
