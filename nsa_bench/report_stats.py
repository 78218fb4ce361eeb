"""The report's intervals and NSA-minus-full rows: score cells with their 95% interval, paired cells
with interval and p-value, and the needle's pooled NSA-minus-full table and figure."""

from __future__ import annotations

import math

import pandas as pd

from nsa_bench.paired import PAIRED

INTERVAL_NOTE = "[low, high] is the 95% interval (Wilson for right/wrong scores, bootstrap otherwise)."
PAIRED_NOTE = ("NSA − full is paired on the same examples: the mean difference, its 95% interval (Newcombe's "
               "for right/wrong scores, paired bootstrap otherwise) and the p-value of exact McNemar (right/wrong) "
               "or a sign-flip permutation test.")


def split_paired(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows of one attention each, the `nsa-full` rows)."""
    paired = frame["attention"].astype(str) == PAIRED
    return frame[~paired], frame[paired]


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _spec(scale: float, signed: bool = False) -> str:
    return ("+" if signed else "") + (".1f" if scale == 100 else ".3g")


def score_cell(row, scale: float) -> str | None:
    """`83.0 [71.0, 91.0]` when the row has an interval, else None."""
    value, low, high = (_num(row.get(c)) * scale for c in ("score", "ci_low", "ci_high"))
    if math.isnan(low) or math.isnan(high):
        return None
    spec = _spec(scale)
    return f"{value:{spec}} [{low:{spec}}, {high:{spec}}]"


def paired_cell(row, scale: float) -> str:
    """`-5.0 [-12.0, +2.0] p=0.21` of an `nsa-full` row."""
    value, low, high = (_num(row.get(c)) * scale for c in ("score", "ci_low", "ci_high"))
    if math.isnan(value):
        return ""
    spec = _spec(scale, signed=True)
    text = f"{value:{spec}}" + ("" if math.isnan(low) else f" [{low:{spec}}, {high:{spec}}]")
    p_value = _num(row.get("p_value"))
    return text + ("" if math.isnan(p_value) else f" p={p_value:.2g}")


def pooled_needle_rows(paired: pd.DataFrame) -> pd.DataFrame:
    """The needle's `nsa-full` rows pooled over depths (one per task, metric and length)."""
    if paired.empty or "pooled_over" not in paired:
        return paired.iloc[0:0]
    pooled = paired[paired["pooled_over"].astype(str) == "depth"]
    return pooled.drop_duplicates(["task", "metric", "model", "ctx_len"], keep="last").sort_values(
        ["task", "metric", "ctx_len"])


def needle_paired_section(figs, paired: pd.DataFrame) -> str:
    """Table (and figure of exact match) of NSA minus full per length, pooled over depths and trials."""
    from nsa_bench.report import _length, md_table

    pooled = pooled_needle_rows(paired)
    if pooled.empty:
        return ""
    rows = [[r["task"], r["metric"], r["model"], _length(r["ctx_len"]), f"{_num(r['n']):.0f}", paired_cell(r, 100),
             r.get("test", "")] for r in pooled.to_dict(orient="records")]
    parts = ["### NSA − full, pooled over depths and trials\n",
             "Each (depth, trial) is one paired example: both attentions answered the same seeded value "
             "in the same haystack. Scores x100. " + PAIRED_NOTE + "\n",
             md_table(["task", "metric", "model", "length", "pairs", "NSA − full [95% CI]", "test"], rows) + "\n"]
    exact = pooled[pooled["metric"] == "exact_match"]
    if len(exact):
        fig, ax = figs.plt.subplots(figsize=(6.5, 3.8))
        for (task, model), g in exact.groupby(["task", "model"], sort=False):
            x, y = g["ctx_len"].astype(float), 100 * g["score"].astype(float)
            low, high = 100 * g["ci_low"].astype(float), 100 * g["ci_high"].astype(float)
            ax.errorbar(x, y, yerr=[y - low, high - y], fmt="-o", ms=4, capsize=3,
                        label=f"{task}" if exact["model"].nunique() == 1 else f"{task} ({model})")
            for at, value, p_value in zip(x, y, g["p_value"].astype(float)):
                ax.annotate(f"p={p_value:.2g}", (at, value), textcoords="offset points", xytext=(6, 4), fontsize=7)
        ax.axhline(0, color="gray", lw=0.8)
        lengths = sorted(exact["ctx_len"].astype(int).unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(lengths, [_length(t) for t in lengths])
        ax.minorticks_off()
        ax.margins(x=0.12)
        ax.set(xlabel="context length", ylabel="NSA − full, exact match (points)",
               title="NSA − full over all depths and trials (95% CI)", ylim=(-105, 105))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        parts.append(figs.save(fig, "needle_nsa_minus_full") + "\n")
    return "\n".join(parts)
