"""The needle and LongBench suites under torchrun (2 CPU processes, gloo): the ranks share the cells or
examples out and rank 0 writes the same rows (and predictions) as one process; a rerun resumes."""

import json
from pathlib import Path

import pandas as pd
import pytest
from torchrun import torchrun

from nsa_bench.cli import main

pytestmark = pytest.mark.slow
LONGBENCH_DATA = Path(__file__).parent / "fixtures" / "longbench" / "data"
NEEDLE_COLUMNS = ["attention", "model", "metric", "ctx_len", "depth", "status", "score", "n", "values", "answers",
                  "prompt_tokens", "needle_depth"]
LONGBENCH_COLUMNS = ["attention", "model", "task", "length_bucket", "metric", "score", "n", "truncated"]


def test_sharded_needle_rows_equal_one_process(tmp_path):
    # 3 cells over 2 ranks: the last round has one cell; full attention (NSA decoding is slow on the CPU)
    args = ["needle", "--model", "tiny", "--attn", "full", "--ctx", "200", "--depths", "3", "--trials", "2",
            "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "one.csv"), "--report-dir", str(tmp_path / "r1")]) == 0
    printed = torchrun(*args, "--out", str(tmp_path / "two.csv"), "--report-dir", str(tmp_path / "r2")).stdout
    one, two = pd.read_csv(tmp_path / "one.csv"), pd.read_csv(tmp_path / "two.csv")
    assert len(one) == 6 and one[NEEDLE_COLUMNS].equals(two[NEEDLE_COLUMNS])
    assert printed.count("rows in") == 1 and (tmp_path / "r2" / "two_full.png").is_file()
    again = torchrun(*args, "--out", str(tmp_path / "two.csv"), "--report-dir", str(tmp_path / "r2")).stdout
    assert "skipping 3 cells" in again and len(pd.read_csv(tmp_path / "two.csv")) == 6  # resumed: nothing reran


def test_sharded_longbench_equals_one_process(tmp_path):
    args = ["longbench", "run", "--data", str(LONGBENCH_DATA), "--model", "tiny", "--attn", "full",
            "--datasets", "hotpotqa,trec_e", "--max-examples", "3", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "one.csv"), "--preds", str(tmp_path / "p1")]) == 0
    torchrun(*args, "--out", str(tmp_path / "two.csv"), "--preds", str(tmp_path / "p2"))
    for subset in ("hotpotqa", "trec_e"):
        one, two = ([json.loads(x) for x in (tmp_path / p / "tiny" / "full" / f"{subset}.jsonl").read_text().splitlines()]
                    for p in ("p1", "p2"))
        assert len(one) == 3 and one == two
    one, two = pd.read_csv(tmp_path / "one.csv"), pd.read_csv(tmp_path / "two.csv")
    assert len(one) > 0 and one[LONGBENCH_COLUMNS].equals(two[LONGBENCH_COLUMNS])
    torchrun(*args, "--out", str(tmp_path / "two.csv"), "--preds", str(tmp_path / "p2"))  # resumed: no new rows
    assert len(pd.read_csv(tmp_path / "two.csv")) == len(two)
