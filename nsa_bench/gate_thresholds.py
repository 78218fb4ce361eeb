"""The regression gate's thresholds: largest accepted drops, from options or a TOML file."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from nsa_bench.errors import UsageError

SPEEDUP_BASELINES = {"speedup_fa2": "fa2", "speedup_cudnn": "cudnn"}  # metric -> the implementation it divides
DEFAULT_SPEEDUP_DROP = 0.10
DEFAULT_ACCURACY_DROP = 1.0


def parse_relative(text: str | float, what: str = "--max-speedup-drop") -> float:
    """A relative drop as a fraction: '10%' -> 0.10, '0.1' -> 0.1 (a bare number must be below 1)."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UsageError(f"{what} must be a percentage like 10% or a fraction like 0.1, got {text!r}") from None
    if not raw.endswith("%") and value >= 1:
        raise UsageError(f"{what} {text!r} is ambiguous: write {raw}% for a percentage, or a fraction below 1")
    if not 0 <= value < 1 or math.isnan(value):
        raise UsageError(f"{what} must be at least 0% and below 100%, got {text!r}")
    return value


def parse_points(value, what: str = "--max-accuracy-drop") -> float:
    """An accuracy drop in points (0.01 of a score in [0, 1]); must be a number >= 0."""
    try:
        points = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number of points, got {value!r}") from None
    if not points >= 0:
        raise UsageError(f"{what} must be >= 0 points, got {value!r}")
    return points


def parse_alpha(value) -> float:
    """A significance level, strictly between 0 and 1."""
    if not 0 < value < 1:
        raise UsageError(f"--alpha must be between 0 and 1 (e.g. 0.05), got {value!r}")
    return float(value)


@dataclass
class Thresholds:
    """Largest accepted drops: speedups relative (0.10 = 10%), scores in points; per-metric overrides."""

    speedup_drop: float = DEFAULT_SPEEDUP_DROP
    accuracy_drop: float = DEFAULT_ACCURACY_DROP
    per_metric: dict[str, float] = field(default_factory=dict)
    alpha: float | None = None  # quality changes must also be significant at this level

    def for_metric(self, metric: str) -> float:
        if metric in self.per_metric:
            return self.per_metric[metric]
        return self.speedup_drop if metric in SPEEDUP_BASELINES else self.accuracy_drop


def load_thresholds(path: str | Path) -> Thresholds:
    """Thresholds from a TOML file:

        max_speedup_drop = "10%"      # relative drop of speedup_fa2 / speedup_cudnn
        max_accuracy_drop = 1.0       # points (0.01 for scores in [0, 1])
        [metrics]                     # per-metric overrides, same units
        speedup_cudnn = "15%"
        exact_match = 2.0
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"thresholds file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"thresholds file {path} is not valid TOML: {error}") from None
    unknown = set(data) - {"max_speedup_drop", "max_accuracy_drop", "metrics"}
    if unknown:
        raise UsageError(f"thresholds file {path}: unknown keys {', '.join(sorted(unknown))} "
                         "(known: max_speedup_drop, max_accuracy_drop, [metrics])")
    thresholds = Thresholds()
    if "max_speedup_drop" in data:
        thresholds.speedup_drop = parse_relative(data["max_speedup_drop"], f"{path}: max_speedup_drop")
    if "max_accuracy_drop" in data:
        thresholds.accuracy_drop = parse_points(data["max_accuracy_drop"], f"{path}: max_accuracy_drop")
    metrics = data.get("metrics", {})
    if not isinstance(metrics, dict):
        raise UsageError(f"thresholds file {path}: [metrics] must be a table of metric = threshold")
    for metric, value in metrics.items():
        where = f"{path}: metrics.{metric}"
        thresholds.per_metric[metric] = (
            parse_relative(value, where) if metric in SPEEDUP_BASELINES else parse_points(value, where)
        )
    return thresholds
