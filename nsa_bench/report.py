"""`nsa-bench report`: one markdown report, with PNG plots beside it, from any mix of result CSVs.

Sections follow the kinds of rows found (docs/RESULTS_SCHEMA.md); a kind that is absent skips its
section: the runs' metadata, kernel speedups against length with their ceilings, the NSA stages,
decode bandwidth, needle heatmaps, LongBench and lm-eval tables (NSA and full side by side) and
training curves.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from nsa_bench.errors import UsageError
from nsa_bench.gate import is_ok, normalize_kernel_row, row_kind
from nsa_bench.report_stats import INTERVAL_NOTE, PAIRED_NOTE, needle_paired_section, paired_cell, score_cell, split_paired

META_COLUMNS = ("gpu", "gpu_capability", "driver", "cuda", "torch", "triton", "flash_attn", "fa2_baseline",
                "cudnn_attention", "transformers", "lm_eval", "git_rev")
SETUP_COLUMNS = ("gpu", "dtype", "q_heads", "kv_heads", "dk", "dv", "nsa_config")  # one kernel figure set each
MODES = ("fwd", "bwd", "decode")
BASELINES = ("fa2", "cudnn")
NUMERIC = ("seq_len", "batch", "q_heads", "kv_heads", "dk", "dv", "ms", "ms_p20", "ms_p80", "tflops", "gbps",
           "speedup_fa2", "speedup_cudnn", "ceiling", "efficiency", "copy_gbps", "score", "stderr", "ci_low", "ci_high",
           "p_value", "n", "ctx_len",
           "depth", "step", "loss", "val_loss", "val_answer_acc", "tokens_per_s", "wall_s", "params")
ATTENTION_ORDER = ("nsa", "full")
COLORS = {"nsa": "tab:red", "full": "tab:blue", "fa2": "tab:blue", "cudnn": "tab:green", "ref": "tab:gray"}


# ---- input ---------------------------------------------------------------------------------------

def load_results(paths: list[str | Path]) -> pd.DataFrame:
    """All rows of the given CSVs (folders: their *.csv), with `source` (file name) and `row_kind`."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(path.glob("*.csv"))
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"{path} does not exist")
    if not files:
        raise UsageError("no result CSVs given (folders hold no *.csv)")
    frames = []
    for file in files:
        try:
            frame = pd.read_csv(file, dtype=str)  # text as written (driver 570.10 stays 570.10)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
            raise UsageError(f"{file} is not a result CSV: {str(error).splitlines()[0] if str(error) else error}") from None
        frame["source"] = file.name
        frame["row_kind"] = [row_kind(r) for r in frame.to_dict(orient="records")]
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True, sort=False)
    for column in ("status", "impl", "mode", "suite", "task", "attention", "model", "metric", *NUMERIC):
        if column not in data:  # a column no file has: empty, so that every section can read it
            data[column] = math.nan
    for column in NUMERIC:
        data[column] = pd.to_numeric(data[column], errors="coerce")
    if not data["row_kind"].isin(["kernel", "quality", "train"]).any():
        raise UsageError("none of the CSVs holds kernel, quality or train rows (docs/RESULTS_SCHEMA.md)")
    return data


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"].map(is_ok)] if "status" in frame else frame


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _fmt(value, spec: str = ".3g", suffix: str = "") -> str:
    number = _num(value)
    return "" if math.isnan(number) else f"{number:{spec}}{suffix}"


def _length(value) -> str:
    n = int(value)
    return f"{n // 1024}k" if n % 1024 == 0 and n >= 1024 else str(n)


def md_table(headers: list[str], rows: list[list]) -> str:
    """A markdown table; `|` inside cells is escaped."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class _Figures:
    """Saves figures as PNGs beside the markdown, named <stem>_<name>.png."""

    def __init__(self, out: Path):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.plt = plt
        self.dir, self.stem = out.parent, out.stem
        self.suffix = ""  # e.g. '_cpu': the figures of one machine's section
        self.written: list[Path] = []

    def save(self, fig, name: str) -> str:
        path = self.dir / f"{self.stem}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name + self.suffix)}.png"
        if fig.get_layout_engine() is None:
            fig.tight_layout()
        fig.savefig(path, dpi=110)
        self.plt.close(fig)
        self.written.append(path)
        return f"![{name}]({path.name})"


# ---- runs ----------------------------------------------------------------------------------------

def runs_section(data: pd.DataFrame) -> str:
    """One line per source file and machine/revision: what produced the rows."""
    columns = [c for c in META_COLUMNS if c in data]
    rows = []
    for keys, group in data.groupby(["source", *columns], dropna=False, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        kinds = sorted({f"quality: {r.get('suite')}" if r["row_kind"] == "quality" else str(r["row_kind"])
                        for r in group.to_dict(orient="records") if r["row_kind"]})
        stamps = sorted(group["timestamp"].dropna().astype(str)) if "timestamp" in group else []
        when = "" if not stamps else stamps[0] if stamps[0] == stamps[-1] else f"{stamps[0]} .. {stamps[-1]}"
        rows.append([f"`{keys[0]}`", len(group), ", ".join(kinds)] + [_cell(v) for v in keys[1:]] + [when])
    return "## Runs\n\n" + md_table(["file", "rows", "kinds", *columns, "timestamp"], rows) + "\n"


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ---- kernels -------------------------------------------------------------------------------------

def _setups(kernel: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    columns = [c for c in SETUP_COLUMNS if c in kernel]
    out = []
    for keys, group in kernel.groupby(["source", *columns], dropna=False, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        label = ", ".join([f"`{keys[0]}`"] + [f"{c} {_cell(v)}" for c, v in zip(columns, keys[1:]) if _cell(v)])
        out.append((label, group))
    return out


def _series(group: pd.DataFrame, mode: str, impl: str, column: str) -> pd.DataFrame:
    rows = _ok(group[(group["mode"] == mode) & (group["impl"] == impl)])
    rows = rows[[c for c in ("seq_len", column) if c in rows]].dropna()
    return rows.groupby("seq_len", as_index=False)[column].median().sort_values("seq_len") if column in rows else rows


def _main_impls(group: pd.DataFrame) -> list[str]:
    """NSA (and its :cuda_graph variant) and the reference: the rows whose speedups the plot shows."""
    impls = [str(i) for i in group["impl"].dropna().unique()]
    return [i for i in impls if i in ("nsa", "ref") or i == "nsa:cuda_graph"]


def _stage_impls(group: pd.DataFrame, mode: str) -> list[str]:
    impls = group.loc[group["mode"] == mode, "impl"].dropna().astype(str)
    return list(dict.fromkeys(i for i in impls if i.startswith("nsa:") and i not in ("nsa:stages", "nsa:cuda_graph")))


def _log2_x(ax, lengths) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths)
    ax.set_xticklabels([_length(t) for t in lengths])
    ax.minorticks_off()


def speedup_figure(figs: _Figures, group: pd.DataFrame, name: str) -> str:
    """Speedup over FA2 (solid) and cuDNN (dashed) against length, per mode, with the ceiling."""
    modes = [m for m in MODES if (group["mode"] == m).any()]
    fig, axes = figs.plt.subplots(1, len(modes), figsize=(5.2 * len(modes), 4), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        lengths = sorted(group.loc[group["mode"] == mode, "seq_len"].dropna().astype(int).unique())
        for impl in _main_impls(group):
            color = "tab:purple" if impl.endswith(":cuda_graph") else COLORS.get(impl, None)
            for metric, style, base in (("speedup_fa2", "-o", "FA2"), ("speedup_cudnn", "--s", "cuDNN")):
                s = _series(group, mode, impl, metric)
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
        ax.legend(fontsize=7)
    return figs.save(fig, name)


def speedup_table(group: pd.DataFrame) -> str:
    rows = []
    for mode in MODES:
        for impl in _main_impls(group):
            for _, r in group[(group["mode"] == mode) & (group["impl"] == impl)].sort_values("seq_len").iterrows():
                variant = ":cuda_graph" if impl.endswith(":cuda_graph") else ""
                base = {b: group[(group["mode"] == mode) & (group["impl"] == b + variant)
                                 & (group["seq_len"] == r["seq_len"])] for b in BASELINES}
                base_ms = {b: _fmt(_ok(f)["ms"].median()) if len(_ok(f)) else "" for b, f in base.items()}
                status = str(r.get("status", "ok"))
                rows.append([mode, _length(r["seq_len"]), impl, "ok" if is_ok(status) else status,
                             _fmt(r.get("ms")), base_ms["fa2"], base_ms["cudnn"],
                             _fmt(r.get("speedup_fa2"), ".2f", "x"), _fmt(r.get("speedup_cudnn"), ".2f", "x"),
                             _fmt(r.get("ceiling"), ".2f", "x"), _fmt(r.get("efficiency"), ".0%")])
    headers = ["mode", "T", "impl", "status", "ms", "FA2 ms", "cuDNN ms", "x FA2", "x cuDNN", "ceiling", "efficiency"]
    return md_table(headers, rows)


def stage_figure(figs: _Figures, group: pd.DataFrame, name: str) -> str | None:
    """Stacked time of the NSA stages per length (fwd, bwd), beside NSA's whole call and FA2."""
    modes = [m for m in ("fwd", "bwd") if _stage_impls(group, m)]
    if not modes:
        return None
    fig, axes = figs.plt.subplots(1, len(modes), figsize=(7.2 * len(modes), 4.2), squeeze=False, layout="constrained")
    cmap = figs.plt.get_cmap("tab10")
    for ax, mode in zip(axes[0], modes):
        stages = _stage_impls(group, mode)
        lengths = sorted(group.loc[group["mode"] == mode, "seq_len"].dropna().astype(int).unique())
        x = range(len(lengths))
        bottom = [0.0] * len(lengths)
        for i, stage in enumerate(stages):
            s = _series(group, mode, stage, "ms").set_index("seq_len")["ms"] if len(_series(group, mode, stage, "ms")) else {}
            heights = [_num(s.get(t, math.nan)) if len(s) else math.nan for t in lengths]
            heights = [0.0 if math.isnan(h) else h for h in heights]
            ax.bar(x, heights, 0.6, bottom=bottom, color=cmap(i % 10), label=stage.partition(":")[2])
            bottom = [b + h for b, h in zip(bottom, heights)]
        for impl, marker in (("nsa", "k_"), ("fa2", "b_")):
            s = _series(group, mode, impl, "ms")
            if len(s):
                by_len = dict(zip(s["seq_len"].astype(int), s["ms"]))
                ax.plot(list(x), [by_len.get(t, math.nan) for t in lengths], marker, ms=28, mew=2,
                        label=f"{impl} (whole call)")
        ax.set_xticks(list(x))
        ax.set_xticklabels([_length(t) for t in lengths])
        ax.set(title=f"NSA {mode} by stage", xlabel="sequence length", ylabel="ms")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, markerscale=0.35)  # beside the bars
    return figs.save(fig, name)


def stage_table(group: pd.DataFrame) -> str:
    rows = []
    for mode in ("fwd", "bwd"):
        for t in sorted(group.loc[group["mode"] == mode, "seq_len"].dropna().astype(int).unique()):
            whole = _ok(group[(group["mode"] == mode) & (group["impl"] == "nsa") & (group["seq_len"] == t)])["ms"].median()
            for stage in _stage_impls(group, mode):
                r = group[(group["mode"] == mode) & (group["impl"] == stage) & (group["seq_len"] == t)]
                if r.empty:
                    continue
                r = r.iloc[-1]
                ok = is_ok(str(r.get("status", "ok")))
                share = _num(r.get("ms")) / whole if ok and whole and not math.isnan(whole) else math.nan
                rows.append([mode, _length(t), stage.partition(":")[2], "ok" if ok else r.get("status"),
                             _fmt(r.get("ms")), _fmt(share, ".0%"), _fmt(r.get("tflops"), ".1f")])
    return md_table(["mode", "T", "stage", "status", "ms", "share of NSA call", "TFLOP/s"], rows)


def decode_figure(figs: _Figures, group: pd.DataFrame, name: str) -> str | None:
    """Achieved GB/s of a decode step against length, with the device's copy bandwidth."""
    impls = [str(i) for i in group.loc[group["mode"] == "decode", "impl"].dropna().unique()]
    series = {i: _series(group, "decode", i, "gbps") for i in impls}
    series = {i: s for i, s in series.items() if len(s)}
    if not series:
        return None
    fig, ax = figs.plt.subplots(figsize=(6.5, 4.2))
    for impl, s in series.items():
        base = impl.partition(":")[0]
        ax.plot(s["seq_len"], s["gbps"], "--o" if impl.endswith(":cuda_graph") else "-o",
                color=COLORS.get(base), ms=4, label=impl)
    copy = group["copy_gbps"].dropna() if "copy_gbps" in group else pd.Series(dtype=float)
    if len(copy):
        ax.axhline(copy.median(), color="black", ls=":", label=f"device copy {copy.median():,.0f} GB/s")
    _log2_x(ax, sorted({int(t) for s in series.values() for t in s["seq_len"]}))
    ax.set(title="decode step: achieved bandwidth", xlabel="context length", ylabel="GB/s (counted bytes / time)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return figs.save(fig, name)


def kernel_section(figs: _Figures, kernel: pd.DataFrame) -> str:
    parts = ["## Kernels\n",
             "Speedup = baseline ms / NSA ms in the same run, same mode and length; the ceiling is the "
             "speedup at equal efficiency (FLOP ratio for fwd/bwd, byte ratio for decode); efficiency = "
             "speedup over FA2 / ceiling.\n"]
    setups = _setups(kernel)
    for index, (label, group) in enumerate(setups, 1):
        tag = f"kernels{index}" if len(setups) > 1 else "kernels"
        if len(setups) > 1:
            parts.append(f"### Setup {index}: {label}\n")
        else:
            parts.append(f"Setup: {label}\n")
        timing = group["timing"].dropna().astype(str).unique() if "timing" in group else []
        if any("interpreter" in t for t in timing):
            parts.append("> Triton interpreter smoke run on the CPU: timings show the pipeline works, not performance.\n")
        parts += ["#### Speedup against length\n", speedup_figure(figs, group, f"{tag}_speedup") + "\n",
                  speedup_table(group) + "\n"]
        stages = stage_figure(figs, group, f"{tag}_stages")
        if stages:
            parts += ["#### NSA stages\n", "Each stage timed on its own (`nsa:<stage>` rows); the bars stack "
                      "their medians, the markers are NSA's whole call and FA2.\n", stages + "\n",
                      stage_table(group) + "\n"]
        decode = decode_figure(figs, group, f"{tag}_decode_gbps")
        if decode:
            parts += ["#### Decode bandwidth\n", decode + "\n"]
    return "\n".join(parts)


# ---- quality: side by side -----------------------------------------------------------------------

def _columns_by_attention(frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(attention, model, header) of each score column: attention alone when it has one model."""
    pairs = frame[["attention", "model"]].astype(str).drop_duplicates().values.tolist()
    order = {a: i for i, a in enumerate(ATTENTION_ORDER)}
    pairs.sort(key=lambda p: (order.get(p[0], len(order)), p[0], p[1]))
    per_attention = {a: sum(p[0] == a for p in pairs) for a, _ in pairs}
    label = lambda a: "NSA" if a == "nsa" else a  # noqa: E731
    return [(a, m, label(a) if per_attention[a] == 1 else f"{label(a)} ({m})") for a, m in pairs]


def distinct_models(frame: pd.DataFrame) -> pd.DataFrame:
    """Quality rows whose model names tell runs apart: a model that has rows of one suite in several
    files (e.g. the same checkpoint path, trained twice) gets its file name added."""
    shared = frame.groupby(["suite", "attention", "model"], dropna=False)["source"].transform("nunique") > 1
    if not shared.any():
        return frame
    frame = frame.copy()
    frame["model"] = frame["model"].astype(str).where(~shared, frame["model"].astype(str) + " (" + frame["source"] + ")")
    return frame


def _scale(frame: pd.DataFrame) -> float:
    """x100 for scores that are fractions in [0, 1]."""
    scores = frame["score"].dropna()
    return 100.0 if len(scores) and scores.between(0, 1).all() else 1.0


def side_by_side(frame: pd.DataFrame, index: list[str]) -> str:
    """A table of scores: one row per `index` value, one column per attention (and model), and
    NSA minus full where both are there once or `nsa-full` rows give it. Scores in [0, 1] are shown
    x100, with their 95% interval where the rows have one, else ± stderr."""
    frame, paired = split_paired(frame)
    columns = _columns_by_attention(frame)
    scale = _scale(frame)
    one_each = [c for c in columns if c[0] == "nsa"][:2] + [c for c in columns if c[0] == "full"][:2]
    delta = (len(one_each) == 2 and one_each[0][0] == "nsa" and one_each[1][0] == "full") or not paired.empty
    paired_by_key = {tuple(_cell(v) for v in k): r for k, r in zip(
        paired[index].itertuples(index=False, name=None), paired.to_dict(orient="records"))}
    rows, intervals = [], 0
    for keys, group in frame.groupby(index, sort=False, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        cells, values = [], {}
        hits = {(a, m): group[(group["attention"].astype(str) == a) & (group["model"].astype(str) == m)]
                for a, m, _ in columns}
        last = {c: hit.iloc[-1] for c, hit in hits.items() if not hit.empty}
        counts = {_fmt(r.get("n"), ".0f") for r in last.values()}
        n = counts.pop() if len(counts) == 1 else None  # runs of other counts: each cell says its own
        for attention, model, _ in columns:
            r = last.get((attention, model))
            if r is None:
                cells.append("")
                continue
            if not is_ok(str(r.get("status", "ok"))):
                cells.append(str(r.get("status")))
                continue
            value = _num(r.get("score")) * scale
            values[attention] = value
            err = _num(r.get("stderr")) * scale
            with_interval = score_cell(r, scale)
            intervals += with_interval is not None
            cells.append((with_interval or _fmt(value, ".1f" if scale == 100 else ".4g") + (
                "" if math.isnan(err) else f" ± {err:.1f}" if scale == 100 else f" ± {err:.2g}"))
                + ("" if n is not None else f" (n={_fmt(r.get('n'), '.0f')})"))
        diff = values.get("nsa", math.nan) - values.get("full", math.nan)
        pair = paired_by_key.get(tuple(_cell(k) for k in keys))
        diff_text = paired_cell(pair, scale) if pair is not None else _fmt(diff, "+.1f" if scale == 100 else "+.3g")
        rows.append([_cell(k) for k in keys] + [n or ""] + cells + ([diff_text] if delta else []))
    headers = index + ["n"] + [h for _, _, h in columns] + (["NSA − full"] if delta else [])
    notes = (["Scores x100."] if scale == 100 else []) + (
        ["± is the standard error over examples."] if any("±" in c for r in rows for c in r) else []) + (
        [INTERVAL_NOTE] if intervals else []) + (
        [PAIRED_NOTE] if paired_by_key else [])
    return md_table(headers, rows) + ("\n\n" + " ".join(notes) if notes else "")


def longbench_section(frame: pd.DataFrame) -> str:
    parts = ["## LongBench\n"]
    buckets = frame["length_bucket"].astype(str) if "length_bucket" in frame else pd.Series("all", index=frame.index)
    overall = frame[buckets.isin(["all", "nan"])]
    order = sorted(overall["task"].astype(str).unique(), key=lambda t: (t.startswith("average"), t))
    overall = overall.assign(task=pd.Categorical(overall["task"].astype(str), order, ordered=True)).sort_values("task")
    parts.append(side_by_side(overall, ["task", "metric"]) + "\n")
    by_length = frame[~buckets.isin(["all", "nan"])]
    if len(by_length):
        parts += ["### By length (LongBench-E buckets)\n",
                  side_by_side(by_length.sort_values(["task", "length_bucket"]), ["task", "length_bucket", "metric"]) + "\n"]
    return "\n".join(parts)


def lmeval_section(frame: pd.DataFrame) -> str:
    subjects = frame["task"].astype(str).str.startswith("mmlu_")
    parts = ["## lm-eval\n", side_by_side(frame[~subjects], ["task", "metric"]) + "\n"]
    if subjects.any():
        parts += ["<details><summary>MMLU subjects</summary>\n",
                  side_by_side(frame[subjects].sort_values("task"), ["task", "metric"]) + "\n", "</details>\n"]
    return "\n".join(parts)


def other_suite_section(suite: str, frame: pd.DataFrame) -> str:
    index = [c for c in ("task", "metric") if c in frame]
    return f"## {suite}\n\n" + side_by_side(frame, index) + "\n"


# ---- needle --------------------------------------------------------------------------------------

def _grid(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean score per depth (rows) x context length (columns); cells that did not run are NaN."""
    grid = _ok(frame).pivot_table(index="depth", columns="ctx_len", values="score", aggfunc="mean")
    lengths = sorted(frame["ctx_len"].dropna().unique())
    depths = sorted(frame["depth"].dropna().unique())
    return grid.reindex(index=depths, columns=lengths)


def _heatmap(ax, grid: pd.DataFrame, title: str, cmap: str, vmin: float, vmax: float):
    image = ax.imshow(grid.values.astype(float), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", origin="upper")
    ax.set_xticks(range(grid.shape[1]))
    ax.set_xticklabels([_length(c) for c in grid.columns])
    ax.set_yticks(range(grid.shape[0]))
    ax.set_yticklabels([f"{d:.0%}" for d in grid.index])
    ax.set_title(title, fontsize=9)
    ax.set(xlabel="context length", ylabel="needle depth")
    for (i, j), value in pd.DataFrame(grid.values).stack().items():
        if not math.isnan(value):
            level = (value - vmin) / ((vmax - vmin) or 1)  # dark cells (low viridis, RdBu ends) get white text
            dark = abs(level - 0.5) > 0.35 if cmap == "RdBu" else level < 0.55
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
    return image


def heatmap_figure(figs: _Figures, panels: list[tuple], top: float):
    """Heatmaps (title, grid, colormap, lowest value) two to a row, each sized to its cells, titles
    wrapped, one colour bar per colormap."""
    import textwrap

    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    shape = panels[0][1].shape
    size = (max(4.2, 0.6 * shape[1] + 2.4), 0.32 * shape[0] + 2.0)
    fig, axes = figs.plt.subplots(rows, cols, figsize=(size[0] * cols + 1.2, size[1] * rows), squeeze=False,
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


def needle_section(figs: _Figures, frame: pd.DataFrame) -> str:
    frame, paired = split_paired(frame)
    parts = ["## Needle in a haystack\n"]
    for (task, metric), group in frame.groupby(["task", "metric"], sort=False):
        if metric != "exact_match" and (frame.loc[frame["task"] == task, "metric"] == "exact_match").any():
            continue  # one heatmap per task: exact match where the run has it (tables list the rest)
        columns = _columns_by_attention(group)
        whole = _grid(group)  # every panel on the same axes, whatever lengths its run has
        grids = {(a, m): _grid(group[(group["attention"].astype(str) == a) & (group["model"].astype(str) == m)])
                 .reindex(index=whole.index, columns=whole.columns) for a, m, _ in columns}
        nsa = [k for k in grids if k[0] == "nsa"]
        full = [k for k in grids if k[0] == "full"]
        diff = grids[nsa[0]] - grids[full[0]] if len(nsa) == 1 and len(full) == 1 else None
        scores = group["score"].dropna()
        top = 1.0 if scores.between(0, 1).all() else float(scores.max() or 1)
        panels = [(f"{header}: {metric}", grid, "viridis", 0.0) for (_, _, header), grid in zip(columns, grids.values())]
        panels += [] if diff is None else [("NSA − full", diff, "RdBu", -top)]
        parts.append(f"### {task} ({metric})\n")
        parts.append(figs.save(heatmap_figure(figs, panels, top), f"needle_{task}_{metric}") + "\n")
        rows = []
        lengths = list(_grid(group).columns)  # every run's lengths: a run without one leaves its cell empty
        for a, m, header in columns:
            g = group[(group["attention"].astype(str) == a) & (group["model"].astype(str) == m)]
            cells = _grid(g).reindex(columns=lengths)
            not_ok = len(g) - len(_ok(g))
            rows.append([header, m, _fmt(cells.stack().mean(), ".3f"), int(cells.notna().sum().sum()), not_ok]
                        + [_fmt(cells[c].mean(), ".2f") for c in lengths])
        parts.append(md_table(["attention", "model", "mean", "cells", "cells not ok", *[_length(t) for t in lengths]],
                              rows) + "\n")
    summary = frame.groupby(["task", "metric"], sort=False)
    if summary.ngroups > 1:
        parts += ["### All metrics (mean over cells)\n", side_by_side(
            _ok(frame).groupby(["task", "metric", "attention", "model"], as_index=False, sort=False)
            .agg(score=("score", "mean"), n=("score", "size")), ["task", "metric"]) + "\n"]
    parts.append(needle_paired_section(figs, paired))
    return "\n".join(parts)


# ---- training ------------------------------------------------------------------------------------

def train_section(figs: _Figures, frame: pd.DataFrame) -> str:
    """Loss against step (raw faint, smoothed, held-out dots) and the final row of each model."""
    frame = _ok(frame)
    if frame.empty or "loss" not in frame:
        return ""
    fig, axes = figs.plt.subplots(1, 2, figsize=(12, 5.2), layout="constrained")
    rows = []
    sources = list(dict.fromkeys(frame["source"]))
    for (source, attention), g in frame.groupby(["source", "attention"], sort=False):
        g = g.sort_values("step")
        # one run: red NSA, blue full; several: one colour per run, NSA solid and full dashed
        color = COLORS.get(str(attention)) if len(sources) == 1 else f"C{sources.index(source) % 10}"
        dashes, marker = ("-", "o") if attention == "nsa" or len(sources) == 1 else ("--", "s")
        label = f"{attention}" if len(sources) == 1 else f"{attention} ({source})"
        smooth = g["loss"].rolling(max(1, len(g) // 20), min_periods=1).mean()
        axes[0].plot(g["step"], g["loss"], color=color, alpha=0.15, lw=0.8)
        axes[0].plot(g["step"], smooth, dashes, color=color, lw=1.6, label=f"{label} train")
        if "val_loss" in g and g["val_loss"].notna().any():
            ev = g[g["val_loss"].notna()]
            axes[0].plot(ev["step"], ev["val_loss"], marker + ":", color=color, ms=4, lw=1, label=f"{label} held-out")
        if "val_answer_acc" in g and g["val_answer_acc"].notna().any():
            ev = g[g["val_answer_acc"].notna()]
            axes[1].plot(ev["step"], ev["val_answer_acc"], marker + dashes, color=color, ms=4, lw=1)
        last = g.iloc[-1]
        evals = g[g["val_loss"].notna()] if "val_loss" in g else g.iloc[0:0]
        final_eval = evals.iloc[-1] if len(evals) else {}
        rows.append([label, _fmt(last.get("step"), ".0f"), _fmt(last.get("params"), ".3g"),
                     _fmt(last.get("loss"), ".4f"), _fmt(final_eval.get("val_loss") if len(evals) else None, ".4f"),
                     _fmt(final_eval.get("val_answer_acc") if len(evals) else None, ".2f"),
                     _fmt(g["tokens_per_s"].median() if "tokens_per_s" in g else None, ",.0f"),
                     _fmt(last.get("wall_s"), ".0f")])
    axes[0].set(xlabel="step", ylabel="loss (nats/token)", title="training loss")
    axes[1].set(xlabel="step", ylabel="accuracy", title="held-out retrieval answers", ylim=(-0.02, 1.02))
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncol=min(4, len(axes[0].get_lines())), fontsize=7, frameon=False)
    image = figs.save(fig, "train")
    meta = frame.iloc[0]
    setup = ", ".join(f"{c} {_cell(meta.get(c))}" for c in ("model", "ctx_len", "batch") if _cell(meta.get(c)))
    return "\n".join(["## Training\n", f"Setup: {setup}\n" if setup else "", image + "\n",
                      md_table(["run", "steps", "params", "final loss", "held-out loss", "retrieval acc",
                                "tokens/s (median)", "train s"], rows) + "\n"])


# ---- the report ----------------------------------------------------------------------------------

def build_report(paths: list[str | Path], out: str | Path = "runs/report/report.md", title: str = "nsa-bench report") -> Path:
    """Write the markdown report and its PNGs; returns the markdown's path."""
    data = load_results(paths)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figs = _Figures(out)
    sources = ", ".join(f"`{s}`" for s in data["source"].unique())
    sections = [f"# {title}\n", f"From {sources}.\n", runs_section(data)]
    kernel = data[data["row_kind"] == "kernel"]
    if len(kernel):
        kernel = pd.DataFrame([normalize_kernel_row(r) for r in kernel.to_dict(orient="records")])
        kernel = kernel[kernel["seq_len"].notna()]
        sections.append(kernel_section(figs, kernel))
    rows = data[data["row_kind"].isin(["quality", "train"])]
    machines = machine_of(rows)
    for machine, part in sorted(rows.groupby(machines, sort=False), key=lambda item: item[0] == "CPU"):
        figs.suffix = "" if machines.nunique() == 1 else "_" + re.sub(r"[^a-z0-9]+", "_", machine.lower()).strip("_")
        where = "" if machines.nunique() == 1 else f" ({machine})"
        sections += [_heading_on(s, where) for s in quality_and_train_sections(figs, part)]
    out.write_text("\n".join(s for s in sections if s).rstrip() + "\n")
    return out


def machine_of(data: pd.DataFrame) -> pd.Series:
    """The GPU that made each row, or 'CPU' (a smoke run is reported apart from the GPU runs)."""
    gpu = data["gpu"].astype(str) if "gpu" in data else pd.Series("none", index=data.index)
    return gpu.where(~gpu.isin(["none", "nan", "", "None"]), "CPU")


def _heading_on(section: str, where: str) -> str:
    """The section with `where` (e.g. ' (CPU)') added to its first heading."""
    head, sep, rest = section.partition("\n")
    return head + where + sep + rest if where and head.startswith("## ") else section


def quality_and_train_sections(figs: _Figures, data: pd.DataFrame) -> list[str]:
    """The quality suites' sections and the training section of rows from one machine."""
    sections = []
    quality = data[data["row_kind"] == "quality"]
    if len(quality) and "suite" in quality:
        for suite, frame in distinct_models(quality).groupby("suite", sort=False):
            if suite == "needle" and {"ctx_len", "depth"} <= set(frame.columns):
                sections.append(needle_section(figs, frame))
            elif suite == "longbench":
                sections.append(longbench_section(frame))
            elif suite == "lmeval":
                sections.append(lmeval_section(frame))
            else:
                sections.append(other_suite_section(str(suite), frame))
    train = data[data["row_kind"] == "train"]
    if len(train):
        sections.append(train_section(figs, train))
    return sections
