"""The markdown summary of a kernel benchmark CSV (`nsa-bench kernels`), with its three PNGs.

The figures are nsa_bench.plots' (the same as `nsa-bench report` draws): NSA's speedup over FA2
and cuDNN against sequence length with the ceiling (the speedup at equal efficiency) per mode;
NSA's per-stage latency (forward, backward) as stacked bars; decode GB/s per implementation with
the measured copy bandwidth. The markdown embeds them beside the tables.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from nsa_bench.plots import decode_figure, length_label, save, speedup_figure, stage_figure


def _stage_mask(df: pd.DataFrame) -> pd.Series:
    """Rows of single NSA stages (impl 'nsa:<stage>'; ':cuda_graph' rows are whole calls)."""
    impl = df["impl"].astype(str)
    return impl.str.startswith("nsa:") & ~impl.str.endswith(":cuda_graph")


# ---- markdown -----------------------------------------------------------------------------------

def _fmt(value, spec: str = ".3g", suffix: str = "") -> str:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "" if math.isnan(f) else f"{f:{spec}}{suffix}"


def _table(rows: pd.DataFrame) -> list[str]:
    head = ("| T | impl | status | ms (p20-p80) | TFLOP/s | GB/s | x FA2 | x cuDNN | ceiling | efficiency "
            "| max_rel_err | peak GB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for _, r in rows.iterrows():
        spread = f"{_fmt(r['ms'])} ({_fmt(r['ms_p20'])}-{_fmt(r['ms_p80'])})" if _fmt(r["ms"]) else ""
        lines.append(
            f"| {length_label(int(r['seq_len']))} | {r['impl']} | {r['status']} | {spread} | {_fmt(r['tflops'], '.1f')} "
            f"| {_fmt(r['gbps'], '.0f')} | {_fmt(r['speedup_fa2'], '.2f', 'x')} | {_fmt(r['speedup_cudnn'], '.2f', 'x')} "
            f"| {_fmt(r['ceiling'], '.2f', 'x')} | {_fmt(r['efficiency'], '.0%')} | {_fmt(r['max_rel_err'], '.2e')} "
            f"| {_fmt(r['peak_mem_gb'], '.2f')} |"
        )
    return lines


_METHOD = """\
- **Timing**: {timing}. After {warmup} untimed warm-up calls, {repeats} timed calls, each with the L2
  cache emptied before it as the timing says (a read or a write of a 256 MiB buffer; nsa_bench.timing)
  and a CUDA event pair around the call alone; the tables give the median and the 20th-80th percentiles.
- **Decode** times one step of one new token per sequence over a cache of T tokens (batch in
  the `batch` column); `<impl>:cuda_graph` rows replay the same step as a CUDA graph (no host
  launch overhead) and compare with the baselines' graph replays. Full attention's decode puts
  the G query heads of a KV group as G query rows over that group's cache (read once).
- **Backward** is timed alone: the forward runs once outside the timed region and keeps its graph;
  each timed call is `torch.autograd.grad(out, inputs, grad_out, retain_graph=True)`.
- **nsa** is the whole layer's attention: mean-pool compression of k and v, then the bundled Triton
  `nsa_attention` (compressed attention with block scores, top-n, selected blocks, window, gates).
  `nsa:<stage>` rows time one stage of the forward or backward alone, on inputs prepared by one
  forward (`nsa_forward_stages`, `nsa_backward_stages`); their FLOPs are the stage's share of
  the counted work (blank where a stage does no counted work).
- **FLOPs** follow flash-attention's convention: 2 FLOPs per multiply-add; full causal attention
  counts T^2/2 query-key pairs, `4 * dk * T^2 / 2 * HQ` forward at dk = dv; NSA counts its keys per
  query exactly as NSA_SPEC.md's "Work per query head" (`NSAConfig.keys_per_query`), plus block
  scores and the gates; backward is 2.5x the forward's matmul FLOPs. **Bytes** are the least traffic
  (inputs read once, outputs written once); for decode, the cache a step must read.
- **Ceiling** = the speedup at equal efficiency: the attention-matmul FLOP ratio (fwd, bwd) or the
  byte ratio (decode). **Efficiency** = speedup over FA2 / ceiling.
- **Correctness**: before timing, `nsa` is compared with the PyTorch reference in float64:
  forward at up to {check_rows} query rows spread over the sequence, backward (all eight
  gradients) through a causal prefix of {check_prefix} rows, decode at every sequence's new token. `max_rel_err` = max |kernel - reference|
  / max |reference|; rows whose top-n cut is a near-tie (scores within 1%) are left out.
"""


def write_report(csv_path: str | Path, reports_dir: str | Path, tag: str, *, command: str = "",
                 copy_gbps: float | None = None, method: dict | None = None) -> Path:
    """Plots and reports/kernels_<tag>.md for one kernel-benchmark CSV; returns the markdown path."""
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    df = pd.read_csv(csv_path)
    df = df[df["kind"] == "kernel"] if "kind" in df else df
    if copy_gbps and "copy_gbps" not in df:
        df = df.assign(copy_gbps=copy_gbps)
    figures = {"speedup": speedup_figure(df), "stages": stage_figure(df), "decode_gbps": decode_figure(df)}
    pngs = {name: save(fig, reports_dir / f"kernels_{tag}_{name}.png", dpi=120)
            for name, fig in figures.items() if fig is not None}
    first = df.iloc[0] if len(df) else pd.Series(dtype=object)
    env_keys = ("gpu", "gpu_capability", "driver", "cuda", "torch", "triton", "flash_attn",
                "fa2_baseline", "cudnn_attention", "git_rev", "timestamp")
    lines = [f"# NSA kernel benchmark: {tag}", ""]
    if "interpreter" in str(first.get("timing", "")):
        lines += ["> **Triton interpreter smoke run on the CPU: the timings show that the pipeline works, "
                  "they are not performance.** `fa2` here is torch SDPA on the CPU.", ""]
    if command:
        lines += ["Command:", "", "```bash", command, "```", ""]
    csv_link = Path(os.path.relpath(Path(csv_path).resolve(), reports_dir.resolve())).as_posix()
    lines += [f"Rows: [{Path(csv_path).name}]({csv_link})", ""]
    lines += ["| machine | |", "|---|---|"] + [f"| {k} | {first.get(k, '')} |" for k in env_keys if k in first]
    if copy_gbps and not math.isnan(copy_gbps):
        lines.append(f"| measured copy bandwidth | {copy_gbps:.0f} GB/s |")
    if len(df):
        p = first
        lines += ["", f"Problem: batch {int(p['batch'])} (decode: per-mode `batch` column), {int(p['q_heads'])} query heads, "
                      f"{int(p['kv_heads'])} KV heads, dk {int(p['dk'])}, dv {int(p['dv'])}, {p['dtype']}, "
                      f"NSA config `{p['nsa_config']}` (cmp_block/cmp_stride/slc_block/slc_count/window).", ""]
    for mode, title in (("fwd", "Forward"), ("bwd", "Backward"), ("decode", "Decode (one step)")):
        part = df[(df["mode"] == mode) & ~_stage_mask(df)]
        if len(part):
            lines += [f"## {title}", ""] + _table(part) + [""]
    if "speedup" in pngs:
        lines += ["## Speedup over FlashAttention-2", "", f"![speedup]({pngs['speedup'].name})", ""]
    stage_rows = df[_stage_mask(df)]
    if len(stage_rows):
        lines += ["## NSA per stage", ""] + ([f"![stages]({pngs['stages'].name})", ""] if "stages" in pngs else [])
        for mode in ("fwd", "bwd"):
            part = stage_rows[stage_rows["mode"] == mode]
            if len(part):
                lines += [f"{mode}:", ""] + _table(part) + [""]
    if "decode_gbps" in pngs:
        lines += ["## Decode bandwidth", "", f"![decode]({pngs['decode_gbps'].name})", ""]
    m = {"timing": str(first.get("timing", "")), "warmup": "?", "repeats": "?", "check_rows": "?",
         "check_prefix": "?", **(method or {})}
    lines += ["## Method", "", _METHOD.format(**m)]
    path = reports_dir / f"kernels_{tag}.md"
    path.write_text("\n".join(lines))
    return path
