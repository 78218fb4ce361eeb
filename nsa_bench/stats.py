"""Intervals and paired tests for quality scores (pure Python and numpy).

- `wilson`: the Wilson score interval of a proportion k/n.
- `bootstrap_mean`: the percentile bootstrap interval of a mean (seeded, so deterministic).
- `interval`: Wilson when every score is 0 or 1, the bootstrap otherwise.
- `mcnemar_exact`: exact two-sided McNemar p-value, 2 * P(X <= min(b, c)) for X ~ Bin(b + c, 1/2).
- `sign_flip_p`: paired permutation test of a mean difference (signs flipped; exact when n is small).
- `newcombe_paired`: Newcombe's square-and-add interval of a difference of paired proportions.
- `paired_difference`: the NSA-minus-full fields of two attentions' scores on the same examples.

Every function takes empty input without raising: intervals and p-values are then NaN.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Mapping, Sequence

import numpy as np

LEVEL = 0.95
BOOTSTRAP_DRAWS = 2000
PERMUTATION_DRAWS = 10000
EXACT_FLIPS_UP_TO = 16  # sign-flip test enumerates all 2**n sign patterns up to this n
SEED = 0
NAN = float("nan")


def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2)


def wilson(k: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of the proportion k/n; (NaN, NaN) when n is 0."""
    if n <= 0:
        return NAN, NAN
    if not 0 <= k <= n:
        raise ValueError(f"wilson: {k} successes out of {n}")
    z2 = _z(level) ** 2
    p = k / n
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = math.sqrt(z2) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, center - half), min(1.0, center + half)


def bootstrap_mean(values: Sequence[float], level: float = LEVEL, draws: int = BOOTSTRAP_DRAWS,
                   seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of values; (NaN, NaN) when empty."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return NAN, NAN
    return _percentiles(_resampled_means(data, draws, np.random.default_rng(seed)), level)


def _resampled_means(data: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `draws` resamples (with replacement) of data, drawn in chunks of bounded memory."""
    per_chunk = max(1, 2_000_000 // data.size)
    return np.concatenate([data[rng.integers(0, data.size, size=(size, data.size))].mean(axis=1)
                           for size in _chunks(draws, per_chunk)])


def _percentiles(means: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def is_binary(values: Sequence[float]) -> bool:
    """Whether every value is 0 or 1 (right/wrong scores)."""
    return len(values) > 0 and all(v in (0, 1) for v in values)


def interval(values: Sequence[float], level: float = LEVEL, seed: int = SEED) -> tuple[float, float, str]:
    """(low, high, method) of the mean of per-example scores: Wilson for 0/1 scores, else bootstrap."""
    if is_binary(values):
        return (*wilson(sum(values), len(values), level), "wilson")
    return (*bootstrap_mean(values, level, seed=seed), "bootstrap")


def newcombe_paired(both: int, only_first: int, only_second: int, neither: int,
                    level: float = LEVEL) -> tuple[float, float]:
    """Newcombe's square-and-add interval (1998, method 10) of p1 - p2 for paired right/wrong outcomes,
    from the 2x2 counts of pairs: both right, only the first right, only the second, neither."""
    n = both + only_first + only_second + neither
    if n == 0:
        return NAN, NAN
    p1, p2 = (both + only_first) / n, (both + only_second) / n
    (l1, u1), (l2, u2) = wilson(both + only_first, n, level), wilson(both + only_second, n, level)
    margins = (both + only_first) * (only_second + neither) * (both + only_second) * (only_first + neither)
    cross = both * neither - only_first * only_second
    if margins == 0:
        psi = 0.0  # the correlation of the two proportions, continuity-corrected toward 0 when positive
    elif cross >= 0:
        psi = max(cross - n / 2, 0.0) / math.sqrt(margins)
    else:
        psi = cross / math.sqrt(margins)
    low = p1 - p2 - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * psi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = p1 - p2 + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * psi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, low), min(1.0, high)


def binom_cdf_half(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exact (integer sums)."""
    if k < 0:
        return 0.0
    return sum(math.comb(n, i) for i in range(min(k, n) + 1)) / 2**n


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value from the discordant pairs (b: only the first right, c: only
    the second right); 1.0 when there are none."""
    if b + c == 0:
        return 1.0
    return min(1.0, 2 * binom_cdf_half(min(b, c), b + c))


def sign_flip_p(differences: Sequence[float], draws: int = PERMUTATION_DRAWS, seed: int = SEED) -> float:
    """Two-sided paired permutation p-value of the mean difference: the share of sign patterns whose
    |mean| is at least the observed one. All 2**n patterns for n <= 16 (exact), else `draws` random
    patterns with p = (hits + 1) / (draws + 1). NaN when empty; 1.0 when every difference is 0."""
    d = np.asarray(differences, dtype=float)
    if d.size == 0:
        return NAN
    observed = abs(d.sum())
    if observed == 0:
        return 1.0
    tolerance = 1e-9 * max(1.0, float(np.abs(d).sum()))
    if d.size <= EXACT_FLIPS_UP_TO:
        patterns = ((np.arange(2**d.size)[:, None] >> np.arange(d.size)) & 1) * 2 - 1
        return float(np.mean(np.abs(patterns @ d) >= observed - tolerance))
    rng = np.random.default_rng(seed)
    hits = sum(int(np.sum(np.abs(rng.choice((-1.0, 1.0), size=(chunk, d.size)) @ d) >= observed - tolerance))
               for chunk in _chunks(draws))
    return (hits + 1) / (draws + 1)


def _chunks(total: int, size: int = 1000) -> list[int]:
    return [min(size, total - start) for start in range(0, total, size)]


def paired_difference(nsa: Mapping[str, float], full: Mapping[str, float], level: float = LEVEL,
                      seed: int = SEED) -> dict:
    """NSA minus full over the examples both have (same ids): `score` (mean difference), `ci_low`,
    `ci_high` and `ci_method` (Newcombe's paired interval when every score is 0/1, else the paired
    bootstrap), `p_value` and `test` (exact McNemar for 0/1 scores, else the sign-flip permutation
    test) and `n` (pairs). NaN fields when no example is shared."""
    ids = [i for i in nsa if i in full]
    a = [float(nsa[i]) for i in ids]
    b = [float(full[i]) for i in ids]
    if not ids:
        return {"score": NAN, "ci_low": NAN, "ci_high": NAN, "ci_method": "", "p_value": NAN, "n": 0, "test": ""}
    differences = [x - y for x, y in zip(a, b)]
    if is_binary(a) and is_binary(b):
        only_nsa = sum(x > y for x, y in zip(a, b))
        only_full = sum(y > x for x, y in zip(a, b))
        both = sum(x == y == 1 for x, y in zip(a, b))
        low, high = newcombe_paired(both, only_nsa, only_full, len(ids) - both - only_nsa - only_full, level)
        method, p_value, test = "newcombe_paired", mcnemar_exact(only_nsa, only_full), "mcnemar_exact"
    else:
        (low, high), method = bootstrap_mean(differences, level, seed=seed), "paired_bootstrap"
        p_value = sign_flip_p(differences, seed=seed)
        test = "sign_flip_exact" if len(ids) <= EXACT_FLIPS_UP_TO else "sign_flip"
    return {"score": sum(differences) / len(ids), "ci_low": low, "ci_high": high, "ci_method": method,
            "p_value": p_value, "n": len(ids), "test": test}


def macro_paired_difference(pairs: Sequence[tuple[Mapping[str, float], Mapping[str, float]]], level: float = LEVEL,
                            seed: int = SEED) -> dict:
    """NSA minus full of a macro average: `pairs` holds (nsa, full) scores by id of each group (subset).
    `score` is the mean over groups of the groups' paired mean differences; `ci_low`/`ci_high` a
    bootstrap resampling pairs within each group; `p_value` the sign-flip test of that weighted sum
    (each pair weighs 1 / (groups x its group's pairs)). NaN fields unless every group shares an id."""
    groups = [[float(nsa[i]) - float(full[i]) for i in nsa if i in full] for nsa, full in pairs]
    if not groups or not all(groups):
        return {"score": NAN, "ci_low": NAN, "ci_high": NAN, "ci_method": "", "p_value": NAN, "n": 0, "test": ""}
    weighted = [d / (len(groups) * len(g)) for g in groups for d in g]
    low, high = stratified_bootstrap_macro(groups, level, seed=seed)
    return {"score": sum(weighted), "ci_low": low, "ci_high": high, "ci_method": "stratified_bootstrap",
            "p_value": sign_flip_p(weighted, seed=seed),
            "n": len(weighted), "test": "sign_flip_exact" if len(weighted) <= EXACT_FLIPS_UP_TO else "sign_flip"}


def stratified_bootstrap_macro(groups: Sequence[Sequence[float]], level: float = LEVEL, draws: int = BOOTSTRAP_DRAWS,
                               seed: int = SEED) -> tuple[float, float]:
    """Bootstrap interval of a macro average (the mean of the groups' means), resampling within each group."""
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not groups:
        return NAN, NAN
    rng = np.random.default_rng(seed)
    return _percentiles(np.mean([_resampled_means(g, draws, rng) for g in groups], axis=0), level)
