"""The training plot: NSA against full attention, loss against step and against training time."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

COLORS = {"nsa": "tab:red", "full": "tab:blue"}


def plot_training(csv: str | Path, png: str | Path, smooth: int = 20) -> Path:
    """Write a PNG from a train CSV: loss (raw, faint; moving average, solid; held-out, dots) against
    step and against seconds of training, plus step time. Returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.read_csv(csv)
    df = df[df["status"] == "ok"] if "status" in df else df
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for attention, g in df.groupby("attention", sort=False):
        g = g.sort_values("step")
        color = COLORS.get(attention, None)
        label = f"{attention} ({g['step_s'].median():.3f} s/step, {g['tokens_per_s'].median():,.0f} tok/s)"
        smoothed = g["loss"].rolling(max(1, min(smooth, len(g) // 10)), min_periods=1).mean()
        for ax, x in ((axes[0], "step"), (axes[1], "wall_s")):
            ax.plot(g[x], g["loss"], color=color, alpha=0.2, lw=0.8)
            ax.plot(g[x], smoothed, color=color, lw=1.8, label=label if ax is axes[0] else attention)
            if "val_loss" in g and g["val_loss"].notna().any():
                ev = g[g["val_loss"].notna()]
                ax.plot(ev[x], ev["val_loss"], "o--", color=color, ms=4, lw=1, label=f"{attention} held-out")
        axes[2].plot(g["step"], g["step_s"], color=color, lw=1, label=attention)
    meta = df.iloc[0] if len(df) else {}
    title = f"{meta.get('model', '')} model, context {meta.get('ctx_len', '')}, batch {meta.get('batch', '')}"
    gpu = meta.get("gpu")
    title += f", {gpu}" if isinstance(gpu, str) and gpu.lower() != "none" else ", CPU"
    axes[0].set(xlabel="step", ylabel="train loss (nats/token)", title="loss vs step")
    axes[1].set(xlabel="training time (s)", ylabel="train loss (nats/token)", title="loss vs time")
    axes[2].set(xlabel="step", ylabel="seconds per step", title="step time")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png
