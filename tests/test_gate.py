"""`nsa-bench check`: the gate's decisions on synthetic result CSVs (known answers)."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from nsa_bench.cli import main
from nsa_bench.gate import compare, speedup_band
from nsa_bench.gate_thresholds import Thresholds, load_thresholds, parse_relative
from nsa_bench.errors import UsageError
from synthetic_results import kernel_rows, lmeval_rows, longbench_rows, needle_rows, train_rows, write_csv


@pytest.fixture
def base(tmp_path):
    return write_csv(tmp_path / "base.csv", kernel_rows())


def check(capsys, *args):
    code = main(["check", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def verdicts(result, verdict):
    return {(c.key.get("impl") or c.key.get("task"), c.key.get("mode") or c.key.get("attention"),
             c.key.get("seq_len") or c.metric, c.metric) for c in result.comparisons if c.verdict == verdict}


def test_identical_runs_pass(capsys, base):
    code, out = check(capsys, "--baseline", base, "--current", base)
    assert code == 0
    assert "PASS" in out and "regression" not in out
    result = compare(base, base)
    assert result.counts()["unchanged"] > 0 and not result.failures


def test_slower_nsa_is_a_regression_exit_1(capsys, tmp_path, base):
    cur = write_csv(tmp_path / "cur.csv", kernel_rows(slower={("nsa", "fwd", 16384): 1.3}))
    code, out = check(capsys, "--baseline", base, "--current", cur)
    assert code == 1
    assert "FAIL" in out and "regression" in out
    result = compare(base, cur)
    assert verdicts(result, "regression") == {("nsa", "fwd", "16384", "speedup_fa2"), ("nsa", "fwd", "16384", "speedup_cudnn")}
    comp = next(c for c in result.comparisons if c.verdict == "regression")
    assert comp.change == pytest.approx(1 / 1.3 - 1)


def test_subprocess_exit_code_is_1_on_regression(tmp_path, base):
    cur = write_csv(tmp_path / "cur.csv", kernel_rows(slower={("nsa", "bwd", 8192): 2.0}))
    proc = subprocess.run([sys.executable, "-m", "nsa_bench.cli", "check", "--baseline", str(base), "--current", str(cur)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr


def test_improvement_passes_and_is_listed(capsys, tmp_path, base):
    cur = write_csv(tmp_path / "cur.csv", kernel_rows(slower={("nsa", "fwd", 8192): 0.7}))
    code, out = check(capsys, "--baseline", base, "--current", cur, "--json", tmp_path / "gate.json")
    assert code == 0
    assert "improvement" in out and "PASS" in out
    summary = json.loads((tmp_path / "gate.json").read_text())
    assert summary["passed"] is True and summary["exit_code"] == 0
    assert summary["counts"]["improvement"] == 2 and summary["counts"]["regression"] == 0
    better = [c for c in summary["comparisons"] if c["verdict"] == "improvement"]
    assert {c["metric"] for c in better} == {"speedup_fa2", "speedup_cudnn"}
    assert all(c["key"]["impl"] == "nsa" and c["key"]["seq_len"] == "8192" for c in better)
    assert better[0]["change"] == pytest.approx(1 / 0.7 - 1)


def test_small_drop_within_threshold_passes(capsys, tmp_path, base):
    slower = {(impl, mode, t): 1.08 for impl in ("nsa", "nsa:cuda_graph") for mode in ("fwd", "bwd", "decode")
              for t in (8192, 16384)}
    cur = write_csv(tmp_path / "cur.csv", kernel_rows(slower=slower))
    code, out = check(capsys, "--baseline", base, "--current", cur)
    assert code == 0
    assert compare(base, cur).counts()["regression"] == 0


def test_drop_beyond_threshold_inside_the_spread_is_noise(capsys, tmp_path, base):
    # 15% slower, but the current run's p20-p80 is +-10%: the bands overlap, so it does not fail.
    cur = write_csv(tmp_path / "cur.csv", kernel_rows(slower={("nsa", "fwd", 16384): 1.15}, spread=0.10))
    code, out = check(capsys, "--baseline", base, "--current", cur)
    assert code == 0
    assert "noise" in out
    result = compare(base, cur)
    assert verdicts(result, "noise") == {("nsa", "fwd", "16384", "speedup_fa2"), ("nsa", "fwd", "16384", "speedup_cudnn")}
    # judged on medians alone, the same drop fails
    code, _ = check(capsys, "--baseline", base, "--current", cur, "--ignore-spread")
    assert code == 1


def test_speedup_band_combines_both_implementations_spread(tmp_path):
    rows = {}
    from nsa_bench.gate import KERNEL_KEYS, _key_text

    for row in kernel_rows(spread=0.05):
        rows[tuple(_key_text(row.get(c)) for c in KERNEL_KEYS)] = row
    nsa = next(r for r in rows.values() if r["impl"] == "nsa" and r["mode"] == "fwd" and r["seq_len"] == 8192)
    lo, hi = speedup_band(nsa, "speedup_fa2", rows)
    s = nsa["speedup_fa2"]
    assert lo == pytest.approx(s * 0.95 / 1.05) and hi == pytest.approx(s * 1.05 / 0.95)
    # a CUDA-graph variant is banded with its graphed baseline's spread (here the same +-5%)
    graph = next(r for r in rows.values() if r["impl"] == "nsa:cuda_graph" and r["seq_len"] == 8192)
    lo, hi = speedup_band(graph, "speedup_fa2", rows)
    assert lo == pytest.approx(graph["speedup_fa2"] * 0.95 / 1.05)


def test_missing_row_fails_unless_allowed_and_new_rows_are_info(capsys, tmp_path, base):
    rows = [r for r in kernel_rows(seq_lens=(8192, 16384, 32768))
            if not (r["impl"] == "nsa" and r["mode"] == "decode" and r["seq_len"] == 16384)]
    cur = write_csv(tmp_path / "cur.csv", rows)
    code, out = check(capsys, "--baseline", base, "--current", cur)
    assert code == 1
    assert "missing" in out and "new" in out
    result = compare(base, cur)
    assert verdicts(result, "missing") == {("nsa", "decode", "16384", "")}
    assert {c.key["seq_len"] for c in result.comparisons if c.verdict == "new"} == {"32768"}
    code, out = check(capsys, "--baseline", base, "--current", cur, "--allow-missing")
    assert code == 0 and "missing rows allowed" in out


def test_status_change_to_oom_is_a_regression(tmp_path, base):
    cur = write_csv(tmp_path / "cur.csv", kernel_rows(statuses={("nsa", "bwd", 16384): "oom"}))
    result = compare(base, cur)
    assert result.exit_code == 1
    [comp] = [c for c in result.comparisons if c.verdict == "regression"]
    assert comp.key["impl"] == "nsa" and comp.key["mode"] == "bwd" and "oom" in comp.note
    # and back: ok again is an improvement, never a failure
    assert compare(cur, base).exit_code == 0


def test_keys_match_across_number_formats(tmp_path, base):
    frame = pd.read_csv(base)
    frame["seq_len"] = frame["seq_len"].astype(float)  # 8192.0
    frame.to_csv(tmp_path / "float.csv", index=False)
    result = compare(base, tmp_path / "float.csv")
    assert result.counts()["missing"] == 0 and result.counts()["new"] == 0


@pytest.mark.parametrize("make", ["missing_file", "not_csv", "empty", "no_key_column", "no_overlap", "train_only"])
def test_unusable_input_exits_2_with_one_line(capsys, tmp_path, base, make):
    bad = tmp_path / "bad.csv"
    if make == "not_csv":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    elif make == "empty":
        bad.write_text("")
    elif make == "no_key_column":
        pd.read_csv(base).drop(columns=["dtype"]).to_csv(bad, index=False)
    elif make == "no_overlap":
        write_csv(bad, kernel_rows(seq_lens=(4096,)))
    elif make == "train_only":
        write_csv(bad, train_rows(5))
    code, out = check(capsys, "--baseline", base, "--current", bad)
    assert code == 2
    assert len(out.strip().splitlines()) == 1 and out.startswith("nsa-bench: error:")
    assert "Traceback" not in out


def test_quality_scores_in_points(tmp_path):
    base = write_csv(tmp_path / "base.csv", needle_rows() + longbench_rows() + lmeval_rows())
    cur_rows = (needle_rows(scores={("nsa", 4096, 0.5): 0.0})  # -100 points in one needle cell
                + longbench_rows(scores={("nsa", "hotpotqa"): 0.405})  # -0.5 points: within 1.0
                + lmeval_rows(scores={("nsa", "mmlu", "acc"): 0.29}))  # -2 points
    cur = write_csv(tmp_path / "cur.csv", cur_rows)
    result = compare(base, cur)
    assert verdicts(result, "regression") == {("passkey", "nsa", "exact_match", "exact_match"),
                                              ("passkey", "nsa", "prefix_match", "prefix_match"),
                                              ("mmlu", "nsa", "acc", "acc")}
    mmlu = next(c for c in result.comparisons if c.key.get("task") == "mmlu" and c.verdict == "regression")
    assert mmlu.change == pytest.approx(-2.0) and mmlu.unit == "points"
    hotpot = next(c for c in result.comparisons if c.key.get("task") == "hotpotqa" and c.key["attention"] == "nsa")
    assert hotpot.verdict == "unchanged" and hotpot.change == pytest.approx(-0.5)
    # the needle cells are told apart by ctx_len and depth, LongBench rows by length_bucket
    assert result.counts()["missing"] == 0 and not result.warnings
    # a drop of exactly the threshold passes: 0.80 -> 0.79 is 1.0 point
    b = write_csv(tmp_path / "b.csv", lmeval_rows(scores={("nsa", "mmlu", "acc"): 0.80}))
    c = write_csv(tmp_path / "c.csv", lmeval_rows(scores={("nsa", "mmlu", "acc"): 0.79}))
    assert compare(b, c).exit_code == 0
    assert compare(b, c, Thresholds(accuracy_drop=0.5)).exit_code == 1


def test_scores_outside_0_1_use_their_own_units(tmp_path):
    def rows(value):
        return [{"kind": "quality", "suite": "lmeval", "task": "x", "attention": "nsa", "model": "m",
                 "metric": "f1_percent", "score": value, "status": "ok"}]

    base, cur = write_csv(tmp_path / "b.csv", rows(45.0)), write_csv(tmp_path / "c.csv", rows(44.5))
    assert compare(base, cur).exit_code == 0  # -0.5 points on a 0-100 scale
    cur = write_csv(tmp_path / "c.csv", rows(43.0))
    assert compare(base, cur).exit_code == 1  # -2 points


def test_lower_is_better_metrics(tmp_path):
    def rows(value):
        return [{"kind": "quality", "suite": "lmeval", "task": "wikitext", "attention": "nsa", "model": "m",
                 "metric": "word_perplexity", "score": value, "status": "ok"}]

    base = write_csv(tmp_path / "b.csv", rows(20.0))
    assert compare(base, write_csv(tmp_path / "up.csv", rows(23.0))).exit_code == 1
    result = compare(base, write_csv(tmp_path / "down.csv", rows(17.0)))
    assert result.exit_code == 0 and result.counts()["improvement"] == 1


def test_toml_thresholds(capsys, tmp_path, base):
    cur = write_csv(tmp_path / "cur.csv", kernel_rows(slower={("nsa", "fwd", 16384): 1.3}))  # -23%
    loose = tmp_path / "loose.toml"
    loose.write_text('max_speedup_drop = "30%"\nmax_accuracy_drop = 2.5\n')
    assert check(capsys, "--baseline", base, "--current", cur, "--thresholds", loose)[0] == 0
    # a command-line flag wins over the file
    assert check(capsys, "--baseline", base, "--current", cur, "--thresholds", loose, "--max-speedup-drop", "20%")[0] == 1
    # per-metric overrides: only speedup_cudnn loosened, speedup_fa2 still fails
    per_metric = tmp_path / "metric.toml"
    per_metric.write_text('[metrics]\nspeedup_cudnn = 0.3\nexact_match = 5.0\n')
    thresholds = load_thresholds(per_metric)
    assert thresholds.for_metric("speedup_cudnn") == pytest.approx(0.3)
    assert thresholds.for_metric("speedup_fa2") == pytest.approx(0.10)
    assert thresholds.for_metric("exact_match") == 5.0 and thresholds.for_metric("acc") == 1.0
    result = compare(base, cur, thresholds)
    assert verdicts(result, "regression") == {("nsa", "fwd", "16384", "speedup_fa2")}


@pytest.mark.parametrize("text", ['max_speedup_drop = "ten"', "max_speedup_drop = 10", "max_accuracy_drop = -1",
                                  "typo_key = 1", "max_speedup_drop = [", "[metrics]\nspeedup_fa2 = 150"])
def test_bad_toml_exits_2(capsys, tmp_path, base, text):
    bad = tmp_path / "bad.toml"
    bad.write_text(text + "\n")
    code, out = check(capsys, "--baseline", base, "--current", base, "--thresholds", bad)
    assert code == 2 and len(out.strip().splitlines()) == 1


def test_parse_relative():
    assert parse_relative("10%") == pytest.approx(0.10)
    assert parse_relative("0.1") == pytest.approx(0.10)
    assert parse_relative("0") == 0
    for bad in ("10", "-5%", "100%", "x"):
        with pytest.raises(UsageError):
            parse_relative(bad)


def test_duplicates_and_train_rows_are_reported_not_compared(tmp_path):
    rows = lmeval_rows()
    base = write_csv(tmp_path / "b.csv", rows + train_rows(3))
    cur = write_csv(tmp_path / "c.csv", rows + [{**rows[0], "score": 0.5}])  # a rerun row: the last one counts
    result = compare(base, cur)
    assert any("train rows are not compared" in w for w in result.warnings)
    assert any("repeat an earlier row's key" in w for w in result.warnings)
    assert verdicts(result, "improvement") == {("gsm8k", "nsa", "exact_match:strict-match", "exact_match:strict-match")}


def test_graph_column_and_dtype_spellings_map_to_the_schema(tmp_path, base):
    """A CSV that marks CUDA-graph replays with graph=True and writes dtype bfloat16 (as the decode
    bench's own runs do) matches the schema's `<impl>:cuda_graph` rows and `bf16`."""
    frame = pd.read_csv(base)
    frame["dtype"] = "bfloat16"
    frame["graph"] = frame["impl"].str.endswith(":cuda_graph")
    frame["impl"] = frame["impl"].str.replace(":cuda_graph", "", regex=False)
    frame.to_csv(tmp_path / "graph.csv", index=False)
    result = compare(base, tmp_path / "graph.csv")
    assert not result.warnings  # no collapsed duplicates
    assert result.counts()["missing"] == 0 and result.counts()["new"] == 0 and result.exit_code == 0
    slow = frame.copy()
    hit = (slow["impl"] == "nsa") & slow["graph"] & (slow["seq_len"] == 16384)
    slow.loc[hit, ["ms", "ms_p20", "ms_p80"]] *= 1.5
    slow.loc[hit, ["speedup_fa2", "speedup_cudnn"]] /= 1.5
    slow.to_csv(tmp_path / "slow.csv", index=False)
    result = compare(tmp_path / "graph.csv", tmp_path / "slow.csv")
    assert verdicts(result, "regression") == {("nsa:cuda_graph", "decode", "16384", "speedup_fa2"),
                                              ("nsa:cuda_graph", "decode", "16384", "speedup_cudnn")}


def _scored(right: int, n: int = 100, **ci):
    """A needle-like accuracy row whose first `right` of n examples are right (per-example scores)."""
    from nsa_bench.paired import scored_fields

    fields = scored_fields({str(i): float(i < right) for i in range(n)}) if not ci else ci
    return [{"kind": "quality", "suite": "needle", "task": "niah_single", "attention": "nsa", "model": "m",
             "metric": "exact_match", "score": right / n, "n": n, "status": "ok", **fields}]


def test_significant_drop_option(capsys, tmp_path):
    base = write_csv(tmp_path / "b.csv", _scored(90))
    small = write_csv(tmp_path / "small.csv", _scored(87))  # -3 points: 3 discordant pairs, McNemar p = 0.25
    large = write_csv(tmp_path / "large.csv", _scored(60))  # -30 points: p = 2 * 0.5**30
    assert compare(base, small).exit_code == 1  # beyond 1 point, fails without the option
    result = compare(base, small, Thresholds(alpha=0.05))
    (comp,) = result.comparisons
    assert result.exit_code == 0 and comp.verdict == "noise" and "mcnemar_exact p=0.25" in comp.note
    assert compare(base, large).exit_code == 1
    result = compare(base, large, Thresholds(alpha=0.05))
    assert result.exit_code == 1 and result.comparisons[0].verdict == "regression"
    code, out = check(capsys, "--baseline", base, "--current", small, "--significant")
    assert code == 0 and "noise" in out and "significant at alpha 0.05" in out
    assert check(capsys, "--baseline", base, "--current", large, "--significant", "--alpha", "0.01")[0] == 1
    code, out = check(capsys, "--baseline", base, "--current", small, "--significant", "--alpha", "1.5")
    assert code == 2 and "--alpha" in out


def test_significant_drop_from_intervals_or_threshold_alone(tmp_path):
    base = write_csv(tmp_path / "b.csv", _scored(90, ci_low=0.82, ci_high=0.95))
    overlap = write_csv(tmp_path / "o.csv", _scored(85, ci_low=0.77, ci_high=0.91))
    apart = write_csv(tmp_path / "a.csv", _scored(60, ci_low=0.50, ci_high=0.69))
    assert compare(base, overlap, Thresholds(alpha=0.05)).comparisons[0].verdict == "noise"
    assert compare(base, apart, Thresholds(alpha=0.05)).exit_code == 1
    plain = [{k: v for k, v in r.items() if k not in ("ci_low", "ci_high")} for r in _scored(90, ci_low=0, ci_high=1)]
    b2 = write_csv(tmp_path / "b2.csv", plain)
    c2 = write_csv(tmp_path / "c2.csv", [{**plain[0], "score": 0.85}])
    result = compare(b2, c2, Thresholds(alpha=0.05))
    assert result.exit_code == 1 and "threshold alone" in result.comparisons[0].note


def test_runs_timed_differently_get_a_warning(capsys, tmp_path):
    rows = kernel_rows()
    base = write_csv(tmp_path / "b.csv", [{**r, "timing": "cuda events, L2 flushed"} for r in rows])
    same = write_csv(tmp_path / "s.csv", [{**r, "timing": "cuda events, L2 flushed"} for r in rows])
    read = write_csv(tmp_path / "r.csv", [{**r, "timing": "cuda events, L2 flushed by a read (clean lines)"} for r in rows])
    assert not any("timed differently" in w for w in compare(base, same).warnings)
    warned = [w for w in compare(base, read).warnings if "timed differently" in w]
    assert len(warned) == 1 and "by a read" in warned[0]
    code, out = check(capsys, "--baseline", base, "--current", read)
    assert code == 0 and "timed differently" in out
