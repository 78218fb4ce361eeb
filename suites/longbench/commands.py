"""The bodies of `nsa-bench longbench run` and `nsa-bench longbench score`: load, run, save, show."""

from __future__ import annotations

import gc
import math
import sys
from pathlib import Path
from typing import Sequence

from nsa_bench.errors import UsageError
from nsa_bench.paired import nsa_minus_full, write_new
from nsa_bench.suites.suite_models import attentions, check_models, load_model, models_by_attention

PAIR_KEYS = ("suite", "task", "length_bucket", "metric")  # with the example id: what pairs NSA and full


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
    code_sim: str = "levenshtein",
) -> list[dict]:
    """Generate predictions for the subsets in `data` with the model under each attention, score
    them, append rows to the CSV `out` and print a table. Under torchrun the ranks share the examples
    out and rank 0 writes the predictions, rows and table."""
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from nsa_bench import distributed
    from nsa_bench.results import ResultWriter
    from nsa_bench.suites.longbench.records import data_files
    from nsa_bench.suites.longbench.runner import load_subsets, prediction_dir, run_longbench
    from nsa_bench.suites.longbench.scoring import paired_average_rows

    attns = attentions(attn)
    check_code_sim(code_sim)
    if max_examples is not None and max_examples < 1:
        raise UsageError("--max-examples must be at least 1")
    chosen = models_by_attention(models, attns)
    check_models(chosen, nsa_config)
    subsets = load_subsets(data_files(data, _split(datasets)), max_examples)
    warn_if_chinese_without_jieba(list(subsets))
    main = distributed.init(distributed.rank_device(device)).main
    writer = ResultWriter(out, extra={"data": str(data), "max_examples": max_examples, "nsa_config": nsa_config}) \
        if main else None
    rows: list[dict] = []
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), disable=not main,
    )
    try:
        with progress:
            for attention, model in chosen.items():
                lm = load_model(model, attention, device, nsa_config)
                rows += run_longbench(lm, subsets, prediction_dir(preds, model, attention), writer, progress, code_sim)
                del lm
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
    finally:
        distributed.close()
    if not main:
        return rows
    console = Console()
    console.print(results_table(rows, f"LongBench: {', '.join(dict.fromkeys(chosen.values()))}"))
    if {"nsa", "full"} <= chosen.keys():
        paired = nsa_minus_full(rows, PAIR_KEYS) + paired_average_rows(rows)
        rows += write_new(writer, paired, PAIR_KEYS)
    console.print(f"rows: {out}   predictions: {preds}/")
    return rows


def check_code_sim(code_sim: str) -> None:
    from nsa_bench.suites.longbench.metrics import CODE_SIMS

    if code_sim not in CODE_SIMS:
        raise UsageError(f"--code-sim must be one of {', '.join(CODE_SIMS)}, got {code_sim!r}")


def score_command(
    predictions: Path, out: Path | None, model: str | None, attn: str | None, code_sim: str = "levenshtein"
) -> list[dict]:
    """Score existing prediction files as LongBench's eval.py does; print a table, optionally save rows."""
    from rich.console import Console

    from nsa_bench.suites.longbench.scoring import score_predictions

    check_code_sim(code_sim)
    rows = score_predictions(predictions, code_sim)
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
