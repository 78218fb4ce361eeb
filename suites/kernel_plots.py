"""Plots and the markdown summary of a kernel benchmark CSV (`nsa-bench kernels`).

Three PNGs: NSA's speedup over FA2 against sequence length with the ceiling (the speedup at
equal efficiency) per mode; NSA's per-stage latency (forward, backward) as stacked bars; decode GB/s per
implementation with the measured copy bandwidth. The markdown embeds them beside the tables.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

COLORS = {"nsa": "tab:red", "nsa:cuda_graph": "darkred", "fa2": "tab:blue", "cudnn": "tab:green", "ref": "tab:gray"}


def _stage_mask(df: pd.DataFrame) -> pd.Series:
    """Rows of single NSA stages (impl 'nsa:<stage>'; ':cuda_graph' rows are whole calls)."""
    impl = df["impl"].astype(str)
    return impl.str.startswith("nsa:") & ~impl.str.endswith(":cuda_graph")


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"].astype(str) == "ok"]


def _length_label(n: int) -> str:
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")


def _lengths_axis(ax, lengths) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths)
    ax.set_xticklabels([_length_label(n) for n in lengths])
    ax.set_xlabel("sequence length (tokens)")


def _title_note(df: pd.DataFrame) -> str:
    timing = str(df["timing"].iloc[0]) if "timing" in df and len(df) else ""
    return "\n(interpreter timings: smoke run, not performance)" if "interpreter" in timing else ""


def plot_speedup(df: pd.DataFrame, path: Path) -> Path:
    """NSA (and cuDNN) speedup over FA2 against length, one panel per mode, ceiling dashed."""
    modes = [m for m in ("fwd", "bwd", "decode") if m in set(df["mode"])]
    fig, axes = plt.subplots(1, max(len(modes), 1), figsize=(5 * max(len(modes), 1), 4), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        part = df[df["mode"] == mode]
        ok = _ok(part)
        lengths = sorted(set(part["seq_len"].astype(int)))
        ceiling = part[part["impl"] == "nsa"].groupby("seq_len")["ceiling"].first()
        if len(ceiling):
            ax.plot(ceiling.index, ceiling.values, "k--", label="NSA ceiling (equal efficiency)")
        for impl in ("nsa", "nsa:cuda_graph", "cudnn"):
            rows = ok[ok["impl"] == impl].sort_values("seq_len")
            if len(rows) and rows["speedup_fa2"].notna().any():
                ax.plot(rows["seq_len"], rows["speedup_fa2"], "o-", color=COLORS[impl], label=impl)
                for x, y in zip(rows["seq_len"], rows["speedup_fa2"]):
                    if not math.isnan(y):
                        ax.annotate(f"{y:.3g}x", (x, y), textcoords="offset points", xytext=(0, 6),
                                    ha="center", fontsize=8)
        ax.axhline(1.0, color="tab:blue", lw=0.8, label="fa2 (= 1)")
        if lengths:
            _lengths_axis(ax, lengths)
        ax.set_ylabel("speedup over FA2")
        ax.set_title(mode)
        if not ok["speedup_fa2"].notna().any():
            _no_data(ax, "no speedups measured")
        ax.legend(fontsize=8)
    if not modes:
        _no_data(axes[0][0], "no rows")
    fig.suptitle("NSA vs FlashAttention-2" + _title_note(df))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_stages(df: pd.DataFrame, path: Path) -> Path:
    """NSA latency per stage as stacked bars per length (forward and backward panels), with the
    whole NSA call (one launch sequence, compression included) as a black tick."""
    modes = [m for m in ("fwd", "bwd") if (_stage_mask(df) & (df["mode"] == m)).any()]
    fig, axes = plt.subplots(1, max(len(modes), 1), figsize=(6.5 * max(len(modes), 1), 4.5), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        ok = _ok(df[df["mode"] == mode])
        stages = ok[_stage_mask(ok)]
        lengths = sorted(set(stages["seq_len"].astype(int)))
        names = list(dict.fromkeys(stages["impl"]))
        x = list(range(len(lengths)))
        bottom = [0.0] * len(lengths)
        cmap = plt.get_cmap("tab10")
        for i, name in enumerate(names):
            ms = [float(stages[(stages["impl"] == name) & (stages["seq_len"] == n)]["ms"].sum()) for n in lengths]
            ax.bar(x, ms, bottom=bottom, label=name.removeprefix("nsa:"), color=cmap(i % 10))
            bottom = [b + m for b, m in zip(bottom, ms)]
        whole = ok[ok["impl"] == "nsa"].set_index("seq_len")["ms"]
        ax.plot(x, [whole.get(n, math.nan) for n in lengths], "k_", ms=30, mew=2, label="nsa (whole call)")
        ax.set_xticks(x)
        ax.set_xticklabels([_length_label(n) for n in lengths])
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel("latency (ms)")
        ax.set_title(f"NSA {mode}, time per stage")
        if not lengths:
            _no_data(ax, "no stage timings")
        ax.legend(fontsize=8)
    if not modes:
        _no_data(axes[0][0], "no per-stage rows")
    fig.suptitle("NSA per stage" + _title_note(df))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_decode(df: pd.DataFrame, path: Path, copy_gbps: float | None = None) -> Path:
    """Achieved GB/s of one decode step per implementation against length, copy bandwidth dotted."""
    dec = _ok(df[df["mode"] == "decode"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lengths = sorted(set(dec["seq_len"].astype(int)))
    for impl in ("nsa", "fa2", "cudnn"):
        for suffix, style in (("", "o-"), (":cuda_graph", "s--")):
            rows = dec[dec["impl"] == impl + suffix].sort_values("seq_len")
            if len(rows):
                ax.plot(rows["seq_len"], rows["gbps"], style, color=COLORS[impl], label=impl + suffix)
    if copy_gbps and not math.isnan(copy_gbps):
        ax.axhline(copy_gbps, color="k", ls=":", label=f"measured copy {copy_gbps:.0f} GB/s")
    if lengths:
        _lengths_axis(ax, lengths)
        ax.legend(fontsize=8)
    else:
        _no_data(ax, "no decode rows")
    ax.set_ylabel("GB/s (counted bytes / step time)")
    ax.set_title("Decode step, achieved bandwidth" + _title_note(df))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
            f"| {_length_label(int(r['seq_len']))} | {r['impl']} | {r['status']} | {spread} | {_fmt(r['tflops'], '.1f')} "
            f"| {_fmt(r['gbps'], '.0f')} | {_fmt(r['speedup_fa2'], '.2f', 'x')} | {_fmt(r['speedup_cudnn'], '.2f', 'x')} "
            f"| {_fmt(r['ceiling'], '.2f', 'x')} | {_fmt(r['efficiency'], '.0%')} | {_fmt(r['max_rel_err'], '.2e')} "
            f"| {_fmt(r['peak_mem_gb'], '.2f')} |"
        )
    return lines


_METHOD = """\
- **Timing**: {timing}. After {warmup} untimed warm-up calls, {repeats} timed calls, each with the L2
  cache flushed before it and a CUDA event pair around the call alone; the tables give the median and
  the 20th-80th percentiles.
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
    pngs = {
        "speedup": plot_speedup(df, reports_dir / f"kernels_{tag}_speedup.png"),
        "stages": plot_stages(df, reports_dir / f"kernels_{tag}_stages.png"),
        "decode": plot_decode(df, reports_dir / f"kernels_{tag}_decode_gbps.png", copy_gbps),
    }
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
    lines += ["## Speedup over FlashAttention-2", "", f"![speedup]({pngs['speedup'].name})", ""]
    stage_rows = df[_stage_mask(df)]
    if len(stage_rows):
        lines += ["## NSA per stage", "", f"![stages]({pngs['stages'].name})", ""]
        for mode in ("fwd", "bwd"):
            part = stage_rows[stage_rows["mode"] == mode]
            if len(part):
                lines += [f"{mode}:", ""] + _table(part) + [""]
    if (df["mode"] == "decode").any():
        lines += ["## Decode bandwidth", "", f"![decode]({pngs['decode'].name})", ""]
    m = {"timing": str(first.get("timing", "")), "warmup": "?", "repeats": "?", "check_rows": "?",
         "check_prefix": "?", **(method or {})}
    lines += ["## Method", "", _METHOD.format(**m)]
    path = reports_dir / f"kernels_{tag}.md"
    path.write_text("\n".join(lines))
    return path
