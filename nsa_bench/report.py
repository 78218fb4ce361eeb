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
from nsa_bench.plots import MODES, decode_figure, heatmap_figure, main_impls, pyplot, save, speedup_figure
from nsa_bench.plots import length_label as _length
from nsa_bench.plots import number as _num
from nsa_bench.plots import ok_rows as _ok
from nsa_bench.plots import stage_figure, stage_impls, train_figure
from nsa_bench.report_stats import INTERVAL_NOTE, PAIRED_NOTE, needle_paired_section, paired_cell, score_cell, split_paired

META_COLUMNS = ("gpu", "gpu_capability", "driver", "cuda", "torch", "triton", "flash_attn", "fa2_baseline",
                "cudnn_attention", "transformers", "lm_eval", "git_rev")
SETUP_COLUMNS = ("gpu", "dtype", "q_heads", "kv_heads", "dk", "dv", "nsa_config")  # one kernel figure set each
BASELINES = ("fa2", "cudnn")
NUMERIC = ("seq_len", "batch", "q_heads", "kv_heads", "dk", "dv", "ms", "ms_p20", "ms_p80", "tflops", "gbps",
           "speedup_fa2", "speedup_cudnn", "ceiling", "efficiency", "copy_gbps", "score", "stderr", "ci_low", "ci_high",
           "p_value", "n", "ctx_len",
           "depth", "step", "loss", "val_loss", "val_answer_acc", "tokens_per_s", "wall_s", "params")
ATTENTION_ORDER = ("nsa", "full")


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
    if not data["row_kind"].isin(["kernel", "quality", "train", "train_speed"]).any():
        raise UsageError("none of the CSVs holds kernel, quality, train or train_speed rows (docs/RESULTS_SCHEMA.md)")
    return data


def _fmt(value, spec: str = ".3g", suffix: str = "") -> str:
    value = _num(value)
    return "" if math.isnan(value) else f"{value:{spec}}{suffix}"


def md_table(headers: list[str], rows: list[list]) -> str:
    """A markdown table; `|` inside cells is escaped."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class _Figures:
    """Saves figures (nsa_bench.plots) as PNGs beside the markdown, named <stem>_<name>.png."""

    def __init__(self, out: Path):
        self.plt = pyplot()
        self.dir, self.stem = out.parent, out.stem
        self.suffix = ""  # e.g. '_cpu': the figures of one machine's section
        self.written: list[Path] = []

    def save(self, fig, name: str) -> str:
        path = self.dir / f"{self.stem}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name + self.suffix)}.png"
        self.written.append(save(fig, path))
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


def speedup_table(group: pd.DataFrame) -> str:
    rows = []
    for mode in MODES:
        for impl in main_impls(group):
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


def stage_table(group: pd.DataFrame) -> str:
    rows = []
    for mode in ("fwd", "bwd"):
        for t in sorted(group.loc[group["mode"] == mode, "seq_len"].dropna().astype(int).unique()):
            whole = _ok(group[(group["mode"] == mode) & (group["impl"] == "nsa") & (group["seq_len"] == t)])["ms"].median()
            for stage in stage_impls(group, mode):
                r = group[(group["mode"] == mode) & (group["impl"] == stage) & (group["seq_len"] == t)]
                if r.empty:
                    continue
                r = r.iloc[-1]
                ok = is_ok(str(r.get("status", "ok")))
                share = _num(r.get("ms")) / whole if ok and whole and not math.isnan(whole) else math.nan
                rows.append([mode, _length(t), stage.partition(":")[2], "ok" if ok else r.get("status"),
                             _fmt(r.get("ms")), _fmt(share, ".0%"), _fmt(r.get("tflops"), ".1f")])
    return md_table(["mode", "T", "stage", "status", "ms", "share of NSA call", "TFLOP/s"], rows)


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
        parts += ["#### Speedup against length\n", figs.save(speedup_figure(group), f"{tag}_speedup") + "\n",
                  speedup_table(group) + "\n"]
        stages = stage_figure(group)
        if stages:
            parts += ["#### NSA stages\n", "Each stage timed on its own (`nsa:<stage>` rows); the bars stack "
                      "their medians, the markers are NSA's whole call and FA2.\n",
                      figs.save(stages, f"{tag}_stages") + "\n",
                      stage_table(group) + "\n"]
        decode = decode_figure(group)
        if decode:
            parts += ["#### Decode bandwidth\n", figs.save(decode, f"{tag}_decode_gbps") + "\n"]
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
        parts.append(figs.save(heatmap_figure(panels, top), f"needle_{task}_{metric}") + "\n")
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

def train_speed_section(frame: pd.DataFrame) -> str:
    """Training tokens/s of full and NSA per preset and length, and NSA's speedup (`nsa-bench train-speed`)."""
    rows = []
    for (model, length), g in frame.groupby(["model", "ctx_len"], sort=True):
        by = {r["attention"]: r for r in g.to_dict(orient="records")}
        cells = [f"{by[a]['tokens_per_s']:,.0f}" if a in by and is_ok(str(by[a].get("status"))) else
                 str(by.get(a, {}).get("status", "")) for a in ("full", "nsa")]
        speedup = by.get("nsa", {}).get("speedup_full", math.nan)
        rows.append([model, _cell(length), *cells, _fmt(speedup, ".2f") + ("x" if speedup == speedup else "")])
    return "## Training throughput\n\n" + md_table(["preset", "context", "full tok/s", "NSA tok/s", "NSA / full"], rows) + "\n"


def train_section(figs: _Figures, frame: pd.DataFrame) -> str:
    """Loss against step (raw faint, smoothed, held-out dots) and the final row of each model."""
    frame = _ok(frame)
    if frame.empty or "loss" not in frame:
        return ""
    rows = []
    sources = list(dict.fromkeys(frame["source"]))
    for (source, attention), g in frame.groupby(["source", "attention"], sort=False):
        g = g.sort_values("step")
        label = f"{attention}" if len(sources) == 1 else f"{attention} ({source})"
        last = g.iloc[-1]
        evals = g[g["val_loss"].notna()] if "val_loss" in g else g.iloc[0:0]
        final_eval = evals.iloc[-1] if len(evals) else {}
        rows.append([label, _fmt(last.get("step"), ".0f"), _fmt(last.get("params"), ".3g"),
                     _fmt(last.get("loss"), ".4f"), _fmt(final_eval.get("val_loss") if len(evals) else None, ".4f"),
                     _fmt(final_eval.get("val_answer_acc") if len(evals) else None, ".2f"),
                     _fmt(g["tokens_per_s"].median() if "tokens_per_s" in g else None, ",.0f"),
                     _fmt(last.get("wall_s"), ".0f")])
    image = figs.save(train_figure(frame), "train")
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
    rows = data[data["row_kind"].isin(["quality", "train", "train_speed"])]
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
    speed = data[data["row_kind"] == "train_speed"]
    if not speed.empty:
        sections.append(train_speed_section(speed))
    train = data[data["row_kind"] == "train"]
    if len(train):
        sections.append(train_section(figs, train))
    return sections
