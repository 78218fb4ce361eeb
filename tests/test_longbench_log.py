"""LongBench in a log (output not a terminal): a line at each subset's end, not only a live bar."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress
from test_longbench import DATA, FakeLM

from nsa_bench.suites.longbench.records import DATA_KEYS, read_jsonl
from nsa_bench.suites.longbench.runner import predict_subset


def test_a_log_gets_a_line_per_subset(tmp_path):
    log = io.StringIO()
    records = read_jsonl(DATA / "hotpotqa.jsonl", DATA_KEYS)[:2]
    with Progress(console=Console(file=log)) as progress:
        predict_subset(FakeLM("full"), "hotpotqa", records, tmp_path / "p.jsonl", progress)
    assert "longbench full hotpotqa: 2/2 examples, " in log.getvalue()
