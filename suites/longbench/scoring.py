"""Scores of LongBench subsets: per subset, per LongBench-E length bucket, and averaged.

Scores are kept in [0, 1] (LongBench prints them times 100). A subset's score is the mean of its
examples' scores; averages are macro averages over subsets, as LongBench reports them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from nsa_bench.errors import UsageError
from nsa_bench.paired import example_scores, macro_interval_fields, pair_label, scored_fields
from nsa_bench.stats import macro_paired_difference
from nsa_bench.suites.longbench.datasets import LENGTH_BUCKETS, length_bucket, spec_for
from nsa_bench.suites.longbench.metrics import metric_for, metric_label, score_prediction
from nsa_bench.suites.longbench.records import PREDICTION_KEYS, example_id, prediction_files, read_jsonl


def _mean_and_stderr(values: Sequence[float]) -> tuple[float, float | None]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def subset_rows(subset: str, scores: Sequence[float], lengths: Sequence[int | None],
                ids: Sequence[str] | None = None, code_sim: str = "levenshtein") -> list[dict]:
    """Rows for one subset: over all examples (`length_bucket` 'all') and, when every example has a
    `length`, one per non-empty LongBench-E bucket (0-4k, 4-8k, 8k+). Each row keeps its examples'
    scores by id (`example_scores`; ids default to positions `#<index>`) and their 95% interval."""
    spec = spec_for(subset)
    ids = [str(i) for i in ids] if ids is not None else [f"#{i}" for i in range(len(scores))]
    groups = {"all": dict(zip(ids, scores))}
    if lengths and all(length is not None for length in lengths):
        for bucket in LENGTH_BUCKETS:
            members = {i: s for i, s, length in zip(ids, scores, lengths) if length_bucket(length) == bucket}
            if members:
                groups[bucket] = members
    rows = []
    for bucket, by_id in groups.items():
        mean, stderr = _mean_and_stderr(list(by_id.values()))
        rows.append({
            "kind": "quality", "suite": "longbench", "task": subset, "length_bucket": bucket,
            "language": spec.language, "metric": metric_label(metric_for(subset, code_sim)), "score": mean,
            "n": len(by_id), "stderr": stderr, "status": "ok", **scored_fields(by_id),
        })
    return rows


def average_scopes(rows: Sequence[dict]) -> list[tuple[dict, list[dict]]]:
    """The macro averages over the subsets in rows: overall and per length bucket, and per language
    (`average_en`, `average_zh`) when both languages are present; none for a single subset. Each as
    (its key columns, the subset rows it averages)."""
    subset_level = [r for r in rows if not str(r["task"]).startswith("average")]
    if len({r["task"] for r in subset_level}) < 2:
        return []
    languages = sorted({r["language"] for r in subset_level})
    scopes = [("average", None)] + ([(f"average_{lang}", lang) for lang in languages] if len(languages) > 1 else [])
    out = []
    for task, language in scopes:
        for bucket in ("all", *LENGTH_BUCKETS):
            members = [r for r in subset_level if r["length_bucket"] == bucket and language in (None, r["language"])]
            if members:
                out.append(({"kind": "quality", "suite": "longbench", "task": task, "length_bucket": bucket,
                             "language": language or "+".join(languages), "metric": "macro_avg"}, members))
    return out


def average_rows(rows: Sequence[dict]) -> list[dict]:
    """Macro averages (see `average_scopes`) of one model's subset rows, with stderr and 95% interval."""
    out = []
    for key, members in average_scopes(rows):
        errors = [r["stderr"] for r in members]
        stderr = None if any(e is None for e in errors) else math.sqrt(sum(e * e for e in errors)) / len(members)
        out.append({
            **key, "score": sum(r["score"] for r in members) / len(members),
            "n": sum(r["n"] for r in members), "stderr": stderr, "status": "ok", **macro_interval_fields(members),
        })
    return out


def paired_average_rows(rows: Sequence[dict]) -> list[dict]:
    """NSA-minus-full macro averages from both attentions' subset rows (`nsa_bench.stats.macro_paired_difference`
    on each subset's shared example ids); none where a subset lacks the other attention or example scores."""
    nsa = [r for r in rows if r.get("attention") == "nsa"]
    full = {(r["task"], r["length_bucket"]): r for r in rows if r.get("attention") == "full"}
    out = []
    for key, members in average_scopes(nsa):
        partners = [full.get((r["task"], r["length_bucket"])) for r in members]
        pairs = [(example_scores(r), example_scores(p) if p else None) for r, p in zip(members, partners)]
        if any(a is None or b is None for a, b in pairs):
            continue
        out.append({**key, **pair_label(str(members[0].get("model")), str(partners[0].get("model"))),
                    **macro_paired_difference(pairs)})
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
        ids = [example_id(r, i) for i, r in enumerate(records)]
        rows += subset_rows(subset, scores, [r.get("length") for r in records], ids, code_sim)
    return rows + average_rows(rows)
