"""The needle run's end-of-run summary: exact match per attention and context length, NSA minus full,
and how many cells ran, failed or were unsupported (and why)."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class NeedleSummary:
    """Mean exact match per attention and length over this run's grid, and the cells' outcomes."""

    lengths: list[int]
    scores: dict[str, dict[int, float]] = field(default_factory=dict)  # attention -> length -> mean
    ok: int = 0
    unsupported: Counter = field(default_factory=Counter)  # reason -> cells
    failed: Counter = field(default_factory=Counter)  # status -> cells

    @property
    def cells(self) -> int:
        return self.ok + sum(self.unsupported.values()) + sum(self.failed.values())

    @property
    def nothing_ran(self) -> bool:
        """Every cell of the grid was unsupported (e.g. all lengths beyond the model's max_length)."""
        return self.cells > 0 and sum(self.unsupported.values()) == self.cells


def summarize(rows: list[dict], keys: dict[str, dict], lengths: list[int]) -> NeedleSummary:
    """The summary of the exact-match rows that match keys[attention] (the columns that identify the
    run's rows of that attention: model, grid, metric) at the given lengths."""
    summary = NeedleSummary(lengths=list(lengths))
    for attention, key in keys.items():
        cells: dict[int, list[float]] = {}
        for row in rows:
            if not all(str(row.get(k)) == str(v) for k, v in key.items()) or int(row["ctx_len"]) not in lengths:
                continue
            status = str(row.get("status"))
            if status == "ok":
                summary.ok += 1
                cells.setdefault(int(row["ctx_len"]), []).append(float(row["score"]))
            elif status.startswith("unsupported"):  # one reason for all lengths beyond the model's
                summary.unsupported[re.sub(r"context \d+ >", "context >", status.partition(": ")[2] or status)] += 1
            else:
                summary.failed[status.split(":")[0]] += 1
        summary.scores[attention] = {t: sum(v) / len(v) for t, v in cells.items()}
    return summary


def _length(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def _mean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def summary_lines(summary: NeedleSummary, task: str) -> list[str]:
    """A compact table (attention x length, mean exact match over depths and trials) and the counts."""
    def cell(value: float, sign: str = "") -> str:
        return f"{'-' if math.isnan(value) else format(value, sign + '.2f'):>7s}"

    lines = [f"needle {task}: exact match (mean over depths and trials)",
             f"{'':10s}" + "".join(f"{_length(t):>7s}" for t in summary.lengths) + f"{'all':>7s}"]
    rows = {a: [s.get(t, math.nan) for t in summary.lengths] for a, s in summary.scores.items()}
    for attention, values in rows.items():
        mean = _mean([summary.scores[attention].get(t, math.nan) for t in summary.lengths])
        lines.append(f"{attention:10s}" + "".join(cell(v) for v in values) + cell(mean))
    if {"nsa", "full"} <= rows.keys():
        diff = [a - b for a, b in zip(rows["nsa"], rows["full"])]
        lines.append(f"{'nsa-full':10s}" + "".join(cell(v, "+") for v in diff) + cell(_mean(diff), "+"))
    counts = [f"{summary.ok} ok"] + [f"{n} unsupported: {why}" for why, n in summary.unsupported.items()]
    counts += [f"{n} {status}" for status, n in summary.failed.items()]
    lines.append(f"cells: {summary.cells}; " + "; ".join(counts))
    return lines


def run_summary(out, models: dict[str, str], grid) -> NeedleSummary:
    """The summary of a needle run's grid (`models`: attention -> model) from its CSV at `out`."""
    from nsa_bench.results import read_rows

    from .needle import run_keys

    return summarize(read_rows(out), run_keys(models, grid), grid.ctx_lens)
