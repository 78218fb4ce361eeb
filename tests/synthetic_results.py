"""Synthetic result CSVs that follow docs/RESULTS_SCHEMA.md (the columns and metadata stamp that
ResultWriter writes), for the gate and report tests. Times are made up; speedups agree with them."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

H100 = {
    "device": "cuda", "gpu": "NVIDIA H100 80GB HBM3", "gpu_capability": "9.0", "driver": "570.00", "cuda": "13.0",
    "python": "3.11.7", "torch": "2.11.0+cu130", "triton": "3.6.0", "flash_attn": "absent", "lm_eval": "absent",
    "transformers": "absent", "cudnn_attention": True, "fa2_baseline": "torch SDPA flash backend (FA2 code)",
    "git_rev": "abc123def456", "timestamp": "2026-01-01T00:00:00+00:00",
}
PROBLEM = {"batch": 1, "q_heads": 64, "kv_heads": 4, "dk": 128, "dv": 128, "dtype": "bf16", "nsa_config": "32/16/64/16/512"}
STAGES = {"fwd": ("compress", "cmp_attn", "select", "slc_attn", "win_attn", "combine"),
          "bwd": ("gate_grads", "cmp_bwd", "slc_index", "slc_bwd", "win_bwd")}
BASE_MS = {"fwd": 2.0, "bwd": 6.0, "decode": 0.1}  # FA2 at 8k
DECODE_BYTES = 134e6  # K and V of 8 sequences x 8k tokens x 4 heads x 128 x bf16


def _ceiling(mode: str, t: int) -> float:
    return t / 1200 if mode != "decode" else t / 1800


def kernel_rows(seq_lens=(8192, 16384), *, slower: dict | None = None, spread: float = 0.02,
                statuses: dict | None = None, cuda_graph: bool = True) -> list[dict]:
    """Kernel rows of one sweep. `slower[(impl, mode, T)]` multiplies a row's times (1.3 = 30% slower),
    `statuses[(impl, mode, T)]` replaces its status, `spread` sets p20/p80 = ms * (1 -/+ spread)."""
    slower, statuses = slower or {}, statuses or {}
    rows = []
    for mode in ("fwd", "bwd", "decode"):
        for t in seq_lens:
            fa2 = BASE_MS[mode] * (t / 8192) ** (1 if mode == "decode" else 2)
            ceiling = _ceiling(mode, t)
            times = {"fa2": fa2, "cudnn": 0.9 * fa2, "nsa": fa2 / (0.6 * ceiling)}
            if mode in STAGES:
                for i, stage in enumerate(STAGES[mode]):
                    times[f"nsa:{stage}"] = times["nsa"] * (i + 1) / 25
            elif cuda_graph:
                times.update({"fa2:cuda_graph": 0.8 * fa2, "cudnn:cuda_graph": 0.75 * fa2,
                              "nsa:cuda_graph": 0.5 * times["nsa"]})
            baseline_ms = {}
            for impl, ms in times.items():
                ms *= slower.get((impl, mode, t), 1.0)
                status = statuses.get((impl, mode, t), "ok")
                row = {"kind": "kernel", "impl": impl, "impl_detail": "synthetic", "mode": mode, "seq_len": t,
                       **PROBLEM, "batch": 8 if mode == "decode" else 1, "status": status,
                       "ms": math.nan, "ms_p20": math.nan, "ms_p80": math.nan, "speedup_fa2": math.nan,
                       "speedup_cudnn": math.nan, "ceiling": math.nan, "efficiency": math.nan,
                       "gbps": math.nan, "tflops": math.nan, "timing": "cuda events, L2 flushed",
                       "copy_gbps": 2900.0}
                base_impl = impl.partition(":")[0]
                if ":" not in impl or impl.endswith(":cuda_graph"):
                    row["ceiling"] = 1.0 if base_impl in ("fa2", "cudnn") else ceiling
                if status == "ok":
                    nbytes = DECODE_BYTES * t / 8192 / (1.0 if base_impl in ("fa2", "cudnn") else ceiling)
                    row.update(ms=ms, ms_p20=ms * (1 - spread), ms_p80=ms * (1 + spread), tflops=300 * 2.0 / ms,
                               gbps=nbytes / (ms * 1e-3) / 1e9)
                    if base_impl in ("fa2", "cudnn"):
                        baseline_ms[impl] = ms
                    suffix = ":cuda_graph" if impl.endswith(":cuda_graph") else ""
                    for b in ("fa2", "cudnn"):
                        if b + suffix in baseline_ms:
                            row[f"speedup_{b}"] = baseline_ms[b + suffix] / ms
                    if not math.isnan(row["ceiling"]) and not math.isnan(row["speedup_fa2"]):
                        row["efficiency"] = row["speedup_fa2"] / row["ceiling"]
                rows.append(row)
    return rows


def needle_rows(ctx_lens=(1024, 2048, 4096), depths=(0.0, 0.5, 1.0), scores: dict | None = None) -> list[dict]:
    """Needle rows for nsa and full; `scores[(attention, ctx_len, depth)]` overrides exact_match (default 1.0,
    full drops to 0.5 at the longest length)."""
    scores = scores or {}
    rows = []
    for attention in ("nsa", "full"):
        for ctx in ctx_lens:
            for depth in depths:
                em = scores.get((attention, ctx, depth), 0.5 if (attention == "full" and ctx == max(ctx_lens)) else 1.0)
                for metric, value in (("exact_match", em), ("prefix_match", min(1.0, em + 0.1))):
                    rows.append({"kind": "quality", "suite": "needle", "task": "passkey", "attention": attention,
                                 "model": f"runs/train/{attention}", "metric": metric, "score": value, "n": 3,
                                 "stderr": 0.1, "ctx_len": ctx, "depth": depth, "status": "ok", "max_length": 4096})
    return rows


def longbench_rows(scores: dict | None = None) -> list[dict]:
    """LongBench rows (subsets, buckets, average) for nsa and full; `scores[(attention, task)]` overrides."""
    scores = scores or {}
    base = {("nsa", "hotpotqa"): 0.41, ("full", "hotpotqa"): 0.43, ("nsa", "trec_e"): 0.60, ("full", "trec_e"): 0.55}
    rows = []
    for attention in ("nsa", "full"):
        subset_scores = []
        for task, metric in (("hotpotqa", "qa_f1"), ("trec_e", "classification")):
            score = scores.get((attention, task), base[(attention, task)])
            subset_scores.append(score)
            buckets = [("all", score)] + ([("0-4k", score + 0.05), ("4-8k", score - 0.05)] if task.endswith("_e") else [])
            for bucket, value in buckets:
                rows.append({"kind": "quality", "suite": "longbench", "task": task, "attention": attention,
                             "model": "tiny", "metric": metric, "score": value, "n": 20, "stderr": 0.05,
                             "length_bucket": bucket, "language": "en", "truncated": 3, "max_length": 4096,
                             "status": "ok"})
        rows.append({"kind": "quality", "suite": "longbench", "task": "average", "attention": attention,
                     "model": "tiny", "metric": "macro_avg", "score": sum(subset_scores) / 2, "n": 40, "stderr": 0.04,
                     "length_bucket": "all", "language": "en", "truncated": 6, "max_length": 4096, "status": "ok"})
    return rows


def lmeval_rows(scores: dict | None = None) -> list[dict]:
    """lm-eval rows (gsm8k strict/flexible, mmlu and two subjects) for nsa and full."""
    scores = scores or {}
    rows = []
    for attention in ("nsa", "full"):
        for task, metric, value in (("gsm8k", "exact_match:strict-match", 0.12), ("gsm8k", "exact_match:flexible-extract", 0.15),
                                    ("mmlu", "acc", 0.31), ("mmlu_anatomy", "acc", 0.28), ("mmlu_virology", "acc", 0.35)):
            value = scores.get((attention, task, metric), value + (0.01 if attention == "full" else 0.0))
            rows.append({"kind": "quality", "suite": "lmeval", "task": task, "attention": attention,
                         "model": f"runs/train/{attention}", "metric": metric, "score": value, "n": 100,
                         "stderr": 0.03, "status": "ok", "limit": 100, "num_fewshot": 5})
    return rows


def train_rows(steps: int = 30) -> list[dict]:
    """Train rows (kind=train) of an nsa/full pair."""
    rows = []
    for attention, offset in (("nsa", 0.0), ("full", 0.05)):
        for step in range(1, steps + 1):
            row = {"kind": "train", "suite": "train", "model": "tiny", "ctx_len": 256, "batch": 4,
                   "attention": attention, "status": "ok", "step": step, "loss": 5.0 / step ** 0.3 + offset,
                   "tokens_per_s": 1000.0, "step_s": 1.0, "wall_s": float(step), "params": 1.2e6}
            if step % 10 == 0:
                row.update(val_loss=5.1 / step ** 0.3 + offset, val_answer_acc=min(1.0, step / 40))
            rows.append(row)
    return rows


def write_csv(path: str | Path, rows: list[dict], metadata: dict | None = None) -> Path:
    """Write rows as ResultWriter does: each row stamped with the run's metadata (H100-like by default)."""
    path = Path(path)
    stamp = H100 if metadata is None else metadata
    pd.DataFrame([{**row, **{k: v for k, v in stamp.items() if k not in row}} for row in rows]).to_csv(path, index=False)
    return path
