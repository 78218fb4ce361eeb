"""The regression gate: a current result CSV against a baseline, row by row on the rows' keys.

Kernel rows (`kind=kernel`) are compared on their speedups (`speedup_fa2`, `speedup_cudnn`): ratios
taken within one run, so a slower or busier GPU moves both sides and the ratio survives. Each speedup
gets an uncertainty band from the run's recorded spread: with the baseline implementation's and this
row's 20th/80th percentiles, speedup = base/ms lies in [base_p20/ms_p80, base_p80/ms_p20]. A speedup
regresses when its median falls by more than the threshold (relative) *and* the two runs' bands do
not overlap; a change beyond the threshold whose bands overlap is reported as `noise` and passes.

Quality rows (`kind=quality`) are compared on `score` in points: a point is 0.01 for a metric whose
scores (in both files) all lie in [0, 1], and one unit of the score otherwise. Evaluations run the
same examples greedily, so the score's `stderr` (the spread over examples) is no run-to-run noise
and the threshold alone decides, unless a significance level is given (`--significant`, alpha):
then a change beyond the threshold also has to be significant, else it is `noise`. Rows holding
per-example scores on shared example ids are compared with a paired test (exact McNemar for 0/1
scores, sign-flip permutation otherwise; significant when p < alpha); rows with 95% intervals but
no example scores count as significant only when the intervals do not overlap (conservative);
rows with neither are judged on the threshold alone (noted).

Rows only in the baseline are `missing` (a regression unless allowed), rows only in the current
file are `new`. A row that was `ok` and now is not (oom, error, unsupported) is a regression.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from nsa_bench.errors import UsageError
from nsa_bench.gate_thresholds import SPEEDUP_BASELINES, Thresholds

KERNEL_KEYS = ("impl", "mode", "seq_len", "batch", "q_heads", "kv_heads", "dk", "dv", "dtype", "nsa_config")
QUALITY_KEYS = ("suite", "task", "attention", "model", "metric")
QUALITY_OPTIONAL_KEYS = ("ctx_len", "depth", "length_bucket")  # part of the key where a file has them
LOWER_IS_BETTER = ("loss", "perplexity", "bits_per_byte", "bpb")  # quality metrics whose name holds these

VERDICTS = ("regression", "missing", "noise", "improvement", "new", "unchanged", "not compared")
_EPS = 1e-9  # a change equal to the threshold passes despite float rounding


# ---- reading the CSVs ----------------------------------------------------------------------------

def _key_text(value) -> str:
    """A key cell as text that matches across files: 8192, 8192.0 and '8192' all read '8192'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value).strip()
    if math.isnan(number):
        return str(value).strip() if str(value).strip().lower() != "nan" else ""
    return str(int(number)) if number.is_integer() else f"{number:.6g}"


def _natural(key: tuple[str, ...]) -> tuple:
    """Sort order of keys with numbers as numbers (8192 before 16384)."""
    def part(text: str):
        number = _number(text)
        return (0, number, "") if text and not math.isnan(number) else (1, 0.0, text)

    return tuple(part(t) for t in key)


def _number(value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def is_ok(status) -> bool:
    """Whether a row measured something: status `ok` (or `ok (...)`), or no status at all."""
    text = _key_text(status)
    return text == "" or text.lower().startswith("ok")


def row_kind(row: dict) -> str:
    """`kernel`, `quality` or another kind (train rows and the like, which the gate does not compare)."""
    kind = _key_text(row.get("kind"))
    if kind:
        return kind
    if _key_text(row.get("suite")) == "train":
        return "train"
    if _key_text(row.get("impl")) and _key_text(row.get("mode")):
        return "kernel"
    return "quality" if _key_text(row.get("suite")) else ""


DTYPE_NAMES = {"bfloat16": "bf16", "torch.bfloat16": "bf16", "float16": "fp16", "torch.float16": "fp16",
               "half": "fp16", "float32": "fp32", "torch.float32": "fp32", "float": "fp32"}


def normalize_kernel_row(row: dict) -> dict:
    """The schema's spelling of a kernel row: dtype `bf16`/`fp16`/`fp32`, and a row marked
    `graph=True` (a CUDA-graph replay) as impl `<impl>:cuda_graph`."""
    row = dict(row)
    dtype = _key_text(row.get("dtype"))
    row["dtype"] = DTYPE_NAMES.get(dtype, dtype)
    impl = _key_text(row.get("impl"))
    if _key_text(row.get("graph")).lower() in ("true", "1") and not impl.endswith(":cuda_graph"):
        row["impl"] = f"{impl}:cuda_graph"
    return row


def read_table(path: str | Path) -> pd.DataFrame:
    """A result CSV as a DataFrame; UsageError on a missing, empty or non-CSV file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} does not exist")
    try:
        frame = pd.read_csv(path, dtype=object, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UsageError(f"{path} is not a result CSV: {str(error).splitlines()[0] if str(error) else error}") from None
    if frame.empty:
        raise UsageError(f"{path} has no rows")
    return frame


@dataclass
class Rows:
    """The comparable rows of one CSV, by kind and key (the last row wins where a key repeats)."""

    path: Path
    kernel: dict[tuple, dict] = field(default_factory=dict)
    quality: dict[tuple, dict] = field(default_factory=dict)
    quality_keys: tuple[str, ...] = QUALITY_KEYS
    duplicates: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # kind -> rows not compared (train, ...)

    def by_kind(self, kind: str) -> dict[tuple, dict]:
        return self.kernel if kind == "kernel" else self.quality


def key_columns(kind: str, quality_keys: tuple[str, ...] = QUALITY_KEYS) -> tuple[str, ...]:
    return KERNEL_KEYS if kind == "kernel" else quality_keys


def index_rows(frame: pd.DataFrame, path: str | Path, quality_keys: tuple[str, ...]) -> Rows:
    """Index one CSV's kernel and quality rows on their keys; UsageError on unusable input."""
    rows = Rows(Path(path), quality_keys=quality_keys)
    for record in frame.to_dict(orient="records"):
        kind = row_kind(record)
        if kind not in ("kernel", "quality"):
            rows.skipped[kind or "unknown"] = rows.skipped.get(kind or "unknown", 0) + 1
            continue
        if kind == "kernel":
            record = normalize_kernel_row(record)
        keys = key_columns(kind, quality_keys)
        absent = [c for c in keys if c not in frame.columns]
        if absent:
            raise UsageError(f"{path}: {kind} rows need the key columns {', '.join(absent)} "
                             "(docs/RESULTS_SCHEMA.md)")
        key = tuple(_key_text(record.get(c)) for c in keys)
        table = rows.by_kind(kind)
        rows.duplicates += key in table
        table[key] = record
    if not rows.kernel and not rows.quality:
        found = ", ".join(f"{n} {k}" for k, n in rows.skipped.items()) or "none"
        raise UsageError(f"{path} has no kernel or quality rows to compare (kind column; rows found: {found})")
    return rows


# ---- comparing -----------------------------------------------------------------------------------

@dataclass
class Comparison:
    """One decision of the gate: a metric of a row, or a missing / new row."""

    verdict: str
    kind: str
    key: dict[str, str]
    metric: str = ""
    baseline: float | None = None
    current: float | None = None
    baseline_band: tuple[float, float] | None = None
    current_band: tuple[float, float] | None = None
    change: float | None = None  # relative (speedups) or points (scores), signed: + is better
    unit: str = ""  # "relative" or "points"
    threshold: float | None = None
    note: str = ""


def _baseline_impls(impl: str, baseline: str) -> list[str]:
    """The rows a speedup may divide: a variant `nsa:cuda_graph` is timed against `fa2:cuda_graph`
    where the run has it; stages (`nsa:<stage>`) and plain rows against the plain baseline."""
    variant = impl.partition(":")[2]
    return [f"{baseline}:{variant}", baseline] if variant else [baseline]


def speedup_band(row: dict, metric: str, rows: dict[tuple, dict]) -> tuple[float, float]:
    """The speedup's band from the 20th/80th percentiles of this row and of its baseline row in the
    same run (impl fa2/cudnn, or its `:cuda_graph` variant, same problem); this row's alone if absent."""
    value = _number(row.get(metric))

    def spread(r: dict) -> tuple[float, float]:  # p20/ms and p80/ms, 1 where unknown
        ms, p20, p80 = (_number(r.get(c)) for c in ("ms", "ms_p20", "ms_p80"))
        if not (ms > 0 and p20 > 0 and p80 > 0):
            return 1.0, 1.0
        return min(p20 / ms, 1.0), max(p80 / ms, 1.0)

    key = dict(zip(KERNEL_KEYS, (_key_text(row.get(c)) for c in KERNEL_KEYS)))
    base = None
    for impl in _baseline_impls(key["impl"], SPEEDUP_BASELINES[metric]):
        base = base or rows.get(tuple(impl if c == "impl" else key[c] for c in KERNEL_KEYS))
    b_lo, b_hi = spread(base) if base is not None and is_ok(base.get("status")) else (1.0, 1.0)
    r_lo, r_hi = spread(row)
    return value * b_lo / r_hi, value * b_hi / r_lo


def _score_units(baseline: Rows, current: Rows) -> dict[str, float]:
    """Size of one point per quality metric: 0.01 where every score of the metric lies in [0, 1]."""
    scores: dict[str, list[float]] = {}
    for rows in (baseline, current):
        for row in rows.quality.values():
            value = _number(row.get("score"))
            if not math.isnan(value):
                scores.setdefault(_key_text(row.get("metric")), []).append(value)
    return {m: 0.01 if all(0 <= v <= 1 for v in values) else 1.0 for m, values in scores.items()}


def _lower_is_better(metric: str) -> bool:
    return any(word in metric.lower() for word in LOWER_IS_BETTER)


def _compare_speedups(key, base_row, cur_row, baseline: Rows, current: Rows, thresholds: Thresholds,
                      use_spread: bool) -> list[Comparison]:
    impl = key["impl"]
    out = []
    for metric in SPEEDUP_BASELINES:
        if impl.partition(":")[0] in SPEEDUP_BASELINES.values():
            continue  # fa2 over cudnn (or itself) is no property of NSA
        b, c = _number(base_row.get(metric)), _number(cur_row.get(metric))
        if math.isnan(b):
            continue
        threshold = thresholds.for_metric(metric)
        comp = Comparison("unchanged", "kernel", key, metric, b, c, unit="relative", threshold=threshold)
        if math.isnan(c) or b <= 0:
            comp.verdict, comp.note = "not compared", f"no {metric} in the current run"
            out.append(comp)
            continue
        comp.change = c / b - 1
        if use_spread:
            comp.baseline_band = speedup_band(base_row, metric, baseline.kernel)
            comp.current_band = speedup_band(cur_row, metric, current.kernel)
        else:
            comp.baseline_band, comp.current_band = (b, b), (c, c)
        (b_lo, b_hi), (c_lo, c_hi) = comp.baseline_band, comp.current_band
        if comp.change < -threshold - _EPS:
            comp.verdict = "regression" if c_hi < b_lo else "noise"
        elif comp.change > threshold + _EPS:
            comp.verdict = "improvement" if c_lo > b_hi else "noise"
        if comp.verdict == "noise":
            comp.note = "inside the runs' p20-p80 spread"
        out.append(comp)
    return out


def _compare_score(key, base_row, cur_row, thresholds: Thresholds, units: dict[str, float]) -> list[Comparison]:
    metric = key["metric"]
    b, c = _number(base_row.get("score")), _number(cur_row.get("score"))
    if math.isnan(b):
        return []
    threshold = thresholds.for_metric(metric)
    comp = Comparison("unchanged", "quality", key, metric, b, c, unit="points", threshold=threshold)
    if math.isnan(c):
        comp.verdict, comp.note = "not compared", "no score in the current run"
        return [comp]
    sign = -1.0 if _lower_is_better(metric) else 1.0
    comp.change = sign * (c - b) / units.get(metric, 1.0)
    if comp.change < -threshold - _EPS:
        comp.verdict = "regression"
    elif comp.change > threshold + _EPS:
        comp.verdict = "improvement"
    notes = ["lower is better"] if sign < 0 else []
    if thresholds.alpha is not None and comp.verdict != "unchanged":
        notes.append(_significance(comp, base_row, cur_row, thresholds.alpha))
    comp.note = "; ".join(notes)
    return [comp]


def _significance(comp: Comparison, base_row: dict, cur_row: dict, alpha: float) -> str:
    """Turn a change beyond the threshold that is not significant at alpha into noise; the note says why."""
    from nsa_bench.paired import drop_test

    tested = drop_test(base_row, cur_row)
    if tested is None:
        return "no example scores or intervals: threshold alone"
    p_value, how = tested
    if not p_value < alpha:
        comp.verdict = "noise"
        return f"not significant ({how})"
    return how


@dataclass
class GateResult:
    """All comparisons of one check, with the inputs and the exit code they imply."""

    baseline: str
    current: str
    thresholds: Thresholds
    allow_missing: bool
    use_spread: bool
    comparisons: list[Comparison]
    warnings: list[str]

    def counts(self) -> dict[str, int]:
        return {v: sum(c.verdict == v for c in self.comparisons) for v in VERDICTS}

    @property
    def failures(self) -> list[Comparison]:
        return [c for c in self.comparisons
                if c.verdict == "regression" or (c.verdict == "missing" and not self.allow_missing
                                                 and "baseline not ok" not in c.note)]

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    def to_json(self) -> dict:
        return {
            "passed": not self.failures, "exit_code": self.exit_code,
            "baseline": self.baseline, "current": self.current,
            "thresholds": {"max_speedup_drop": self.thresholds.speedup_drop,
                           "max_accuracy_drop_points": self.thresholds.accuracy_drop,
                           "significance_alpha": self.thresholds.alpha,
                           "per_metric": self.thresholds.per_metric},
            "allow_missing": self.allow_missing, "use_spread": self.use_spread,
            "counts": self.counts(), "warnings": self.warnings,
            "comparisons": [_clean(asdict(c)) for c in self.comparisons],
        }


def _clean(value):
    """JSON-safe: NaN -> None, tuples -> lists."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def compare(baseline_path: str | Path, current_path: str | Path, thresholds: Thresholds | None = None, *,
            allow_missing: bool = False, use_spread: bool = True) -> GateResult:
    """Compare two result CSVs; UsageError when they cannot be compared (no overlapping rows, ...)."""
    thresholds = thresholds or Thresholds()
    base_frame, cur_frame = read_table(baseline_path), read_table(current_path)
    # The optional quality keys (ctx_len, depth, length_bucket) that both files have: a column
    # that one side lacks must not split every row.
    optional = tuple(c for c in QUALITY_OPTIONAL_KEYS if c in base_frame.columns and c in cur_frame.columns)
    quality_keys = QUALITY_KEYS + optional
    base_rows = index_rows(base_frame, baseline_path, quality_keys)
    cur_rows = index_rows(cur_frame, current_path, quality_keys)
    warnings = []
    for rows in (base_rows, cur_rows):
        if rows.duplicates:
            warnings.append(f"{rows.path}: {rows.duplicates} rows repeat an earlier row's key; the last one counts")
        for kind, n in rows.skipped.items():
            warnings.append(f"{rows.path}: {n} {kind} rows are not compared (the gate compares kernel and quality rows)")
    timings = [sorted(set(f["timing"].dropna().astype(str))) if "timing" in f else [] for f in (base_frame, cur_frame)]
    if all(timings) and timings[0] != timings[1]:
        warnings.append(f"the runs were timed differently (baseline: {'; '.join(timings[0])}; current: "
                        f"{'; '.join(timings[1])}): decode steps of tens of us move by up to ~10% with the L2 flush")
    overlap = sum(len(base_rows.by_kind(k).keys() & cur_rows.by_kind(k).keys()) for k in ("kernel", "quality"))
    if overlap == 0:
        raise UsageError(f"no rows of {current_path} match a row of {baseline_path} on their keys "
                         "(different problems, configs or suites?)")
    units = _score_units(base_rows, cur_rows)
    comparisons: list[Comparison] = []
    for kind in ("kernel", "quality"):
        base, cur = base_rows.by_kind(kind), cur_rows.by_kind(kind)
        names = key_columns(kind, quality_keys)
        for k in sorted(base.keys() | cur.keys(), key=_natural):
            key = dict(zip(names, k))
            if k not in cur:
                status = _key_text(base[k].get("status"))
                note = "" if is_ok(status) else f"baseline not ok ({status}): not counted"
                comparisons.append(Comparison("missing", kind, key, key.get("metric", ""), note=note))
                continue
            if k not in base:
                comparisons.append(Comparison("new", kind, key, key.get("metric", ""),
                                              note=_key_text(cur[k].get("status"))))
                continue
            b_status, c_status = _key_text(base[k].get("status")), _key_text(cur[k].get("status"))
            if is_ok(b_status) and not is_ok(c_status):
                comparisons.append(Comparison("regression", kind, key, key.get("metric", "status"),
                                              note=f"was ok, now: {c_status}"))
            elif not is_ok(b_status) and not is_ok(c_status):
                comparisons.append(Comparison("not compared", kind, key, key.get("metric", ""),
                                              note=f"not ok in either run: {c_status}"))
            elif not is_ok(b_status):
                comparisons.append(Comparison("improvement", kind, key, key.get("metric", "status"),
                                              note=f"now ok, was: {b_status}"))
            elif kind == "kernel":
                comparisons += _compare_speedups(key, base[k], cur[k], base_rows, cur_rows, thresholds, use_spread)
            else:
                comparisons += _compare_score(key, base[k], cur[k], thresholds, units)
    return GateResult(str(baseline_path), str(current_path), thresholds, allow_missing, use_spread,
                      comparisons, warnings)
