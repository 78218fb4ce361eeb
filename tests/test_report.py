"""`nsa-bench report`: one markdown report with its PNGs from a mix of synthetic result CSVs."""

import re

import pytest

from nsa_bench.cli import main
from nsa_bench.report import build_report
from synthetic_results import H100, kernel_rows, lmeval_rows, longbench_rows, needle_rows, train_rows, write_csv


@pytest.fixture
def results(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    write_csv(folder / "kernels_h100.csv", kernel_rows(statuses={("nsa", "bwd", 16384): "oom"}))
    write_csv(folder / "needle.csv", needle_rows())
    write_csv(folder / "longbench.csv", longbench_rows())
    write_csv(folder / "lmeval.csv", lmeval_rows(), metadata={**H100, "git_rev": "fedcba987654", "lm_eval": "0.4.13"})
    return folder


def test_report_has_every_section_and_its_pngs(capsys, tmp_path, results):
    out = tmp_path / "reports" / "report.md"
    code = main(["report", *map(str, sorted(results.glob("*.csv"))), "--out", str(out)])
    assert code == 0
    assert str(out) in capsys.readouterr().out
    text = out.read_text()
    for heading in ("## Runs", "## Kernels", "#### Speedup against length", "#### NSA stages",
                    "#### Decode bandwidth", "## Needle in a haystack", "## LongBench", "## lm-eval"):
        assert heading in text, heading
    assert "## Training" not in text  # no train CSV: the section is skipped
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert set(images) == {"report_kernels_speedup.png", "report_kernels_stages.png",
                           "report_kernels_decode_gbps.png", "report_needle_passkey_exact_match.png"}
    for name in images:
        png = out.parent / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_report_numbers(tmp_path, results):
    text = build_report(sorted(results.glob("*.csv")), tmp_path / "r.md").read_text()
    # metadata of each run, as written (the lm-eval run has another revision)
    assert "abc123def456" in text and "fedcba987654" in text and "NVIDIA H100 80GB HBM3" in text
    assert "torch SDPA flash backend (FA2 code)" in text
    # kernels: nsa fwd at 8k is 4.10x over FA2 (ceiling 6.83x, efficiency 60%); the oom row says so
    assert "| fwd | 8k | nsa | ok | 0.488 | 2 | 1.8 | 4.10x | 3.69x | 6.83x | 60% |" in text
    assert "| bwd | 16k | nsa | oom |" in text
    # LongBench side by side, x100, with NSA - full
    assert "| hotpotqa | qa_f1 | 20 | 41.0 ± 5.0 | 43.0 ± 5.0 | -2.0 |" in text
    assert "| trec_e | 0-4k | classification | 20 | 65.0 ± 5.0 | 60.0 ± 5.0 | +5.0 |" in text
    # lm-eval: the headline tasks in the table, MMLU subjects folded away
    assert "| mmlu | acc | 100 | 31.0 ± 3.0 | 32.0 ± 3.0 | -1.0 |" in text
    assert "<details><summary>MMLU subjects</summary>" in text and "| mmlu_anatomy | acc |" in text
    # needle: full fails at the longest length (0.5), NSA does not
    assert "| NSA | runs/train/nsa | 1.000 | 9 | 0 | 1.00 | 1.00 | 1.00 |" in text
    assert "| full | runs/train/full | 0.833 | 9 | 0 | 1.00 | 1.00 | 0.50 |" in text


def test_report_keeps_runs_of_the_same_model_path_apart(tmp_path):
    """Two needle runs of models saved under the same path (a pair trained twice) are two columns,
    each named with its file, not one average."""
    write_csv(tmp_path / "needle_a.csv", needle_rows())
    write_csv(tmp_path / "needle_b.csv", needle_rows(scores={("nsa", 4096, 1.0): 0.0}))
    text = build_report(sorted(tmp_path.glob("*.csv")), tmp_path / "r.md").read_text()
    assert "| NSA (runs/train/nsa (needle_a.csv)) | runs/train/nsa (needle_a.csv) | 1.000 | 9 | 0 | 1.00 | 1.00 | 1.00 |" in text
    assert "| NSA (runs/train/nsa (needle_b.csv)) | runs/train/nsa (needle_b.csv) | 0.889 | 9 | 0 | 1.00 | 1.00 | 0.67 |" in text
    assert "| full (runs/train/full (needle_b.csv)) |" in text


def test_report_from_a_folder_with_training_only(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    write_csv(folder / "train.csv", train_rows(30))
    out = build_report([folder], tmp_path / "out" / "train_report.md")
    text = out.read_text()
    assert "## Training" in text and "## Kernels" not in text and "## LongBench" not in text
    assert "![train](train_report_train.png)" in text
    assert (out.parent / "train_report_train.png").stat().st_size > 5000
    assert re.search(r"\| nsa \| 30 \| 1\.2e\+06 \| [0-9.]+ \| [0-9.]+ \| 0\.75 \|", text)


@pytest.mark.parametrize("bad", ["missing", "not_results"])
def test_report_bad_input_exits_2(capsys, tmp_path, bad):
    path = tmp_path / "x.csv"
    if bad == "not_results":
        path.write_text("a,b\n1,2\n")
    code = main(["report", str(path), "--out", str(tmp_path / "r.md")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("nsa-bench: error:") and len(err.strip().splitlines()) == 1


def test_report_of_a_decode_only_csv_without_cudnn_columns(tmp_path):
    """A kernel CSV with fewer columns (no cuDNN, graph=True rows, dtype bfloat16) still reports."""
    rows = [r for r in kernel_rows() if r["mode"] == "decode" and not r["impl"].startswith("cudnn")]
    for r in rows:
        r.pop("speedup_cudnn")
        r["graph"] = r["impl"].endswith(":cuda_graph")
        r["impl"] = r["impl"].replace(":cuda_graph", "")
        r["dtype"] = "bfloat16"
    csv = write_csv(tmp_path / "decode.csv", rows)
    text = build_report([csv], tmp_path / "r.md").read_text()
    assert "| decode | 8k | nsa:cuda_graph | ok |" in text and "#### NSA stages" not in text
    assert "![kernels_decode_gbps](r_kernels_decode_gbps.png)" in text


def _needle_with_pairs():
    """Needle rows with per-trial scores (3 trials) and their nsa-full rows: at 4k full misses trials 1
    and 2 of every depth, NSA trial 0 at depth 0 alone."""
    from nsa_bench.paired import nsa_minus_full, scored_fields

    def wrong(row) -> set:
        if row["ctx_len"] != 4096:
            return set()
        return {1, 2} if row["attention"] == "full" else {0} if row["depth"] == 0.0 else set()

    rows = []
    for row in needle_rows(ctx_lens=(2048, 4096)):
        if row["metric"] != "exact_match":
            continue
        trials = {f"{t}:1234{t}": float(t not in wrong(row)) for t in range(3)}
        rows.append({**row, "score": sum(trials.values()) / 3, **scored_fields(trials)})
    keys = ("suite", "task", "metric", "ctx_len", "depth")
    return rows + nsa_minus_full(rows, keys) + nsa_minus_full(rows, keys, pool_over="depth")


def test_report_shows_intervals_and_nsa_minus_full(tmp_path):
    csv = write_csv(tmp_path / "needle.csv", _needle_with_pairs())
    out = build_report([csv], tmp_path / "r.md")
    text = out.read_text()
    # pooled over depths at 4k: 9 pairs, NSA 8 right, full 3: +55.6 points; McNemar b=6, c=1: p = 2 * 8/128
    assert "### NSA − full, pooled over depths and trials" in text
    # intervals: Newcombe's for paired right/wrong (9 agreeing pairs still leave +-29.9 points)
    assert "| passkey | exact_match | runs/train/nsa vs runs/train/full | 2k | 9 | +0.0 [-29.9, +29.9] p=1 | mcnemar_exact |" in text
    assert "| 4k | 9 | +55.6 [+0.4, +82.6] p=0.12 | mcnemar_exact |" in text
    assert "(r_needle_nsa_minus_full.png)" in text
    assert (tmp_path / "r_needle_nsa_minus_full.png").stat().st_size > 5000
    # the heatmap tables list nsa and full only, not the paired rows
    assert "| nsa-full |" not in text.split("### NSA − full")[0]


def test_side_by_side_intervals_and_paired_column():
    import pandas as pd

    from nsa_bench.report import side_by_side

    frame = pd.DataFrame([
        {"task": "t", "metric": "acc", "attention": "nsa", "model": "m", "score": 0.5, "ci_low": 0.2366,
         "ci_high": 0.7634, "n": 10, "status": "ok"},
        {"task": "t", "metric": "acc", "attention": "full", "model": "m", "score": 0.9, "ci_low": 0.596,
         "ci_high": 0.982, "n": 10, "status": "ok"},
        {"task": "t", "metric": "acc", "attention": "nsa-full", "model": "m", "score": -0.4, "ci_low": -0.7,
         "ci_high": -0.1, "p_value": 0.0703, "n": 10, "status": "ok"},
    ])
    text = side_by_side(frame, ["task", "metric"])
    assert "| t | acc | 10 | 50.0 [23.7, 76.3] | 90.0 [59.6, 98.2] | -40.0 [-70.0, -10.0] p=0.07 |" in text
    assert "95% interval" in text and "paired on the same examples" in text


def test_needle_table_puts_each_length_under_its_own_column(tmp_path):
    """Runs of different lengths: a run without 4k leaves that column empty, its 8k score stays under 8k."""
    write_csv(tmp_path / "needle_a.csv", needle_rows(ctx_lens=(1024, 2048, 4096)))
    short = [dict(r, model=r["model"].replace("train", "short"), score=0.25 if r["ctx_len"] == 8192 else r["score"])
             for r in needle_rows(ctx_lens=(1024, 8192), scores={})]
    write_csv(tmp_path / "needle_b.csv", short)
    text = build_report(sorted(tmp_path.glob("*.csv")), tmp_path / "r.md").read_text()
    assert "| attention | model | mean | cells | cells not ok | 1k | 2k | 4k | 8k |" in text
    assert "| NSA (runs/short/nsa) | runs/short/nsa | 0.625 | 6 | 0 | 1.00 |  |  | 0.25 |" in text
    assert "| NSA (runs/train/nsa) | runs/train/nsa | 1.000 | 9 | 0 | 1.00 | 1.00 | 1.00 |  |" in text


def test_lmeval_table_shows_each_runs_own_count(tmp_path):
    """Two runs with other question counts: the n column is left empty and each cell names its n."""
    write_csv(tmp_path / "lmeval.csv", lmeval_rows())
    write_csv(tmp_path / "lmeval_small.csv", [dict(r, model=r["model"] + "_small", n=10) for r in lmeval_rows()])
    text = build_report(sorted(tmp_path.glob("*.csv")), tmp_path / "r.md").read_text()
    assert "| mmlu | acc |  | 31.0 ± 3.0 (n=100) | 31.0 ± 3.0 (n=10) | 32.0 ± 3.0 (n=100) | 32.0 ± 3.0 (n=10) |" in text
    one = build_report([tmp_path / "lmeval.csv"], tmp_path / "one.md").read_text()
    assert "| mmlu | acc | 100 | 31.0 ± 3.0 | 32.0 ± 3.0 | -1.0 |" in one


def test_report_default_out_leaves_committed_reports_alone(capsys, tmp_path, monkeypatch):
    """Without --out the report goes to runs/report/ (ignored by git), not the committed reports/report.md."""
    monkeypatch.chdir(tmp_path)
    committed = tmp_path / "reports" / "report.md"
    committed.parent.mkdir()
    committed.write_text("committed\n")
    write_csv(tmp_path / "lmeval.csv", lmeval_rows())
    assert main(["report", "lmeval.csv"]) == 0
    assert committed.read_text() == "committed\n"
    assert "## lm-eval" in (tmp_path / "runs" / "report" / "report.md").read_text()
    assert "runs/report/report.md" in capsys.readouterr().out


def test_report_keeps_cpu_smoke_rows_out_of_gpu_tables(tmp_path):
    """A CPU run of the same models gets its own sections and figures; the GPU tables hold GPU rows only."""
    cpu = {**H100, "device": "cpu", "gpu": "none", "gpu_capability": "none"}
    write_csv(tmp_path / "needle_gpu.csv", needle_rows())
    write_csv(tmp_path / "needle_cpu.csv", needle_rows(scores={("nsa", 4096, 1.0): 0.0}), metadata=cpu)
    write_csv(tmp_path / "train_cpu.csv", train_rows(10), metadata=cpu)
    text = build_report(sorted(tmp_path.glob("*.csv")), tmp_path / "r.md").read_text()
    gpu_part, _, cpu_part = text.partition("## Needle in a haystack (CPU)")
    assert "## Needle in a haystack (NVIDIA H100 80GB HBM3)" in gpu_part and "## Training (CPU)" in cpu_part
    assert "| NSA | runs/train/nsa | 1.000 | 9 | 0 | 1.00 | 1.00 | 1.00 |" in gpu_part
    assert "| NSA | runs/train/nsa | 0.889 | 9 | 0 | 1.00 | 1.00 | 0.67 |" in cpu_part
    assert "0.889" not in gpu_part and "needle_cpu.csv)" not in text  # no mixed columns
    assert "](r_needle_passkey_exact_match_cpu.png)" in cpu_part and (tmp_path / "r_train_cpu.png").is_file()
