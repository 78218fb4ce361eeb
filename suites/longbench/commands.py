"""The bodies of `nsa-bench longbench run` and `nsa-bench longbench score`: load, run, save, show."""

from __future__ import annotations

import gc
import math
import sys
from pathlib import Path
from typing import Sequence

from nsa_bench.errors import UsageError

ATTENTIONS = {"nsa": ("nsa",), "full": ("full",), "both": ("nsa", "full")}


def _split(values: Sequence[str] | None) -> list[str] | None:
    """Names given as repeated options and/or comma-separated lists."""
    names = [name.strip() for value in values or () for name in value.split(",") if name.strip()]
    return names or None


def warn_if_chinese_without_jieba(subsets: Sequence[str]) -> None:
    """Say on stderr when Chinese subsets are scored character-level because jieba is missing."""
    from nsa_bench.suites.longbench.datasets import spec_for
    from nsa_bench.suites.longbench.metrics import ZH_TOKENIZER

    if ZH_TOKENIZER != "jieba" and any(spec_for(s).language == "zh" for s in subsets):
        print("nsa-bench: note: jieba is not installed; Chinese F1/ROUGE use character tokens (metric *_char)",
              file=sys.stderr)


def models_by_attention(models: Sequence[str], attentions: Sequence[str]) -> dict[str, str]:
    """The model for each attention from `--model` values: `PATH` (every attention) or `nsa=PATH`, `full=PATH`."""
    shared, chosen = None, {}
    for value in models:
        prefix, sep, rest = value.partition("=")
        if sep and prefix in ("nsa", "full"):
            chosen[prefix] = rest
        elif shared is None:
            shared = value
        else:
            raise UsageError("--model: give one PATH, or one nsa=PATH and one full=PATH")
    picked = {a: chosen.get(a, shared) for a in attentions}
    missing = [a for a, m in picked.items() if not m]
    if missing:
        raise UsageError(f"--model: no model for attention {', '.join(missing)} (give PATH or {missing[0]}=PATH)")
    return picked


def load_model(model: str, attention: str, device: str | None, nsa_config: str | None):
    """A CausalLM from the models package (a path or preset, with the chosen attention)."""
    import torch

    from nsa_bench.models import load_lm

    kwargs = {"attention": attention, "device": device or ("cuda" if torch.cuda.is_available() else "cpu")}
    if nsa_config:
        from nsa_bench.kernels.config import NSAConfig

        try:
            kwargs["nsa_config"] = NSAConfig.parse(nsa_config)
        except ValueError as error:
            raise UsageError(f"--nsa-config: {error}") from None
    try:
        return load_lm(model, **kwargs)
    except (OSError, ValueError) as error:
        if isinstance(error, UsageError):
            raise
        raise UsageError(f"--model {model}: {error}") from None


def results_table(rows: Sequence[dict], title: str):
    """A rich table of scores (times 100, as LongBench prints them), one column per attention."""
    from rich.table import Table

    attentions = list(dict.fromkeys(str(r.get("attention") or "") for r in rows))
    cells: dict[tuple, dict] = {}
    for row in rows:
        key = (row["task"], row["length_bucket"])
        entry = cells.setdefault(key, {"metric": row["metric"], "n": row["n"]})
        entry[str(row.get("attention") or "")] = row["score"]
    table = Table(title=f"{title} (scores x100)")
    for name in ("subset", "length", "metric", "n"):
        table.add_column(name, justify="right" if name == "n" else "left", no_wrap=name != "n")
    for attention in attentions:
        table.add_column(attention or "score", justify="right")
    compare = attentions == ["nsa", "full"]
    if compare:
        table.add_column("nsa-full", justify="right")
    for (task, bucket), entry in cells.items():
        scores = [entry.get(a) for a in attentions]
        shown = ["" if s is None or (isinstance(s, float) and math.isnan(s)) else f"{100 * s:.2f}" for s in scores]
        if compare:
            shown.append(f"{100 * (scores[0] - scores[1]):+.2f}" if None not in scores else "")
        table.add_row(str(task), str(bucket), str(entry["metric"]), str(entry["n"]), *shown)
    return table


def run_command(
    data: Path,
    models: Sequence[str],
    attn: str,
    datasets: Sequence[str] | None,
    max_examples: int | None,
    out: Path,
    preds: Path,
    device: str | None,
    nsa_config: str | None,
) -> list[dict]:
    """Generate predictions for the subsets in `data` with the model under each attention, score
    them, append rows to the CSV `out` and print a table."""
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from nsa_bench.results import ResultWriter
    from nsa_bench.suites.longbench.records import data_files
    from nsa_bench.suites.longbench.runner import load_subsets, prediction_dir, run_longbench

    if attn not in ATTENTIONS:
        raise UsageError(f"--attn must be nsa, full or both, not {attn!r}")
    if max_examples is not None and max_examples < 1:
        raise UsageError("--max-examples must be at least 1")
    chosen = models_by_attention(models, ATTENTIONS[attn])
    subsets = load_subsets(data_files(data, _split(datasets)), max_examples)
    warn_if_chinese_without_jieba(list(subsets))
    writer = ResultWriter(out, extra={"data": str(data), "max_examples": max_examples, "nsa_config": nsa_config})
    rows: list[dict] = []
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    with progress:
        for attention, model in chosen.items():
            lm = load_model(model, attention, device, nsa_config)
            rows += run_longbench(lm, subsets, prediction_dir(preds, model, attention), writer, progress)
            del lm
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    console = Console()
    console.print(results_table(rows, f"LongBench: {', '.join(dict.fromkeys(chosen.values()))}"))
    console.print(f"rows: {out}   predictions: {preds}/")
    return rows


def score_command(predictions: Path, out: Path | None, model: str | None, attn: str | None) -> list[dict]:
    """Score existing prediction files as LongBench's eval.py does; print a table, optionally save rows."""
    from rich.console import Console

    from nsa_bench.suites.longbench.scoring import score_predictions

    rows = score_predictions(predictions)
    warn_if_chinese_without_jieba([r["task"] for r in rows if not str(r["task"]).startswith("average")])
    for row in rows:
        row.update(model=model or str(predictions), attention=attn or "")
    if out is not None:
        from nsa_bench.results import ResultWriter

        writer = ResultWriter(out, extra={"predictions": str(predictions)})
        for row in rows:
            writer.write(row)
    Console().print(results_table(rows, f"LongBench scores: {predictions}"))
    if out is not None:
        Console().print(f"rows: {out}")
    return rows
