"""Training throughput, NSA against full attention: tokens/s of one training step of the same model.

For each context length the two models (one preset, the same sizes, only the attention differs)
take `warmup` untimed steps, then `steps` timed ones (forward, backward and AdamW on random tokens;
bf16 autocast on CUDA, the Triton NSA kernels there). A row per attention and length, written as
produced: median step seconds, tokens/s, peak memory; an out-of-memory or failing case is a row
with that status and the sweep goes on. NSA rows carry `speedup_full`, full's step time over NSA's.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from nsa_bench.models import Transformer, preset
from nsa_bench.models.model import bf16_autocast
from nsa_bench.results import ResultWriter


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training_step(model: Transformer, batch: int, length: int, steps: int, warmup: int) -> list[float]:
    """Seconds of each of `steps` timed training steps (after `warmup` untimed ones) on random tokens."""
    device = model.embed.weight.device
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, **({"fused": True} if device.type == "cuda" else {}))
    gen = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(0, model.cfg.vocab_size, (batch, length + 1), generator=gen).to(device)
    times = []
    for i in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        with bf16_autocast(device):
            logits = model(ids[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def _status(error: BaseException) -> str:
    if isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower():
        return "oom"
    return f"error: {type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"


def measure_train_speed(preset_name: str, lengths: list[int], tokens_per_step: int, out: str | Path,
                        device: str | None = None, steps: int = 5, warmup: int = 2,
                        attentions: tuple[str, ...] = ("full", "nsa"), nsa_impl: str = "auto") -> list[dict]:
    """Rows of tokens/s for each attention x length (batch = tokens_per_step // length, at least 1)."""
    if steps < 1 or warmup < 0:
        raise ValueError("steps must be at least 1 and warmup at least 0")
    if not lengths or min(lengths) < 16:
        raise ValueError("give context lengths of at least 16 tokens")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and nsa_impl == "auto":
        nsa_impl = "triton"  # never time the reference silently on a GPU
    writer = ResultWriter(out, extra={"kind": "train_speed", "suite": "train_speed", "model": preset_name,
                                      "tokens_per_step": tokens_per_step, "steps": steps, "warmup": warmup})
    rows = []
    for length in lengths:
        batch = max(1, tokens_per_step // length)
        step_s = {}
        for attention in attentions:
            row = {"attention": attention, "ctx_len": length, "batch": batch, "nsa_impl": nsa_impl,
                   "model": preset_name, "tokens_per_step": tokens_per_step}
            try:
                torch.manual_seed(0)
                cfg = preset(preset_name, attention=attention, max_seq_len=length)
                model = Transformer(cfg, nsa_impl=nsa_impl).to(dev)
                if dev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(dev)
                times = time_training_step(model, batch, length, steps, warmup)
                step_s[attention] = statistics.median(times)
                row.update(status="ok", params=model.num_params(), step_s=step_s[attention],
                           tokens_per_s=batch * length / step_s[attention],
                           peak_mem_gb=torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan"))
                del model
            except (RuntimeError, ValueError) as error:
                row["status"] = _status(error)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            if attention == "nsa" and {"nsa", "full"} <= step_s.keys():
                row["speedup_full"] = step_s["full"] / step_s["nsa"]
            writer.write(row)
            rows.append(row)
    return rows


def plot_train_speed(rows: list[dict], path: str | Path) -> Path:
    """Tokens/s against context length for each attention, and NSA's speedup over full."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for attention, style in (("full", "o--"), ("nsa", "s-")):
        ok = [r for r in rows if r["attention"] == attention and r.get("status") == "ok"]
        left.plot([r["ctx_len"] for r in ok], [r["tokens_per_s"] for r in ok], style, label=attention)
    speed = [r for r in rows if r["attention"] == "nsa" and r.get("speedup_full")]
    right.plot([r["ctx_len"] for r in speed], [r["speedup_full"] for r in speed], "s-", color="tab:green")
    right.axhline(1.0, color="gray", linewidth=0.8)
    for ax, label in ((left, "training tokens/s"), (right, "NSA speedup over full (step time ratio)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    left.legend()
    first = rows[0] if rows else {}
    fig.suptitle(f"training throughput, {first.get('model', '')} preset, {first.get('tokens_per_step', '')} tokens a step",
                 fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
