"""Scores of LongBench subsets: per subset, per LongBench-E length bucket, and averaged.

Scores are kept in [0, 1] (LongBench prints them times 100). A subset's score is the mean of its
examples' scores; averages are macro averages over subsets, as LongBench reports them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from nsa_bench.errors import UsageError
from nsa_bench.suites.longbench.datasets import LENGTH_BUCKETS, length_bucket, spec_for
from nsa_bench.suites.longbench.metrics import metric_for, metric_label, score_prediction
from nsa_bench.suites.longbench.records import PREDICTION_KEYS, prediction_files, read_jsonl


def _mean_and_stderr(values: Sequence[float]) -> tuple[float, float | None]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def subset_rows(
    subset: str, scores: Sequence[float], lengths: Sequence[int | None], code_sim: str = "levenshtein"
) -> list[dict]:
    """Rows for one subset: over all examples (`length_bucket` 'all') and, when every example has a
    `length`, one per non-empty LongBench-E bucket (0-4k, 4-8k, 8k+)."""
    spec = spec_for(subset)
    groups = {"all": list(scores)}
    if lengths and all(length is not None for length in lengths):
        for bucket in LENGTH_BUCKETS:
            members = [s for s, length in zip(scores, lengths) if length_bucket(length) == bucket]
            if members:
                groups[bucket] = members
    rows = []
    for bucket, values in groups.items():
        mean, stderr = _mean_and_stderr(values)
        rows.append({
            "kind": "quality", "suite": "longbench", "task": subset, "length_bucket": bucket,
            "language": spec.language, "metric": metric_label(metric_for(subset, code_sim)), "score": mean,
            "n": len(values), "stderr": stderr, "status": "ok",
        })
    return rows


def average_rows(rows: Sequence[dict]) -> list[dict]:
    """Macro averages over the subsets in rows: overall and per length bucket, and per language
    (`average_en`, `average_zh`) when both languages are present; none for a single subset."""
    subset_level = [r for r in rows if not str(r["task"]).startswith("average")]
    if len({r["task"] for r in subset_level}) < 2:
        return []
    languages = sorted({r["language"] for r in subset_level})
    scopes = [("average", None)] + ([(f"average_{lang}", lang) for lang in languages] if len(languages) > 1 else [])
    out = []
    for task, language in scopes:
        for bucket in ("all", *LENGTH_BUCKETS):
            members = [r for r in subset_level if r["length_bucket"] == bucket and language in (None, r["language"])]
            if not members:
                continue
            errors = [r["stderr"] for r in members]
            stderr = None if any(e is None for e in errors) else math.sqrt(sum(e * e for e in errors)) / len(members)
            out.append({
                "kind": "quality", "suite": "longbench", "task": task, "length_bucket": bucket,
                "language": language or "+".join(languages), "metric": "macro_avg",
                "score": sum(r["score"] for r in members) / len(members),
                "n": sum(r["n"] for r in members), "stderr": stderr, "status": "ok",
            })
    return out


def score_records(subset: str, records: Sequence[dict], where: str = "", code_sim: str = "levenshtein") -> list[float]:
    """Each prediction record's score (`pred`, `answers`, `all_classes`)."""
    scores = []
    for index, record in enumerate(records):
        try:
            scores.append(score_prediction(
                subset, record["pred"], record["answers"], record.get("all_classes"), code_sim=code_sim))
        except (ValueError, TypeError) as error:
            raise UsageError(f"{where or subset}: example {index + 1}: {error}") from None
    return scores


def score_predictions(path: str | Path, code_sim: str = "levenshtein") -> list[dict]:
    """Rows for a predictions file or a directory of `<subset>.jsonl` files, as LongBench's eval.py
    scores them (lines with `pred`, `answers`, `all_classes`, optional `length`), plus averages.
    code_sim: 'levenshtein' (default) or 'difflib', see metrics.code_sim_difflib."""
    rows: list[dict] = []
    for subset, file in prediction_files(Path(path)).items():
        records = read_jsonl(file, PREDICTION_KEYS)
        if not all(isinstance(r["pred"], str) for r in records):
            raise UsageError(f"{file}: 'pred' must be a string on every line")
        scores = score_records(subset, records, str(file), code_sim)
        rows += subset_rows(subset, scores, [r.get("length") for r in records], code_sim)
    return rows + average_rows(rows)
