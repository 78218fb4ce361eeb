"""The regression gate's output: a rich table with a verdict line, and the JSON summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

from nsa_bench.gate import VERDICTS, Comparison, GateResult

NEW_ROWS_SHOWN = 10  # new rows listed in the table without --show-all

_STYLE = {"regression": "bold red", "missing": "red", "noise": "yellow", "improvement": "green",
          "new": "cyan", "not compared": "dim", "unchanged": "dim"}


def _fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.3g}x" if unit == "relative" else f"{value:.4g}"


def _change_text(c: Comparison) -> str:
    if c.change is None:
        return ""
    return f"{c.change:+.1%}" if c.unit == "relative" else f"{c.change:+.2f} pt"


def _threshold_text(c: Comparison) -> str:
    if c.threshold is None:
        return ""
    return f"{c.threshold:.0%}" if c.unit == "relative" else f"{c.threshold:g} pt"


def _band_text(c: Comparison) -> str:
    if not c.baseline_band or not c.current_band or c.baseline_band == (c.baseline, c.baseline):
        return ""
    return "[{:.3g}, {:.3g}] -> [{:.3g}, {:.3g}]".format(*c.baseline_band, *c.current_band)


def _row_label(c: Comparison, varying: set[str]) -> str:
    skip = {"metric"}
    return " ".join(f"{k}={v}" if k not in ("impl", "mode", "suite", "task", "attention") else v
                    for k, v in c.key.items() if k in varying and k not in skip and v != "")


def print_result(result: GateResult, show_all: bool = False, console=None) -> None:
    """A rich table of the regressions, missing rows, noise, improvements and new rows; a verdict line."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=180)
    shown = [c for c in result.comparisons if show_all or c.verdict not in ("unchanged", "not compared")]
    shown.sort(key=lambda c: VERDICTS.index(c.verdict))
    new = [c for c in shown if c.verdict == "new"]
    if len(new) > NEW_ROWS_SHOWN and not show_all:  # a sweep over more lengths: list a few
        shown = [c for c in shown if c.verdict != "new"] + new[:NEW_ROWS_SHOWN]
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    for kind in ("kernel", "quality"):
        rows = [c for c in shown if c.kind == kind]
        if not rows:
            continue
        keys = list(rows[0].key)
        varying = {k for k in keys if len({c.key.get(k) for c in rows}) > 1} | (
            {"impl", "mode", "seq_len"} if kind == "kernel" else {"suite", "task", "attention"})
        fixed = {k: rows[0].key[k] for k in keys if k not in varying and k != "metric" and rows[0].key[k] != ""}
        table = Table(title=f"{kind} rows" + (" (all: " + ", ".join(f"{k}={v}" for k, v in fixed.items()) + ")"
                                              if fixed else ""), title_justify="left")
        for name in ("verdict", "row", "metric", "baseline", "current", "change", "max drop", "p20-p80 band", "note"):
            table.add_column(name, justify="right" if name in ("baseline", "current", "change", "max drop") else "left")
        for c in rows:
            table.add_row(f"[{_STYLE[c.verdict]}]{c.verdict}[/]", _row_label(c, varying), c.metric,
                          _fmt(c.baseline, c.unit), _fmt(c.current, c.unit), _change_text(c), _threshold_text(c),
                          _band_text(c), c.note)
        console.print(table)
    if len(new) > NEW_ROWS_SHOWN and not show_all:
        console.print(f"... and {len(new) - NEW_ROWS_SHOWN} more new rows (--show-all lists them)", highlight=False)
    counts = result.counts()
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    status = "[bold red]FAIL[/]" if result.failures else "[bold green]PASS[/]"
    console.print(f"gate: {status}  {summary}  (thresholds: speedup -{result.thresholds.speedup_drop:.0%}, "
                  f"accuracy -{result.thresholds.accuracy_drop:g} pt"
                  + (f", score changes significant at alpha {result.thresholds.alpha:g}"
                     if result.thresholds.alpha is not None else "")
                  + (", missing rows allowed" if result.allow_missing else "")
                  + ("" if result.use_spread else ", spread ignored") + ")", highlight=False)


def write_json(result: GateResult, path: str | Path) -> Path:
    """The machine-readable summary of a check."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return path
