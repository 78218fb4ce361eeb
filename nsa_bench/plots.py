"""Every figure of the project, drawn once: used by the commands that write their own PNGs
(`kernels`, `needle`, `train`) and by `report`.

Each figure function takes rows (a DataFrame in docs/RESULTS_SCHEMA.md's columns) and returns a
matplotlib Figure, or None when the rows hold nothing to draw; `save` writes it as a PNG.
Kernel figures: speedup over the baselines against length with the ceiling, NSA's stages as
stacked bars, decode bandwidth. Needle: heatmaps of depth x length. Training: loss against step
and against training time, and held-out retrieval accuracy.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pandas as pd

from nsa_bench.gate import _key_text, is_ok

MODES = ("fwd", "bwd", "decode")
COLORS = {"nsa": "tab:red", "full": "tab:blue", "fa2": "tab:blue", "cudnn": "tab:green", "ref": "tab:gray",
          "fla": "tab:orange", "nsa_triton": "tab:olive", "nsa:cuda_graph": "tab:purple", "fla:cuda_graph": "tab:brown"}


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write fig as a PNG (its folder made) and close it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def ok_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"].map(is_ok)] if "status" in frame else frame


def number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def length_label(value) -> str:
    n = int(value)
    return f"{n // 1024}k" if n % 1024 == 0 and n >= 1024 else str(n)


def _log2_x(ax, lengths) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths)
    ax.set_xticklabels([length_label(t) for t in lengths])
    ax.minorticks_off()


def _interpreter_note(group: pd.DataFrame) -> str:
    timing = group["timing"].dropna().astype(str) if "timing" in group else []
    return " (Triton interpreter: smoke run, not performance)" if any("interpreter" in t for t in timing) else ""


# ---- kernels -------------------------------------------------------------------------------------

def series(group: pd.DataFrame, mode: str, impl: str, column: str) -> pd.DataFrame:
    """Median of `column` per seq_len over the ok rows of one mode and implementation."""
    rows = ok_rows(group[(group["mode"] == mode) & (group["impl"] == impl)])
    rows = rows[[c for c in ("seq_len", column) if c in rows]].dropna()
    return rows.groupby("seq_len", as_index=False)[column].median().sort_values("seq_len") if column in rows else rows


def main_impls(group: pd.DataFrame) -> list[str]:
    """NSA, the peers (fla, nsa_triton) and the reference, with their :cuda_graph variants: the rows
    whose speedups the plot shows."""
    impls = [str(i) for i in group["impl"].dropna().unique()]
    return [i for i in impls if i.removesuffix(":cuda_graph") in ("nsa", "fla", "nsa_triton", "ref")]


def stage_impls(group: pd.DataFrame, mode: str) -> list[str]:
    """The `nsa:<stage>` implementations of one mode, in row order."""
    impls = group.loc[group["mode"] == mode, "impl"].dropna().astype(str)
    return list(dict.fromkeys(i for i in impls if i.startswith("nsa:") and i not in ("nsa:stages", "nsa:cuda_graph")))


def speedup_figure(group: pd.DataFrame):
    """Speedup over FA2 (solid) and cuDNN (dashed) against length, per mode, with the ceiling."""
    modes = [m for m in MODES if (group["mode"] == m).any()]
    if not modes:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(modes), figsize=(5.2 * len(modes), 4.8), squeeze=False, layout="constrained")
    for ax, mode in zip(axes[0], modes):
        lengths = sorted(group.loc[group["mode"] == mode, "seq_len"].dropna().astype(int).unique())
        for impl in main_impls(group):
            color = COLORS.get(impl)
            for metric, style, base in (("speedup_fa2", "-o", "FA2"), ("speedup_cudnn", "--s", "cuDNN")):
                s = series(group, mode, impl, metric)
                if len(s):
                    ax.plot(s["seq_len"], s[metric], style, color=color, label=f"{impl} / {base}", ms=4)
        ceiling = group[(group["mode"] == mode) & (group["impl"] == "nsa")][["seq_len", "ceiling"]].dropna()
        ceiling = ceiling.groupby("seq_len", as_index=False)["ceiling"].median()
        if len(ceiling):
            ratio = "byte" if mode == "decode" else "FLOP"
            ax.plot(ceiling["seq_len"], ceiling["ceiling"], ":", color="black", label=f"ceiling ({ratio} ratio)")
        ax.axhline(1.0, color="gray", lw=0.8)
        if lengths:
            _log2_x(ax, lengths)
        ax.set_yscale("log", base=2)
        ax.set(title=mode, xlabel="sequence length", ylabel="speedup (baseline ms / NSA ms)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)  # off the lines
    note = _interpreter_note(group)
    if note:
        fig.suptitle("NSA against the baselines" + note, fontsize=9)
    return fig


def stage_figure(group: pd.DataFrame):
    """Stacked time of the NSA stages per length (fwd, bwd), beside NSA's whole call and FA2."""
    modes = [m for m in ("fwd", "bwd") if stage_impls(group, m)]
    if not modes:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(modes), figsize=(7.2 * len(modes), 4.2), squeeze=False, layout="constrained")
    cmap = plt.get_cmap("tab10")
    for ax, mode in zip(axes[0], modes):
        lengths = sorted(group.loc[group["mode"] == mode, "seq_len"].dropna().astype(int).unique())
        x = list(range(len(lengths)))
        bottom = [0.0] * len(lengths)
        for i, stage in enumerate(stage_impls(group, mode)):
            s = series(group, mode, stage, "ms")
            by_len = dict(zip(s["seq_len"].astype(int), s["ms"])) if len(s) else {}
            heights = [number(by_len.get(t, 0.0)) for t in lengths]
            ax.bar(x, heights, 0.6, bottom=bottom, color=cmap(i % 10), label=stage.partition(":")[2])
            bottom = [b + h for b, h in zip(bottom, heights)]
        for impl, marker in (("nsa", "k_"), ("fa2", "b_")):
            s = series(group, mode, impl, "ms")
            if len(s):
                by_len = dict(zip(s["seq_len"].astype(int), s["ms"]))
                ax.plot(x, [by_len.get(t, math.nan) for t in lengths], marker, ms=28, mew=2,
                        label=f"{impl} (whole call)")
        ax.set_xticks(x)
        ax.set_xticklabels([length_label(t) for t in lengths])
        ax.set(title=f"NSA {mode} by stage", xlabel="sequence length", ylabel="ms")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, markerscale=0.35)
    note = _interpreter_note(group)
    if note:
        fig.suptitle("NSA per stage" + note, fontsize=9)
    return fig


def decode_figure(group: pd.DataFrame):
    """Achieved GB/s of a decode step against length, with the device's copy bandwidth (the
    `copy_gbps` column)."""
    impls = [str(i) for i in group.loc[group["mode"] == "decode", "impl"].dropna().unique()]
    lines = {i: series(group, "decode", i, "gbps") for i in impls}
    lines = {i: s for i, s in lines.items() if len(s)}
    if not lines:
        return None
    fig, ax = pyplot().subplots(figsize=(6.5, 4.2))
    for impl, s in lines.items():
        ax.plot(s["seq_len"], s["gbps"], "--o" if impl.endswith(":cuda_graph") else "-o",
                color=COLORS.get(impl.partition(":")[0]), ms=4, label=impl)
    copy = pd.to_numeric(group["copy_gbps"], errors="coerce").dropna() if "copy_gbps" in group else []
    if len(copy):
        ax.axhline(copy.median(), color="black", ls=":", label=f"device copy {copy.median():,.0f} GB/s")
    _log2_x(ax, sorted({int(t) for s in lines.values() for t in s["seq_len"]}))
    ax.set(title="decode step: achieved bandwidth" + _interpreter_note(group), xlabel="context length",
           ylabel="GB/s (counted bytes / time)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


# ---- needle --------------------------------------------------------------------------------------

def _heatmap(ax, grid: pd.DataFrame, title: str, cmap: str, vmin: float, vmax: float):
    import matplotlib
    import numpy as np

    colors = matplotlib.colormaps[cmap].with_extremes(bad="lightgray")  # cells that did not run
    values = grid.values.astype(float)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=colors, vmin=vmin, vmax=vmax, aspect="auto", origin="upper")
    ax.set_xticks(range(grid.shape[1]))
    ax.set_xticklabels([length_label(c) for c in grid.columns])
    ax.set_yticks(range(grid.shape[0]))
    ax.set_yticklabels([f"{d:.0%}" for d in grid.index])
    ax.set_title(title, fontsize=9)
    ax.set(xlabel="context length", ylabel="needle depth")
    for (i, j), value in np.ndenumerate(values):
        if math.isnan(value):
            ax.text(j, i, "n/a", ha="center", va="center", fontsize=7, color="dimgray")
            continue
        level = (value - vmin) / ((vmax - vmin) or 1)  # dark cells (low viridis, RdBu ends) get white text
        dark = abs(level - 0.5) > 0.35 if cmap == "RdBu" else level < 0.55
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
    return image


def heatmap_figure(panels: list[tuple], top: float = 1.0):
    """Heatmaps of depth (rows) x context length (columns) grids: panels are (title, grid, colormap,
    lowest value), drawn two to a row, each sized to its cells, titles wrapped, one colour bar per
    colormap; `top` is the highest value."""
    if not panels:
        return None
    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    shape = panels[0][1].shape
    size = (max(4.2, 0.6 * shape[1] + 2.4), 0.32 * shape[0] + 2.0)
    fig, axes = pyplot().subplots(rows, cols, figsize=(size[0] * cols + 1.2, size[1] * rows), squeeze=False,
                                  layout="constrained")
    images: dict[str, tuple] = {}
    for ax, (title, grid, cmap, low) in zip(axes.flat, panels):
        image = _heatmap(ax, grid, textwrap.fill(title, 44), cmap, low, top)
        images.setdefault(cmap, (image, []))[1].append(ax)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    for image, where in images.values():
        fig.colorbar(image, ax=where, shrink=0.8)
    return fig


# ---- training ------------------------------------------------------------------------------------

def train_figure(frame: pd.DataFrame, smooth: int = 20):
    """Loss (raw faint, moving average solid, held-out dotted markers) against step and against
    training seconds, and held-out retrieval accuracy against step, for each (source, attention).
    One source: red NSA, blue full; several: one colour per source, NSA solid and full dashed."""
    frame = ok_rows(frame)
    if frame.empty or "loss" not in frame:
        return None
    frame = frame.assign(source=frame["source"] if "source" in frame else "run")
    fig, axes = pyplot().subplots(1, 3, figsize=(16, 5.0), layout="constrained")
    sources = list(dict.fromkeys(frame["source"]))
    for (source, attention), g in frame.groupby(["source", "attention"], sort=False):
        g = g.sort_values("step")
        color = COLORS.get(str(attention)) if len(sources) == 1 else f"C{sources.index(source) % 10}"
        dashes, marker = ("-", "o") if attention == "nsa" or len(sources) == 1 else ("--", "s")
        label = f"{attention}" if len(sources) == 1 else f"{attention} ({source})"
        if "tokens_per_s" in g and g["tokens_per_s"].notna().any():
            label += f", {g['tokens_per_s'].median():,.0f} tok/s"
        smoothed = g["loss"].rolling(max(1, min(smooth, len(g) // 10)), min_periods=1).mean()
        held = g[g["val_loss"].notna()] if "val_loss" in g else g.iloc[0:0]
        for ax, x in ((axes[0], "step"), (axes[1], "wall_s")):
            if x not in g:
                continue
            ax.plot(g[x], g["loss"], color=color, alpha=0.15, lw=0.8)
            ax.plot(g[x], smoothed, dashes, color=color, lw=1.6, label=f"{label} train" if ax is axes[0] else None)
            if len(held):
                ax.plot(held[x], held["val_loss"], marker + ":", color=color, ms=4, lw=1,
                        label=f"{label} held-out" if ax is axes[0] else None)
        if "val_answer_acc" in g and g["val_answer_acc"].notna().any():
            ev = g[g["val_answer_acc"].notna()]
            axes[2].plot(ev["step"], ev["val_answer_acc"], marker + dashes, color=color, ms=4, lw=1)
    axes[0].set(xlabel="step", ylabel="loss (nats/token)", title="loss against step")
    axes[1].set(xlabel="training time (s)", ylabel="loss (nats/token)", title="loss against time")
    axes[2].set(xlabel="step", ylabel="accuracy", title="held-out retrieval answers", ylim=(-0.02, 1.02))
    if not axes[2].get_lines():
        axes[2].text(0.5, 0.5, "no held-out retrieval answers", ha="center", va="center",
                     transform=axes[2].transAxes, color="gray")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncol=min(4, len(axes[0].get_lines())), fontsize=7, frameon=False)
    if len(sources) == 1:
        meta = frame.iloc[0]
        gpu = meta.get("gpu")
        where = gpu if isinstance(gpu, str) and gpu.lower() not in ("none", "nan", "") else "CPU"
        ctx, batch = (_key_text(meta.get(k)) for k in ("ctx_len", "batch"))  # 16.0 (a column with gaps) -> 16
        fig.suptitle(f"{meta.get('model', '')} model, context {ctx}, batch {batch}, {where}")
    return fig
