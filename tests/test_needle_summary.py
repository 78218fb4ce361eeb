"""The needle run's end: the scores table on the terminal, the unsupported count, the rerun's skip line,
progress lines in a log, and exit 2 when no cell could run."""

from __future__ import annotations

from test_needle import Loader, grid

from nsa_bench.cli import main
from nsa_bench.suites import needle as nd
from nsa_bench.suites.needle_summary import run_summary, summary_lines


def test_summary_table_per_attention_and_length_with_nsa_minus_full(tmp_path):
    """The 600-token window finds 1 of 3 needles at 1024 (known heatmap): 0.67 and -0.33 there."""
    out, models = tmp_path / "n.csv", {"nsa": "m-nsa", "full": "m-full"}
    nd.run_needle(models, Loader(), grid(), out, None, progress=False)
    summary = run_summary(out, models, grid())
    assert summary.ok == 12 and not summary.unsupported and not summary.nothing_ran
    assert summary_lines(summary, "passkey") == [
        "needle passkey: exact match (mean over depths and trials)",
        "              512     1k    all",
        "nsa          1.00   0.67   0.83",
        "full         1.00   1.00   1.00",
        "nsa-full    +0.00  -0.33  -0.17",
        "cells: 12; 12 ok",
    ]
    other = run_summary(out, models, grid(seed=7))  # another grid's rows are not counted
    assert other.cells == 0


def test_unsupported_cells_are_counted_with_their_reason(tmp_path):
    out = tmp_path / "n.csv"
    nd.run_needle({"full": "m"}, Loader(max_length=600), grid(), out, None, progress=False)
    summary = run_summary(out, {"full": "m"}, grid())
    assert summary.ok == 3 and not summary.nothing_ran
    assert summary_lines(summary, "passkey")[-1] == (
        "cells: 6; 3 ok; 3 unsupported: context > model max_length 600 (see --extrapolate)")


def test_rerun_says_it_skips_and_a_log_gets_a_line_per_cell(tmp_path, capsys):
    out, models = tmp_path / "n.csv", {"full": "m"}
    nd.run_needle(models, Loader(), grid(), out, None, progress=True)  # capsys: not a terminal
    shown = capsys.readouterr().out.splitlines()
    lines = [line for line in shown if line.startswith("needle full ctx=") and "━" not in line]  # not the bar
    assert len(lines) == 6 and lines[0].startswith("needle full ctx=512 depth=0%: exact match 1.00 (1/6, ")
    nd.run_needle(models, Loader(), grid(), out, None, progress=True)
    shown = capsys.readouterr().out
    assert f"skipping 6 cells already in {out} (same model, attention and grid)" in shown
    assert "0/0" not in shown


def test_cli_prints_the_table_and_exits_2_when_every_cell_is_unsupported(tmp_path, capsys):
    args = ["needle", "--model", "tiny", "--attn", "full", "--depths", "1", "--trials", "1", "--device", "cpu",
            "--out", str(tmp_path / "n.csv"), "--report-dir", str(tmp_path)]
    assert main([*args, "--ctx", "512,1k"]) == 2  # tiny's max_length is 256
    captured = capsys.readouterr()
    assert "full            -      -      -" in captured.out and "2 unsupported: context > model max_length 256" in captured.out
    assert captured.err.strip() == "nsa-bench: error: every cell was unsupported (the reasons are above): nothing ran"
    assert main([*args, "--ctx", "200,1k"]) == 0  # one cell ran: a warning, exit 0
    captured = capsys.readouterr()
    assert "cells: 2; 1 ok; 1 unsupported" in captured.out and captured.err.startswith("warning: some cells")
