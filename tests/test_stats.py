"""Intervals and paired tests against values computed by hand or from published tables."""

import json
import math

import pytest

from nsa_bench.paired import drop_test, example_scores, nsa_minus_full, scored_fields
from nsa_bench.stats import (
    binom_cdf_half, bootstrap_mean, interval, mcnemar_exact, newcombe_paired, paired_difference, sign_flip_p,
    stratified_bootstrap_macro, wilson,
)


def test_wilson_known_values():
    # z = 1.959964: 0/10 -> [0, z^2/(n+z^2)], 10/10 -> [n/(n+z^2), 1], 5/10 -> 0.5 -/+ 0.2634 (tables)
    assert wilson(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-5)
    assert wilson(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    assert wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)  # Newcombe (1998), Table I


def test_wilson_empty_and_bad_input():
    low, high = wilson(0, 0)
    assert math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError):
        wilson(11, 10)


def test_mcnemar_exact_is_twice_the_binomial_tail():
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)  # 2 * P(X <= 1), X ~ Bin(10, 1/2)
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert binom_cdf_half(3, 6) == pytest.approx(42 / 64)


def test_newcombe_paired_interval():
    # Cavo et al. (2012) in Fagerland, Lydersen & Laake, chapter 8: -0.0621 (95% CI -0.1186 to -0.0046)
    assert newcombe_paired(59, 6, 16, 80) == pytest.approx((-0.1186, -0.0046), abs=1e-4)
    # all three pairs: only the second right -> the difference is -1, upper bound from Wilson 0/3 and 3/3
    low, high = newcombe_paired(0, 0, 3, 0)
    assert low == -1.0 and high == pytest.approx(-1 + 2**0.5 * 3.8415 / 6.8415, abs=1e-4)
    assert all(math.isnan(v) for v in newcombe_paired(0, 0, 0, 0))


def test_sign_flip_exact_enumeration():
    # |sum| of +-1 +-2 +-3 is 6, 4, 2, 0 (each twice): only the two patterns at 6 reach the observed 6
    assert sign_flip_p([1, 2, 3]) == pytest.approx(2 / 8)
    # +-1 +-1 +-2: sums 4, 2, 2, 0, 0, -2, -2, -4; observed 4 -> 2/8; observed |1+1-2| = 0 -> 1
    assert sign_flip_p([1, 1, 2]) == pytest.approx(2 / 8)
    assert sign_flip_p([1, 1, -2]) == 1.0
    assert sign_flip_p([0, 0]) == 1.0
    assert math.isnan(sign_flip_p([]))


def test_sign_flip_sampled_for_many_pairs_is_seeded_and_small_for_a_clear_shift():
    diffs = [0.3 + 0.01 * i for i in range(40)]
    p = sign_flip_p(diffs)
    assert p == sign_flip_p(diffs) and p == pytest.approx(1 / 10001)
    noisy = [(-1) ** i * 0.5 for i in range(40)]
    assert sign_flip_p(noisy) == 1.0


def test_bootstrap_is_deterministic_and_brackets_the_mean():
    values = [0.1, 0.4, 0.35, 0.8, 0.6, 0.2, 0.9, 0.5]
    low, high = bootstrap_mean(values)
    assert (low, high) == bootstrap_mean(values)
    assert low < sum(values) / len(values) < high and 0.1 <= low and high <= 0.9
    assert bootstrap_mean([0.7]) == (0.7, 0.7)
    assert all(math.isnan(v) for v in bootstrap_mean([]))


def test_interval_picks_wilson_for_right_wrong_scores():
    assert interval([1, 0, 1, 1, 0, 1, 0, 1, 0, 0]) == pytest.approx((0.23659, 0.76341, "wilson"), abs=1e-5)
    assert interval([0.5, 1.0])[2] == "bootstrap"
    low, high, _ = interval([])
    assert math.isnan(low) and math.isnan(high)


def test_paired_difference_binary_uses_mcnemar_on_shared_ids():
    nsa = {str(i): 1.0 if i < 2 else 0.0 for i in range(12)}  # right on 0, 1
    full = {str(i): 1.0 if i < 10 else 0.0 for i in range(10)}  # right on 0..9 (ids 10, 11 absent)
    row = paired_difference(nsa, full)
    # shared 10 pairs: b = 0 (only nsa right), c = 8 (only full right)
    assert row["n"] == 10 and row["score"] == pytest.approx(-0.8)
    assert row["test"] == "mcnemar_exact" and row["p_value"] == pytest.approx(2 / 256)
    assert row["ci_method"] == "newcombe_paired" and row["ci_low"] <= -0.8 <= row["ci_high"] <= 0
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(newcombe_paired(2, 0, 8, 0))


def test_paired_difference_continuous_and_empty():
    row = paired_difference({"a": 0.5, "b": 0.7, "c": 0.9}, {"a": 0.4, "b": 0.5, "c": 0.6})
    assert row["test"] == "sign_flip_exact" and row["p_value"] == pytest.approx(2 / 8)
    assert row["score"] == pytest.approx(0.2) and row["ci_method"] == "paired_bootstrap"
    empty = paired_difference({"a": 1.0}, {"b": 0.0})
    assert empty["n"] == 0 and math.isnan(empty["score"]) and math.isnan(empty["p_value"])


def test_stratified_bootstrap_macro_brackets_the_macro_average():
    low, high = stratified_bootstrap_macro([[0.0, 1.0, 1.0, 0.0], [0.5, 0.6, 0.7]])
    assert low < (0.5 + 0.6) / 2 < high
    assert all(math.isnan(v) for v in stratified_bootstrap_macro([]))


def _row(attention, depth, scores, status="ok", model=None):
    return {"suite": "needle", "task": "niah_single", "metric": "exact_match", "ctx_len": 4096, "depth": depth,
            "attention": attention, "model": model or f"m-{attention}", "status": status, **scored_fields(scores)}


def test_nsa_minus_full_rows_per_cell_and_pooled():
    rows = [_row("nsa", 0.0, {"0:1": 1, "1:2": 0}), _row("full", 0.0, {"0:1": 1, "1:2": 1}),
            _row("nsa", 1.0, {"0:1": 0, "1:2": 0}), _row("full", 1.0, {"0:1": 1, "1:2": 1}),
            _row("nsa", 0.5, {"0:1": 1}), _row("full", 0.5, {}, status="oom")]
    keys = ("suite", "task", "metric", "ctx_len", "depth")
    cells = {r["depth"]: r for r in nsa_minus_full(rows, keys)}
    assert set(cells) == {0.0, 1.0}  # depth 0.5: full did not run
    assert cells[1.0]["score"] == -1.0 and cells[1.0]["p_value"] == pytest.approx(0.5)  # McNemar b=0, c=2
    assert cells[0.0]["model"] == "m-nsa vs m-full" and cells[0.0]["attention"] == "nsa-full"
    (pooled,) = nsa_minus_full(rows, keys, pool_over="depth")
    assert math.isnan(pooled["depth"]) and pooled["pooled_over"] == "depth" and pooled["task"] == "niah_single"
    assert pooled["n"] == 4 and pooled["score"] == -0.75 and pooled["p_value"] == pytest.approx(2 * 1 / 8)


def test_example_scores_read_back_from_csv_text():
    row = scored_fields({"a": 1, "b": 0})
    assert json.loads(row["example_scores"]) == {"a": 1.0, "b": 0.0}
    assert example_scores(row) == {"a": 1.0, "b": 0.0}
    assert example_scores({"example_scores": float("nan")}) is None
    assert example_scores({"example_scores": "not json"}) is None


def test_drop_test_paired_then_intervals():
    base = scored_fields({str(i): 1 for i in range(20)})
    small = scored_fields({str(i): 1 if i else 0 for i in range(20)})
    large = scored_fields({str(i): 1 if i < 5 else 0 for i in range(20)})
    assert drop_test(base, small)[0] == 1.0  # one discordant pair: McNemar p = 1
    assert drop_test(base, large)[0] < 0.001
    assert drop_test({"ci_low": 0.5, "ci_high": 0.9}, {"ci_low": 0.4, "ci_high": 0.6})[0] == 1.0
    assert drop_test({"ci_low": 0.5, "ci_high": 0.9}, {"ci_low": 0.1, "ci_high": 0.4})[0] == 0.0
    assert drop_test({"score": 0.5}, {"score": 0.4}) is None


def test_macro_paired_difference_weights_each_group_equally():
    from nsa_bench.stats import macro_paired_difference

    # group 1: diffs 0, -1 (mean -0.5); group 2: diffs -0.5, 0, 0, 0 (mean -0.125); macro -0.3125
    row = macro_paired_difference([({"a": 1, "b": 0}, {"a": 1, "b": 1}),
                                   ({"c": 0.5, "d": 1, "e": 1, "f": 1}, {"c": 1, "d": 1, "e": 1, "f": 1, "g": 0})])
    assert row["score"] == pytest.approx(-0.3125) and row["n"] == 6
    # weighted diffs -1/4 and -1/16 (the rest 0): |+-1/4 +-1/16| reaches 5/16 in 2 of 4 patterns
    assert row["p_value"] == 0.5 and row["test"] == "sign_flip_exact"
    assert row["ci_low"] <= row["score"] <= row["ci_high"]
    assert math.isnan(macro_paired_difference([({"a": 1}, {"b": 1})])["score"])
