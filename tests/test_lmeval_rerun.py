"""A rerun of lm-eval says in one line what it skips (no empty 0/0 bar); a log gets a line per task."""

from __future__ import annotations

from pathlib import Path

import pytest
from scripted_lm import ToyLM

pytest.importorskip("lm_eval")
from nsa_bench.suites.lmeval_suite import resolve_tasks, run_lmeval  # noqa: E402

MMLU = Path(__file__).parent / "fixtures" / "mmlu"


def test_rerun_says_what_it_skips_and_a_log_gets_a_line_per_task(tmp_path, capsys):
    out, tasks = tmp_path / "lmeval.csv", resolve_tasks(["mmlu_astronomy"], None, str(MMLU))
    run = lambda: run_lmeval({"full": "m"}, lambda m, a: ToyLM(attention=a), tasks, out, None, str(MMLU),  # noqa: E731
                             limit=1, progress=True)
    run()
    assert "lmeval full mmlu_astronomy done (1/1, " in capsys.readouterr().out
    run()
    shown = capsys.readouterr().out
    assert f"skipping 1 tasks already in {out} (same model, attention and settings)" in shown and "0/0" not in shown
