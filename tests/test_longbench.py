"""LongBench suite: metrics against hand-computed values, prompts, truncation, buckets, scoring of
prediction files, end-to-end runs with a fake model (and the tiny model when present), bad input."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from nsa_bench.cli import main
from nsa_bench.errors import UsageError
from nsa_bench.stats import newcombe_paired
from nsa_bench.suites import suite_models
from nsa_bench.suites.longbench import commands, metrics
from nsa_bench.suites.longbench.datasets import (
    ALL_SUBSETS, DATASETS, LONGBENCH_E, build_prompt, length_bucket, spec_for,
)
from nsa_bench.suites.longbench.metrics import score_prediction
from nsa_bench.suites.longbench.records import DATA_KEYS, read_jsonl
from nsa_bench.suites.longbench.runner import load_subsets, predict_subset, run_longbench, truncate_middle
from nsa_bench.suites.longbench.scoring import score_predictions

FIXTURES = Path(__file__).parent / "fixtures" / "longbench"
DATA, PREDS = FIXTURES / "data", FIXTURES / "preds"
CLASSES = ["Animal", "Food", "City", "Number of something", "Number"]


# ---------------------------------------------------------------- metrics, hand-computed


def test_qa_f1_english_normalisation():
    # "eiffel tower in paris" vs "eiffel tower": P = 2/4, R = 1 -> F1 = 2/3
    assert metrics.qa_f1("The Eiffel Tower, in Paris.", "Eiffel Tower") == pytest.approx(2 / 3)
    assert metrics.qa_f1("a cat!", "The CAT") == 1.0  # articles, case and punctuation removed
    assert metrics.qa_f1("paris paris", "paris") == pytest.approx(2 / 3)  # multiset overlap: 1 of 2
    assert metrics.qa_f1("London", "Paris") == 0.0
    assert metrics.qa_f1("", "Paris") == 0.0


def test_qa_f1_chinese_character_level():
    # tokens 北 京 大 学 (。 removed) vs 北 京: P = 2/4, R = 1 -> 2/3
    assert metrics.qa_f1_zh("北京大学。", "北京", tokenizer="char") == pytest.approx(2 / 3)
    # a run of latin letters/digits is one token, lower-cased: {gpt4, 模, 型} vs {gpt4}: P = 1/3, R = 1 -> 1/2
    assert metrics.qa_f1_zh("GPT4 模型", "gpt4", tokenizer="char") == pytest.approx(0.5)
    assert metrics.qa_f1_zh("，。！", "北京", tokenizer="char") == 0.0


def test_qa_f1_chinese_with_jieba():
    pytest.importorskip("jieba")
    # jieba: 小明 / 硕士 / 毕业 / 于 / 中国科学院 / 计算所 vs 中国科学院: P = 1/6, R = 1 -> 2/7
    assert metrics.qa_f1_zh("小明硕士毕业于中国科学院计算所", "中国科学院", tokenizer="jieba") == pytest.approx(2 / 7)


def test_rouge_l_as_the_rouge_package_computes_it():
    # distinct words: {the cat sat on mat} vs {the cat lay on mat}; LCS words {the cat on mat}: 4/5 both ways
    assert metrics.rouge_l("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(0.8)
    # '.' splits sentences: LCS words {The cat} + {slept} = 3; P = 3/5, R = 3/3 -> 0.75
    assert metrics.rouge_l("The cat sat. It slept.", "The cat slept.") == pytest.approx(0.75)
    # union over predicted sentences: {a} + {c d} = 3 of 3 reference words, 3 of 4 predicted -> 6/7
    assert metrics.rouge_l("a b. c d", "a c d") == pytest.approx(6 / 7)
    assert metrics.rouge_l("the the the", "the") == pytest.approx(1.0)  # words are counted once
    assert metrics.rouge_l("the cat", "The cat") == pytest.approx(0.5)  # case is kept
    assert metrics.rouge_l("", "the cat") == 0.0 and metrics.rouge_l("...", "the cat") == 0.0
    # character tokens {今 天 气 很 好} vs {今 天 气 不 错}: LCS words {今 天 气} -> 3/5
    assert metrics.rouge_l_zh("今天天气很好", "今天天气不错", tokenizer="char") == pytest.approx(0.6)


def test_lcs_length_matches_dynamic_programming():
    def lcs_dp(a, b):
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i, x in enumerate(a):
            for j, y in enumerate(b):
                table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
        return table[-1][-1]

    rng = random.Random(0)
    for _ in range(200):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 30))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 90))]
        assert metrics.lcs_length(a, b) == lcs_dp(a, b)
    assert metrics.lcs_length("ABCBDAB", "BDCABA") == 4


def test_classification():
    c = CLASSES
    assert metrics.classification("Food", "Food", all_classes=c) == 1.0
    assert metrics.classification("Food or Animal", "Food", all_classes=c) == 0.5
    assert metrics.classification("City", "Food", all_classes=c) == 0.0
    assert metrics.classification("no idea", "Food", all_classes=c) == 0.0
    # "Number" is a proper substring of the reference, so it does not count as a second class
    assert metrics.classification("Number of something", "Number of something", all_classes=c) == 1.0
    assert metrics.classification("Number", "Number of something", all_classes=c) == 0.0


def test_retrieval_and_count():
    assert metrics.retrieval("Paragraph 3", "Paragraph 3") == 1.0
    assert metrics.retrieval("Paragraph 3 or Paragraph 13", "Paragraph 3") == 0.5  # 13 is not 3
    assert metrics.retrieval("I do not know", "Paragraph 3") == 0.0
    assert metrics.retrieval_zh("答案是段落5，不是段落7", "段落5") == 0.5
    assert metrics.retrieval_zh("段落5", "段落5") == 1.0
    with pytest.raises(ValueError):
        metrics.retrieval("3", "three")
    assert metrics.count("There are 12 unique paragraphs", "12") == 1.0
    assert metrics.count("12 or 13", "13") == 0.5
    assert metrics.count("", "4") == 0.0


def test_code_similarity():
    # first line without comment markers; identical -> 1
    assert metrics.code_sim("\n    return a + b\nprint(x)", "    return a + b") == 1.0
    # "return a+b" (10) vs "return a + b" (12): LCS 10, 2*10/22 = 90.9% -> 0.91
    assert metrics.code_sim("# add them\nreturn a+b", "return a + b") == 0.91
    assert metrics.code_sim("// only\n# comments", "x = 1") == 0.0
    assert metrics.code_sim("# only", "") == 1.0  # fuzz.ratio("", "") is 100
    assert metrics.first_code_line("```python\nx = 1") == "x = 1"


def test_code_similarity_as_fuzzywuzzy_without_levenshtein():
    """difflib's matching blocks find fewer matches than the LCS here; the expected numbers are
    fuzzywuzzy 0.18's fuzz.ratio without python-Levenshtein (60), and with it (70)."""
    pred, ref = "return total + count", "return count + total"
    assert metrics.code_sim(pred, ref) == 0.7 and metrics.code_sim_difflib(pred, ref) == 0.6
    assert metrics.code_sim_difflib("# add them\nreturn a+b", "return a + b") == 0.91  # here both agree
    assert metrics.code_sim_difflib("# only", "") == 1.0 and metrics.code_sim_difflib("x", "") == 0.0
    assert metrics.metric_for("lcc", "difflib") == "code_sim_difflib"
    assert metrics.metric_for("hotpotqa", "difflib") == "qa_f1"  # other metrics are unchanged
    with pytest.raises(ValueError, match="levenshtein, difflib"):
        metrics.metric_for("lcc", "fuzzy")


def test_score_prediction_first_line_and_best_reference():
    assert score_prediction("trec", "\nFood\nAnimal", ["Food"], CLASSES) == 1.0  # first line only
    assert score_prediction("trec", "Food Animal", ["Food"], CLASSES) == 0.5
    assert score_prediction("trec_e", "\nFood\nAnimal", ["Food"], CLASSES) == 1.0  # LongBench-E variant
    # Not a few-shot task: the whole prediction counts
    assert score_prediction("hotpotqa", "Paris\nLondon", ["Paris"], None) == pytest.approx(2 / 3)
    # best over references: "Paris" vs "Paris, France" is 2/3, vs "London" 0
    assert score_prediction("hotpotqa", "Paris", ["London", "Paris, France"], None) == pytest.approx(2 / 3)
    assert score_prediction("samsum", "the cat sat on the mat\nDialogue: x", ["the cat lay on the mat"], None) == (
        pytest.approx(0.8)
    )


# ---------------------------------------------------------------- datasets, prompts, truncation, buckets


def test_dataset_table():
    assert len(DATASETS) == 21 and len(LONGBENCH_E) == 13 and len(ALL_SUBSETS) == 34
    assert {s.metric for s in DATASETS.values()} | {"code_sim_difflib"} == set(metrics.METRICS)  # + the --code-sim option
    assert {n: DATASETS[n].max_gen for n in ("hotpotqa", "narrativeqa", "gov_report", "samsum", "lcc")} == {
        "hotpotqa": 32, "narrativeqa": 128, "gov_report": 512, "samsum": 128, "lcc": 64,
    }
    assert spec_for("qasper_e") is DATASETS["qasper"]
    assert DATASETS["samsum"].stop == ("\n",) and DATASETS["trec"].stop == ()
    with pytest.raises(KeyError):
        spec_for("dureader_e")  # not part of LongBench-E


def test_prompt_construction():
    record = read_jsonl(DATA / "hotpotqa.jsonl", DATA_KEYS)[0]
    assert build_prompt(DATASETS["hotpotqa"], record) == (
        "Answer the question based on the given passages. Only give me the answer and do not output any other "
        "words.\n\nThe following are given passages.\nPassage 1: The Museum of Glass Birds is in Tarsk.\nPassage 2: "
        "Tarsk lies on the Amber Coast.\n\nAnswer the question based on the given passages. Only give me the answer "
        "and do not output any other words.\n\nQuestion: Which city hosts the Museum of Glass Birds?\nAnswer:"
    )
    code = {"context": "def f(a, b):\n    x = {'k': 1}\n", "input": "    y = x['k']\n"}
    assert build_prompt(DATASETS["repobench-p"], code) == (
        "Please complete the code given below. \ndef f(a, b):\n    x = {'k': 1}\n    y = x['k']\nNext line of code:\n"
    )
    zh = read_jsonl(DATA / "multifieldqa_zh.jsonl", DATA_KEYS)[0]
    assert build_prompt(DATASETS["multifieldqa_zh"], zh).endswith("问题：小明在哪里工作？\n回答：")


def test_truncate_middle_keeps_head_and_tail():
    ids = list(range(10))
    assert truncate_middle(ids, 4) == [0, 1, 8, 9]
    assert truncate_middle(ids, 5) == [0, 1, 7, 8, 9]
    assert truncate_middle(ids, 10) == ids and truncate_middle(ids, 50) == ids


def test_length_buckets():
    assert [length_bucket(n) for n in (0, 3999, 4000, 7999, 8000, 20000)] == [
        "0-4k", "0-4k", "4-8k", "4-8k", "8k+", "8k+",
    ]


# ---------------------------------------------------------------- scoring prediction files


def _by(rows, task, bucket="all"):
    (row,) = [r for r in rows if r["task"] == task and r["length_bucket"] == bucket]
    return row


def test_score_prediction_directory():
    rows = score_predictions(PREDS)
    assert _by(rows, "passage_count")["score"] == pytest.approx(0.5)  # 1, 0.5, 0
    assert [_by(rows, "passage_count", b)["score"] for b in ("0-4k", "4-8k", "8k+")] == [1.0, 0.5, 0.0]
    assert _by(rows, "passage_retrieval_zh")["score"] == pytest.approx(0.75)  # 1, 0.5
    assert _by(rows, "lcc")["score"] == pytest.approx((1.0 + 0.91) / 2)
    samsum = [r for r in rows if r["task"] == "samsum"]
    assert len(samsum) == 1 and samsum[0]["score"] == pytest.approx(0.8)  # no lengths: no buckets
    assert _by(rows, "average")["score"] == pytest.approx((0.5 + 0.75 + 0.955 + 0.8) / 4)
    assert _by(rows, "average_en")["score"] == pytest.approx((0.5 + 0.955 + 0.8) / 3)
    assert _by(rows, "average_zh")["score"] == pytest.approx(0.75)
    count = _by(rows, "passage_count")
    assert count["n"] == 3 and count["metric"] == "count"
    assert count["stderr"] == pytest.approx(0.5 / 3**0.5)  # sample std 0.5 over sqrt(3)
    assert count["ci_method"] == "bootstrap" and 0.0 <= count["ci_low"] < 0.5 < count["ci_high"] <= 1.0
    assert json.loads(count["example_scores"]) == {"#0": 1.0, "#1": 0.5, "#2": 0.0}  # no _id: positions
    average = _by(rows, "average")
    assert average["ci_method"] == "stratified_bootstrap" and average["ci_low"] < average["score"] < average["ci_high"]


def test_score_command_single_file_to_csv(tmp_path, capsys):
    out = tmp_path / "scores.csv"
    argv = ["longbench", "score", "--predictions", str(PREDS / "lcc.jsonl"), "--out", str(out), "--attn", "full"]
    assert main(argv) == 0
    assert "95.50" in capsys.readouterr().out
    table = pd.read_csv(out)
    assert list(table["task"]) == ["lcc", "lcc"] and list(table["length_bucket"]) == ["all", "0-4k"]
    assert table["score"][0] == pytest.approx(0.955) and table["n"][0] == 2
    assert table["attention"][0] == "full" and table["suite"][0] == "longbench"
    difflib = tmp_path / "difflib.csv"
    assert main([*argv[:-4], "--out", str(difflib), "--code-sim", "difflib"]) == 0
    assert list(pd.read_csv(difflib)["metric"]) == ["code_sim_difflib"] * 2
    capsys.readouterr()
    assert main([*argv[:-4], "--code-sim", "rapidfuzz"]) == 2
    assert capsys.readouterr().err.strip() == "nsa-bench: error: --code-sim must be one of levenshtein, difflib, got 'rapidfuzz'"


# ---------------------------------------------------------------- end to end with a fake model


class FakeLM:
    """A CausalLM with one token per character that answers by looking the question up."""

    ANSWERS = {
        "full": {"Glass Birds": "Tarsk", "ledger tower": "Ilse Maren", "lighthouse": "green",
                 "哪里工作": "南京", "哪一年": "二零二三年",
                 "largest city": "City", "stripes": "\nAnimal\nFood", "moons": "Number of something"},
        "nsa": {"Glass Birds": "Tarsk", "ledger tower": "Velmora", "lighthouse": "It is green.",
                "哪里工作": "南京", "哪一年": "杭州",
                "largest city": "Food or City", "stripes": "Animal", "moons": "Number"},
    }

    def __init__(self, attention: str, max_length: int = 480):
        self.name, self.attention, self.max_length = "fake", attention, max_length
        self.device = torch.device("cpu")
        self.prompts: list[str] = []

    def encode(self, text):
        return [ord(ch) for ch in text]

    def decode(self, ids):
        return "".join(chr(i) for i in ids)

    def logits(self, ids):
        raise NotImplementedError

    def generate(self, ids, max_new_tokens, stop=()):
        assert len(ids) + max_new_tokens <= self.max_length
        text = self.decode(ids)
        self.prompts.append(text)
        answer = next(a for key, a in self.ANSWERS[self.attention].items() if key in text)
        return self.encode(answer)[:max_new_tokens]


def test_run_scores_truncates_and_resumes(tmp_path):
    files = load_subsets({s: DATA / f"{s}.jsonl" for s in ("hotpotqa", "multifieldqa_zh", "trec_e")})
    lm = FakeLM("nsa")
    rows = run_longbench(lm, files, tmp_path / "preds")
    assert _by(rows, "hotpotqa")["score"] == pytest.approx(0.5)  # 1, 0, max(1/2, 1/3)
    assert _by(rows, "multifieldqa_zh")["score"] == pytest.approx(0.5)
    assert _by(rows, "trec_e")["score"] == pytest.approx(0.5)  # 0.5, 1, 0
    assert [_by(rows, "trec_e", b)["score"] for b in ("0-4k", "4-8k", "8k+")] == [0.5, 1.0, 0.0]
    assert _by(rows, "average")["score"] == pytest.approx(0.5)
    assert _by(rows, "hotpotqa")["truncated"] == 1 and _by(rows, "trec_e")["truncated"] == 0
    # The long prompt was cut in the middle: the instruction head and the question tail survive
    long_prompt = lm.prompts[1]
    assert len(long_prompt) == lm.max_length - DATASETS["hotpotqa"].max_gen
    assert long_prompt.startswith("Answer the question based on the given passages.")
    assert long_prompt.endswith("Question: Who founded the Velmora ledger tower?\nAnswer:")
    lines = [json.loads(x) for x in (tmp_path / "preds" / "hotpotqa.jsonl").read_text().splitlines()]
    assert [x["_id"] for x in lines] == ["hq-1", "hq-2", "hq-3"] and lines[1]["pred"] == "Velmora"
    assert set(lines[0]) >= {"pred", "answers", "all_classes", "length"}
    # Resume: nothing is generated again; a torn last line is regenerated
    path = tmp_path / "preds" / "trec_e.jsonl"
    path.write_text(path.read_text().splitlines()[0] + "\n" + '{"_id": "tr-2", "pr')
    again = FakeLM("nsa")
    rows2 = run_longbench(again, files, tmp_path / "preds")
    assert len(again.prompts) == 2 and "stripes" in again.prompts[0]
    assert [r["score"] for r in rows2] == [r["score"] for r in rows]
    # The predictions directory scores the same with `longbench score`
    scored = score_predictions(tmp_path / "preds")
    assert _by(scored, "trec_e", "8k+")["score"] == 0.0 and _by(scored, "average")["score"] == pytest.approx(0.5)


def test_window_too_small_for_generation(tmp_path):
    records = read_jsonl(DATA / "hotpotqa.jsonl", DATA_KEYS)
    with pytest.raises(UsageError, match="no room"):
        predict_subset(FakeLM("full", max_length=32), "hotpotqa", records, tmp_path / "p.jsonl")


def test_cli_run_both_attentions_to_csv(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(commands, "load_model", lambda model, attention, device, cfg: FakeLM(attention))
    monkeypatch.setattr(commands, "check_models", lambda models, cfg: None)  # "fake" is no model on disk
    out, preds = tmp_path / "lb.csv", tmp_path / "preds"
    argv = ["longbench", "run", "--data", str(DATA), "--model", "fake", "--attn", "both",
            "--datasets", "hotpotqa,trec_e", "--max-examples", "2", "--out", str(out), "--preds", str(preds)]
    assert main(argv) == 0
    shown = capsys.readouterr().out
    assert "nsa-full" in shown and "trec_e" in shown
    table = pd.read_csv(out)
    table, paired = table[table.attention != "nsa-full"], table[table.attention == "nsa-full"]
    assert set(table["attention"]) == {"nsa", "full"} and set(table["suite"]) == {"longbench"}
    assert table["ci_low"].notna().all() and (table["ci_low"] <= table["score"] + 1e-12).all()
    # NSA minus full on the same _ids, per subset and bucket (no averages): hotpotqa 1, 0 against 1, 1
    hotpot = paired[(paired.task == "hotpotqa") & (paired.length_bucket == "all")].iloc[0]
    assert hotpot["score"] == -0.5 and hotpot["n"] == 2 and hotpot["test"] == "mcnemar_exact"
    assert hotpot["p_value"] == 1.0 and hotpot["ci_method"] == "newcombe_paired"
    assert (hotpot["ci_low"], hotpot["ci_high"]) == pytest.approx(newcombe_paired(1, 0, 1, 0))
    trec = paired[(paired.task == "trec_e") & (paired.length_bucket == "all")].iloc[0]
    assert trec["score"] == -0.25 and trec["test"] == "sign_flip_exact" and trec["p_value"] == 1.0
    # the macro average: mean over subsets of the paired differences (-0.5 and -0.25), sign-flip on 4 pairs
    average = paired[(paired.task == "average") & (paired.length_bucket == "all")].iloc[0]
    assert average["score"] == pytest.approx(-0.375) and average["n"] == 4 and average["test"] == "sign_flip_exact"
    assert average["p_value"] == 0.5  # weighted diffs 0, -1/4, -1/8, 0: +-1/4 +-1/8 reaches 3/8 in 2 of 4
    full = table[(table.attention == "full") & (table.length_bucket == "all")].set_index("task")["score"]
    nsa = table[(table.attention == "nsa") & (table.length_bucket == "all")].set_index("task")["score"]
    assert full["hotpotqa"] == 1.0 and nsa["hotpotqa"] == 0.5  # first 2 examples: 1, 1 and 1, 0
    assert full["trec_e"] == 1.0 and nsa["trec_e"] == 0.75  # 1, 1 and 0.5, 1
    assert full["average"] == 1.0 and table["n"][0] == 2
    assert (preds / "fake" / "nsa" / "hotpotqa.jsonl").is_file()
    rows_before = len(table) + len(paired)
    assert main(argv) == 0  # resumed: no new rows
    assert len(pd.read_csv(out)) == rows_before


def test_tiny_model_end_to_end(tmp_path):
    models = pytest.importorskip("nsa_bench.models")
    lm = models.load_lm("tiny", attention="full", device="cpu")
    rows = run_longbench(lm, load_subsets({"hotpotqa": DATA / "hotpotqa.jsonl"}, 2), tmp_path / "preds")
    row = _by(rows, "hotpotqa")
    assert row["n"] == 2 and 0.0 <= row["score"] <= 1.0 and row["attention"] == "full"
    lines = [json.loads(x) for x in (tmp_path / "preds" / "hotpotqa.jsonl").read_text().splitlines()]
    assert all(isinstance(x["pred"], str) for x in lines) and lines[1]["truncated"]


# ---------------------------------------------------------------- bad input: one line, exit 2


def _bad_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("make_argv", [
    lambda t: ["longbench", "score", "--predictions", str(t / "missing")],
    lambda t: ["longbench", "score", "--predictions", _bad_file(t, "lcc.jsonl", '{"pred": "x", "answers": ["y"]}\nnot json\n')],
    lambda t: ["longbench", "score", "--predictions", _bad_file(t, "lcc.jsonl", '{"pred": "x"}\n')],
    lambda t: ["longbench", "score", "--predictions", _bad_file(t, "nosuchtask.jsonl", '{"pred": "x", "answers": []}\n')],
    lambda t: ["longbench", "score", "--predictions", _bad_file(t, "passage_retrieval_en.jsonl", '{"pred": "1", "answers": ["one"]}\n')],
    lambda t: ["longbench", "run", "--data", str(t / "missing"), "--model", "tiny"],
    lambda t: ["longbench", "run", "--data", str(DATA), "--model", "tiny", "--datasets", "nosuchtask"],
    lambda t: ["longbench", "run", "--data", str(DATA), "--model", "tiny", "--datasets", "qasper"],
    lambda t: ["longbench", "run", "--data", str(DATA), "--model", "tiny", "--attn", "sparse"],
    lambda t: ["longbench", "run", "--data", str(DATA), "--model", "nsa=tiny", "--attn", "both"],
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, make_argv):
    assert main(make_argv(tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nsa-bench: error:")


@pytest.mark.slow
def test_bad_input_in_a_subprocess_has_no_traceback(tmp_path):
    bad = _bad_file(tmp_path, "hotpotqa.jsonl", '{"input": "q", "answers": ["a"]}\n')
    proc = subprocess.run(
        [sys.executable, "-m", "nsa_bench.cli", "longbench", "run", "--data", str(tmp_path), "--model", "tiny",
         "--out", str(tmp_path / "x.csv"), "--preds", str(tmp_path / "p")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"nsa-bench: error: {bad}:1: missing 'context' (LongBench format)"


def test_chinese_without_jieba_is_labelled_and_noted(monkeypatch, capsys):
    monkeypatch.setattr(metrics, "ZH_TOKENIZER", "char")
    assert main(["longbench", "score", "--predictions", str(PREDS / "passage_retrieval_zh.jsonl")]) == 0
    assert "jieba is not installed" in capsys.readouterr().err
    rows = score_predictions(DATA.parent / "preds")
    assert _by(rows, "passage_retrieval_zh")["metric"] == "retrieval_zh"  # not a word metric: unchanged
    assert metrics.metric_label("qa_f1_zh") == "qa_f1_zh_char" and metrics.metric_label("qa_f1") == "qa_f1"


def test_one_model_per_attention():
    pick = suite_models.models_by_attention
    assert pick(["runs/a"], ("nsa", "full")) == {"nsa": "runs/a", "full": "runs/a"}
    assert pick(["nsa=runs/n", "full=runs/f"], ("nsa", "full")) == {"nsa": "runs/n", "full": "runs/f"}
    assert pick(["nsa=runs/n"], ("nsa",)) == {"nsa": "runs/n"}
    with pytest.raises(UsageError):
        pick(["runs/a", "runs/b"], ("nsa",))
