"""The needle suite under torchrun (2 CPU processes, gloo): the ranks share the cells out and rank 0
writes the same rows as one process."""

import pandas as pd
import pytest
from torchrun import torchrun

from nsa_bench.cli import main

pytestmark = pytest.mark.slow
CELL_COLUMNS = ["attention", "model", "metric", "ctx_len", "depth", "status", "score", "n", "values", "answers",
                "prompt_tokens", "needle_depth"]


def test_sharded_needle_rows_equal_one_process(tmp_path):
    # 3 cells over 2 ranks: the last round has one cell; full attention (NSA decoding is slow on the CPU)
    args = ["needle", "--model", "tiny", "--attn", "full", "--ctx", "200", "--depths", "3", "--trials", "2",
            "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "one.csv"), "--report-dir", str(tmp_path / "r1")]) == 0
    printed = torchrun(*args, "--out", str(tmp_path / "two.csv"), "--report-dir", str(tmp_path / "r2")).stdout
    one, two = pd.read_csv(tmp_path / "one.csv"), pd.read_csv(tmp_path / "two.csv")
    assert len(one) == 6 and one[CELL_COLUMNS].equals(two[CELL_COLUMNS])
    assert printed.count("rows in") == 1 and (tmp_path / "r2" / "two_full.png").is_file()
    again = torchrun(*args, "--out", str(tmp_path / "two.csv"), "--report-dir", str(tmp_path / "r2")).stdout
    assert "skipping 3 cells" in again and len(pd.read_csv(tmp_path / "two.csv")) == 6  # resumed: nothing reran
