"""The quality-gate example's commands on a CPU: the needle family on a pair, then `check` against a
baseline, with and without --significant."""

import json

import pandas as pd
import pytest
import yaml

from nsa_bench.cli import main

EXAMPLE = "examples/quality-gate.yml"


def test_example_runs_the_family_and_gates_with_significance():
    steps = {s.get("name", ""): s.get("run", "") for s in yaml.safe_load(open(EXAMPLE))["jobs"]["needle-family"]["steps"]}
    assert "--task family" in steps["Needle family"] and "--attn both" in steps["Needle family"]
    assert "--significant" in steps["Quality gate"] and "--baseline" in steps["Quality gate"]


@pytest.mark.slow
def test_gate_fails_a_real_drop_only_when_significant(tmp_path):
    base = tmp_path / "base.csv"
    grid = ["--task", "niah_single", "--model", "tiny", "--attn", "both", "--ctx", "512", "--extrapolate", "--depths", "2",
            "--trials", "2", "--device", "cpu", "--report-dir", str(tmp_path / "r")]
    assert main(["needle", *grid, "--out", str(base)]) == 0
    assert main(["check", "--baseline", str(base), "--current", str(base)]) == 0
    # a baseline that claims every answer right: 4 discordant pairs per cell, McNemar p = 0.125
    rows = pd.read_csv(base)
    exact = rows["metric"] == "exact_match"
    rows.loc[exact & rows["attention"].isin(["nsa", "full"]), "score"] = 1.0
    rows["example_scores"] = rows["example_scores"].map(
        lambda s: json.dumps({k: 1.0 for k in json.loads(s)}) if isinstance(s, str) else s)
    better = tmp_path / "better.csv"
    rows.to_csv(better, index=False)
    args = ["check", "--baseline", str(better), "--current", str(base), "--max-accuracy-drop", "0.05"]
    assert main(args) == 1
    assert main(args + ["--significant"]) == 0  # 4 pairs a cell cannot show a drop at p < 0.05
