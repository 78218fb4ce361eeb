"""Per-example scores in result rows, the intervals they give, and NSA-minus-full rows from them.

A quality row keeps its examples' scores in `example_scores`, a JSON object {example id: score}
(needle: `<trial>:<value>`, LongBench: `_id`, lm-eval: `doc_id`). Two attentions' rows with the
same key hold scores on the same examples, so their difference is paired: an `nsa-full` row gives
NSA minus full over the shared ids, its paired-bootstrap 95% interval and a paired test's p-value
(`nsa_bench.stats.paired_difference`).
"""

from __future__ import annotations

import json
import math
from typing import Iterable, Mapping, Sequence

from nsa_bench.gate import _key_text, _number, is_ok
from nsa_bench.stats import interval, paired_difference, stratified_bootstrap_macro

EXAMPLE_SCORES = "example_scores"
PAIRED = "nsa-full"


def encode_scores(scores: Mapping[str, float]) -> str:
    """The `example_scores` cell of a row."""
    return json.dumps({str(k): float(v) for k, v in scores.items()})


def example_scores(row: Mapping) -> dict[str, float] | None:
    """A row's per-example scores, or None where the row has none (older CSVs, failed cells)."""
    cell = row.get(EXAMPLE_SCORES)
    if isinstance(cell, dict):
        return cell
    if not isinstance(cell, str) or not cell.strip():
        return None
    try:
        scores = json.loads(cell)
    except json.JSONDecodeError:
        return None
    return scores if isinstance(scores, dict) else None


def interval_fields(scores: Sequence[float]) -> dict:
    """`ci_low`, `ci_high` (95%) and `ci_method` of the mean of per-example scores."""
    low, high, method = interval(list(scores))
    return {"ci_low": low, "ci_high": high, "ci_method": method if scores else ""}


def scored_fields(scores: Mapping[str, float]) -> dict:
    """`example_scores` and the interval fields of a row whose examples scored `scores`."""
    return {EXAMPLE_SCORES: encode_scores(scores), **interval_fields(list(scores.values()))}


def macro_interval_fields(rows: Sequence[Mapping]) -> dict:
    """Interval fields of a macro average over rows (resampling within each row's examples); NaN
    unless every row has its example scores."""
    groups = [example_scores(r) for r in rows]
    if not groups or any(g is None for g in groups):
        return {"ci_low": math.nan, "ci_high": math.nan, "ci_method": ""}
    low, high = stratified_bootstrap_macro([list(g.values()) for g in groups])
    return {"ci_low": low, "ci_high": high, "ci_method": "stratified_bootstrap"}


def nsa_minus_full(rows: Iterable[Mapping], keys: Sequence[str], pool_over: str | None = None) -> list[dict]:
    """`nsa-full` rows: one per value of `keys` (besides attention and model) where ok `nsa` and
    `full` rows with example scores both exist. With `pool_over` (e.g. `depth`), the rows of every
    value of that column are pooled into one comparison (ids prefixed by the value); the row leaves
    that column empty (NaN, so numeric columns stay numeric) and says `pooled_over = <pool_over>`. Where a key repeats, the later row's scores win."""
    group_keys = [k for k in keys if k != pool_over]
    scores: dict[tuple, dict[str, float]] = {}
    models: dict[tuple, str] = {}
    template: dict[tuple, Mapping] = {}
    for row in rows:
        attention = str(row.get("attention"))
        found = example_scores(row)
        if attention not in ("nsa", "full") or not is_ok(row.get("status")) or found is None:
            continue
        group = tuple(_key_text(row.get(k)) for k in group_keys)
        prefix = f"{_key_text(row.get(pool_over))}/" if pool_over else ""
        scores.setdefault((group, attention), {}).update({prefix + i: s for i, s in found.items()})
        models[(group, attention)] = str(row.get("model"))
        template.setdefault(group, row)
    out = []
    for group, row in template.items():
        if (group, "nsa") not in scores or (group, "full") not in scores:
            continue
        out.append({
            "kind": "quality", **{k: row.get(k) for k in group_keys},
            **({pool_over: math.nan, "pooled_over": pool_over} if pool_over else {}),
            **pair_label(models[(group, "nsa")], models[(group, "full")]),
            **paired_difference(scores[(group, "nsa")], scores[(group, "full")]),
        })
    return out


def pair_label(nsa_model: str, full_model: str) -> dict:
    """The attention, model and status columns of an `nsa-full` row."""
    return {"attention": PAIRED, "model": nsa_model if nsa_model == full_model else f"{nsa_model} vs {full_model}",
            "model_nsa": nsa_model, "model_full": full_model, "status": "ok"}


def run_rows(rows: Iterable[Mapping], models: Mapping[str, str], match: Mapping) -> list[Mapping]:
    """The rows of one run: each attention's row of its model in `models`, with the `match` columns equal
    (compared as text, as a CSV read back holds them)."""
    return [r for r in rows if str(r.get("model")) == str(models.get(r.get("attention")))
            and all(str(r.get(k)) == str(v) for k, v in match.items())]


def write_new(writer, rows: Iterable[dict], keys: Sequence[str]) -> list[dict]:
    """Write the rows whose `keys` (plus attention, model and n) match no row of the writer's CSV yet."""
    written = []
    for row in rows:
        if not writer.done({k: row.get(k) for k in (*keys, "attention", "model", "n")}):
            writer.write(row)
            written.append(row)
    return written


def drop_test(baseline: Mapping, current: Mapping) -> tuple[float, str] | None:
    """Whether a current score differs from the baseline's beyond noise: (p-value, how tested).

    With per-example scores on shared examples in both rows: the paired test of `paired_difference`
    (exact McNemar for 0/1 scores, else sign-flip permutation). Otherwise with 95% intervals in both
    rows: p = 0.0 when they do not overlap, 1.0 when they do (a conservative rule). None when the
    rows carry neither."""
    base, cur = example_scores(baseline), example_scores(current)
    if base is not None and cur is not None and base.keys() & cur.keys():
        paired = paired_difference(cur, base)
        return paired["p_value"], f"{paired['test']} p={paired['p_value']:.3g}, {paired['n']} pairs"
    bounds = [_number(r.get(c)) for r in (baseline, current) for c in ("ci_low", "ci_high")]
    if any(math.isnan(b) for b in bounds):
        return None
    b_low, b_high, c_low, c_high = bounds
    apart = c_high < b_low or c_low > b_high
    return (0.0 if apart else 1.0), ("95% intervals apart" if apart else "95% intervals overlap")

