"""Training throughput: a row per attention and length, NSA's speedup over full, bad input refused."""

import pandas as pd
import pytest

from nsa_bench.cli import main
from nsa_bench.train_speed import measure_train_speed


def test_rows_per_attention_and_length(tmp_path):
    rows = measure_train_speed("tiny", [32, 64], 128, tmp_path / "speed.csv", device="cpu", steps=1, warmup=0)
    frame = pd.read_csv(tmp_path / "speed.csv")
    assert [(r["attention"], r["ctx_len"], r["batch"]) for r in rows] == [
        ("full", 32, 4), ("nsa", 32, 4), ("full", 64, 2), ("nsa", 64, 2)]
    assert (frame["status"] == "ok").all() and (frame["tokens_per_s"] > 0).all()
    nsa = frame[frame["attention"] == "nsa"]
    full = frame[frame["attention"] == "full"].set_index("ctx_len")
    for _, r in nsa.iterrows():
        assert r["speedup_full"] == pytest.approx(full.loc[r["ctx_len"], "step_s"] / r["step_s"])
    assert set(frame["kind"]) == {"train_speed"} and "gpu" in frame.columns


def test_cli_plots_and_refuses_bad_input(tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert main(["train-speed", "--preset", "tiny", "--ctx", "32", "--tokens-per-step", "64", "--steps", "1",
                 "--warmup", "0", "--device", "cpu", "--out", str(out)]) == 0
    assert "x full" in capsys.readouterr().out and out.with_suffix(".png").stat().st_size > 5000
    assert main(["train-speed", "--ctx", "8q", "--out", str(tmp_path / "b.csv")]) == 2
    assert main(["train-speed", "--ctx", "8", "--out", str(tmp_path / "c.csv")]) == 2


def test_report_has_a_throughput_table(tmp_path):
    from nsa_bench.report import build_report

    measure_train_speed("tiny", [32], 64, tmp_path / "speed.csv", device="cpu", steps=1, warmup=0)
    text = build_report([tmp_path / "speed.csv"], tmp_path / "r.md").read_text()
    assert "## Training throughput" in text and "| tiny | 32 |" in text and "x |" in text
