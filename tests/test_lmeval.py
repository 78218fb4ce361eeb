"""lm-eval wiring: local GSM8K/MMLU data, task configs equal to lm-eval's stock ones, the nsa-bench model
class (log-likelihoods against our own computation, batching, truncation, stop strings), lm-eval runs
end to end with known scores and prompts, `nsa-bench lmeval` (rows, resume, bad input) and the
`python -m nsa_bench.suites.lmeval_model` entry."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from scripted_lm import BOS, OracleLM, ToyLM

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.tasks._yaml_loader import load_yaml  # noqa: E402

from nsa_bench.cli import main  # noqa: E402
from nsa_bench.suites import lmeval_data as data  # noqa: E402
from nsa_bench.suites.lmeval_model import NSABenchLM, cut_at_stop  # noqa: E402
from nsa_bench.suites.lmeval_suite import mmlu_overall, resolve_tasks, run_lmeval  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
GSM8K, MMLU = FIXTURES / "gsm8k", FIXTURES / "mmlu"
STOCK = Path(lm_eval.__file__).parent / "tasks"
ROOT = Path(__file__).parents[1]


def request(kind: str, *args) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=tuple(args), idx=0)


def own_logprob(toy: ToyLM, context_ids: list[int], continuation_ids: list[int]) -> tuple[float, bool]:
    """sum log p(continuation | context) from one forward pass over context + continuation."""
    ids = torch.tensor([context_ids + continuation_ids])
    logp = toy.logits(ids)[0].log_softmax(-1)
    n = len(context_ids)
    picked = logp[n - 1 : n - 1 + len(continuation_ids)]
    target = torch.tensor(continuation_ids)
    return float(picked.gather(-1, target[:, None]).sum()), bool((picked.argmax(-1) == target).all())


# --- data ----------------------------------------------------------------------------------------


def test_gsm8k_folder():
    splits = data.read_gsm8k(GSM8K)
    assert [len(splits["train"]), len(splits["test"])] == [6, 2]
    assert splits["test"][0]["answer"].endswith("#### 12")


def test_gsm8k_bad_folders(tmp_path):
    with pytest.raises(data.DataError, match="train.jsonl not found"):
        data.read_gsm8k(tmp_path)
    (tmp_path / "train.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    (tmp_path / "test.jsonl").write_text("not json\n")
    with pytest.raises(data.DataError, match="test.jsonl:1 is not JSON"):
        data.read_gsm8k(tmp_path)
    (tmp_path / "test.jsonl").write_text('{"question": "q"}\n')
    with pytest.raises(data.DataError, match="lacks"):
        data.read_gsm8k(tmp_path)


def test_mmlu_folder():
    assert data.mmlu_subjects(MMLU) == ["astronomy", "high_school_mathematics"]
    splits = data.read_mmlu(MMLU, "astronomy")
    assert sorted(splits) == ["dev", "test"] and len(splits["dev"]) == 5
    assert splits["test"][2] == {
        "question": "What is a light-year?",
        "subject": "astronomy",
        "choices": ["A unit of time", "A unit of distance, not time", "A unit of mass", "A unit of brightness"],
        "answer": 1,
    }


def test_mmlu_bad_folders(tmp_path):
    with pytest.raises(data.DataError, match="no dev/ and test/"):
        data.mmlu_root(tmp_path)
    for split in ("dev", "test"):
        (tmp_path / "data" / split).mkdir(parents=True)
    assert data.mmlu_root(tmp_path) == tmp_path / "data"  # the tarball's data/ folder is found too
    with pytest.raises(data.DataError, match="no <subject>_test.csv"):
        data.mmlu_subjects(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("q,a,b,c,d,E\n")
    with pytest.raises(data.DataError, match="answer in A-D"):
        data.read_mmlu_csv(bad, "x")
    bad.write_text("q,a,b,c,A\n")
    with pytest.raises(data.DataError, match=r"bad.csv:1"):
        data.read_mmlu_csv(bad, "x")


def test_data_folder_from_metadata_or_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("NSA_BENCH_GSM8K_DIR", raising=False)
    with pytest.raises(data.DataError, match="--metadata"):
        data.resolve_dir(None, "NSA_BENCH_GSM8K_DIR", "gsm8k_dir")
    monkeypatch.setenv("NSA_BENCH_GSM8K_DIR", str(GSM8K))
    assert data.resolve_dir(None, "NSA_BENCH_GSM8K_DIR", "gsm8k_dir") == GSM8K
    assert data.resolve_dir(str(tmp_path), "NSA_BENCH_GSM8K_DIR", "gsm8k_dir") == tmp_path
    assert len(data.load_gsm8k(pretrained="ignored")["test"]) == 2


# --- task configs ----------------------------------------------------------------------------------


DATA_KEYS = {"task", "tag", "dataset_path", "dataset_name", "custom_dataset", "dataset_kwargs"}


def test_gsm8k_config_is_the_stock_one_on_local_data():
    ours = load_yaml(data.TASKS_DIR / "gsm8k_local.yaml", resolve_func=False)
    stock = load_yaml(STOCK / "gsm8k" / "gsm8k.yaml", resolve_func=False)
    assert {k: v for k, v in ours.items() if k not in DATA_KEYS} == {k: v for k, v in stock.items() if k not in DATA_KEYS}
    assert ours["num_fewshot"] == 5 and [f["name"] for f in ours["filter_list"]] == ["strict-match", "flexible-extract"]


def test_mmlu_configs_are_the_stock_ones_on_local_data_five_shot():
    ours = load_yaml(data.TASKS_DIR / "mmlu_local" / "_template_yaml", resolve_func=False)
    stock = load_yaml(STOCK / "mmlu" / "default" / "_default_template_yaml", resolve_func=False)
    assert ours.pop("num_fewshot") == 5
    assert {k: v for k, v in ours.items() if k not in DATA_KEYS} == {k: v for k, v in stock.items() if k not in DATA_KEYS}
    files = sorted((data.TASKS_DIR / "mmlu_local").glob("mmlu_local_*.yaml"))
    assert [f.name for f in files] == sorted(f"mmlu_local_{s}.yaml" for s in data.MMLU_SUBJECTS)
    assert len(files) == 57
    for subject in data.MMLU_SUBJECTS:
        mine = load_yaml(data.TASKS_DIR / "mmlu_local" / f"mmlu_local_{subject}.yaml", resolve_func=False, recursive=False)
        theirs = load_yaml(STOCK / "mmlu" / "default" / f"mmlu_{subject}.yaml", resolve_func=False, recursive=False)
        assert mine["description"] == theirs["description"]
        assert mine["dataset_kwargs"] == {"subject": subject}


def test_task_configs_ship_with_the_package():
    import fnmatch
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["nsa_bench.suites"]
    files = [p.relative_to(data.TASKS_DIR.parent).as_posix() for p in data.TASKS_DIR.rglob("*") if p.is_file()]
    assert len(files) == 1 + 57 + 2
    assert all(any(fnmatch.fnmatch(f, g) for g in globs) for f in files)


# --- the model class -------------------------------------------------------------------------------


def test_registered_with_lm_eval():
    from lm_eval.api.registry import get_model

    assert get_model("nsa-bench") is NSABenchLM


def test_loglikelihood_equals_our_own_sum_of_log_probs():
    toy = ToyLM()
    enc = toy.encode
    cases = [
        ("Question: 2+2?\nAnswer:", " 4"),
        ("Question: 2+2?\nAnswer: ", "4"),  # the trailing space moves to the continuation
        ("The capital of France is", " Paris, of course."),
        ("", "hello"),  # empty context: BOS stands in
    ]
    model = NSABenchLM(lm=toy, batch_size=3, progress=False)
    got = model.loglikelihood([request("loglikelihood", c, x) for c, x in cases])
    for (context, continuation), (logprob, greedy) in zip(cases, got):
        if not context:
            want = own_logprob(toy, [BOS], enc(continuation))
        else:
            stripped = context.rstrip()
            want = own_logprob(toy, enc(stripped), enc(context[len(stripped):] + continuation))
        assert logprob == pytest.approx(want[0], abs=1e-4)
        assert greedy == want[1]


def test_is_greedy_for_the_models_own_continuation():
    toy = ToyLM()
    context = "Once upon a time"
    continuation = toy.decode(toy.generate(toy.encode(context), 5))
    (logprob, greedy), = NSABenchLM(lm=toy, progress=False).loglikelihood([request("loglikelihood", context, continuation)])
    assert greedy and logprob < 0


def test_batching_and_shared_contexts_do_not_change_scores():
    context = "The following are multiple choice questions.\nWhat is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"
    reqs = [request("loglikelihood", context, f" {c}") for c in "ABCD"]
    reqs += [request("loglikelihood", "short", " one"), request("loglikelihood", "a much longer context here", " two")]
    single, batched = ToyLM(), ToyLM()
    one = NSABenchLM(lm=single, batch_size=1, progress=False).loglikelihood(reqs)
    many = NSABenchLM(lm=batched, batch_size=4, progress=False).loglikelihood(reqs)
    assert [a[0] for a in one] == pytest.approx([b[0] for b in many], abs=1e-4)
    assert [a[1] for a in one] == [b[1] for b in many]
    assert len(single.calls) == 3  # the four choices share one input row
    assert len(batched.calls) == 1 and batched.calls[0][0] == 3


def test_contexts_are_cut_from_the_left_to_max_length():
    toy = ToyLM()
    context, continuation = "x" * 50 + "the end of a long context", " ok"
    (logprob, _), = NSABenchLM(lm=toy, max_length=16, progress=False).loglikelihood(
        [request("loglikelihood", context, continuation)])
    assert toy.calls == [(1, 16)]
    ids = toy.encode(context + continuation)[-17:]
    want, _ = own_logprob(toy, ids[:-3], ids[-3:])
    assert logprob == pytest.approx(want, abs=1e-4)


def test_loglikelihood_rolling():
    toy = ToyLM()
    text = "A short document to score from its first token to its last."
    (total,) = NSABenchLM(lm=toy, max_length=256, progress=False).loglikelihood_rolling(
        [request("loglikelihood_rolling", text)])
    assert total == pytest.approx(own_logprob(toy, [BOS], toy.encode(text))[0], abs=1e-3)
    windows = ToyLM()
    (chunked,) = NSABenchLM(lm=windows, max_length=16, progress=False).loglikelihood_rolling(
        [request("loglikelihood_rolling", text)])
    assert math.isfinite(chunked) and max(length for _, length in windows.calls) <= 16


def test_generate_until_cuts_at_stop_strings_and_fits_max_length():
    oracle = OracleLM({"What is 6 * 7?": " 6 * 7 = 42.\n#### 42\n\nQuestion: what next?", "Say hi.": " hi</s> there"})
    model = NSABenchLM(lm=oracle, max_length=300, progress=False)
    prompt = "Question: What is 6 * 7?\nAnswer:"
    outs = model.generate_until([
        request("generate_until", prompt, {"until": ["Question:", "</s>"], "max_gen_toks": 40}),
        request("generate_until", "Question: Say hi.\nAnswer:", {"until": "</s>"}),
        request("generate_until", "x" * 400 + prompt, {"until": ["\n\n"], "max_gen_toks": 16}),
    ])
    assert outs == [" 6 * 7 = 42.\n#### 42\n\n", " hi", " 6 * 7 = 42.\n###"]
    assert oracle.requests[0] == (len(prompt), 40)
    assert oracle.requests[1][1] == 256  # the default max_gen_toks
    assert oracle.requests[2] == (300 - 16, 16)  # the context was cut from the left
    assert cut_at_stop("abcSTOPdefEND", ["END", "STOP"]) == "abc"
    with pytest.raises(ValueError, match="greedily"):
        model.generate_until([request("generate_until", prompt, {"do_sample": True, "temperature": 0.7})])


def test_unknown_model_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown argument"):
        NSABenchLM(lm=ToyLM(), temperature=0.5)
    NSABenchLM(lm=ToyLM(), gsm8k_dir="ignored", mmlu_dir="ignored")  # task metadata, accepted


# --- lm-eval end to end --------------------------------------------------------------------------


def evaluate(model, tasks, **kw):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(data.TASKS_DIR), include_defaults=False,
                          metadata={"gsm8k_dir": str(GSM8K), "mmlu_dir": str(MMLU)})
    return simple_evaluate(model=model, tasks=tasks, task_manager=manager, **kw)


GSM8K_ANSWERS = {
    "Lena buys 7 apples and 5 pears. How many pieces of fruit does she buy?":
        " She buys 7 + 5 = 12 pieces.\n#### 12\n\nQuestion: Tom has 3 boxes",
    "A train travels 60 miles an hour for 3 hours. How far does it go?":
        " It goes 60 * 3 = 180 miles, so the answer is 180.\n\nQuestion: Sam had 50 marbles",
}


def test_gsm8k_through_lm_eval_strict_and_flexible_match():
    oracle = OracleLM(GSM8K_ANSWERS)
    results = evaluate(NSABenchLM(lm=oracle, progress=False), ["gsm8k_local"], log_samples=True)
    scores = results["results"]["gsm8k_local"]
    # the first answer ends with '#### 12' (strict and flexible), the second only says 180 (flexible)
    assert scores["exact_match,strict-match"] == 0.5
    assert scores["exact_match,flexible-extract"] == 1.0
    assert results["n-samples"]["gsm8k_local"]["effective"] == 2
    prompt = results["samples"]["gsm8k_local"][0]["arguments"][0][0]
    assert prompt.count("Question: ") == 6 and prompt.endswith(
        "Question: Lena buys 7 apples and 5 pears. How many pieces of fruit does she buy?\nAnswer:")
    assert "\nAnswer: Each box has 4 pens" in prompt or "\nAnswer: 20 - 15" in prompt  # few-shot from train
    assert all(stop in results["configs"]["gsm8k_local"]["generation_kwargs"]["until"] for stop in ["Question:"])


def test_mmlu_through_lm_eval_prompt_and_accuracy():
    toy = ToyLM()
    results = evaluate(NSABenchLM(lm=toy, batch_size=4, progress=False), ["mmlu_local_astronomy"], log_samples=True)
    dev = data.read_mmlu(MMLU, "astronomy")
    shots = "".join(
        f"{d['question']}\nA. {d['choices'][0]}\nB. {d['choices'][1]}\nC. {d['choices'][2]}\nD. {d['choices'][3]}"
        f"\nAnswer: {'ABCD'[d['answer']]}\n\n" for d in dev["dev"])
    correct = 0
    samples = sorted(results["samples"]["mmlu_local_astronomy"], key=lambda s: s["doc_id"])
    for doc, sample in zip(dev["test"], samples):
        question = (f"{doc['question']}\nA. {doc['choices'][0]}\nB. {doc['choices'][1]}\nC. {doc['choices'][2]}"
                    f"\nD. {doc['choices'][3]}\nAnswer:")
        prompt = "The following are multiple choice questions (with answers) about astronomy.\n\n" + shots + question
        assert [a for a in sample["arguments"]] == [(prompt, f" {c}") for c in "ABCD"]
        scores = [own_logprob(toy, toy.encode(prompt), toy.encode(f" {c}"))[0] for c in "ABCD"]
        assert [r[0][0] for r in sample["resps"]] == pytest.approx(scores, abs=1e-4)
        correct += scores.index(max(scores)) == doc["answer"]
    assert results["results"]["mmlu_local_astronomy"]["acc,none"] == pytest.approx(correct / 3)


# --- nsa-bench lmeval --------------------------------------------------------------------------------


def test_resolve_tasks():
    pairs = resolve_tasks(["gsm8k", "mmlu"], str(GSM8K), str(MMLU))
    assert pairs == [("gsm8k", "gsm8k_local"), ("mmlu_astronomy", "mmlu_local_astronomy"),
                     ("mmlu_high_school_mathematics", "mmlu_local_high_school_mathematics"), ("mmlu", None)]
    assert resolve_tasks(["mmlu_astronomy"], None, str(MMLU)) == [("mmlu_astronomy", "mmlu_local_astronomy")]


def test_mmlu_overall_weights_subjects_by_size():
    row = mmlu_overall([{"score": 1.0, "n": 3, "stderr": 0.0, "fewshot": 5}, {"score": 0.0, "n": 1, "stderr": 0.0, "fewshot": 5}])
    assert row["score"] == 0.75 and row["n"] == 4 and row["fewshot"] == 5


def test_run_lmeval_rows_and_resume(tmp_path):
    out = tmp_path / "lmeval.csv"
    loads = []

    def load(model, attention):
        loads.append((model, attention))
        return OracleLM(GSM8K_ANSWERS, attention=attention) if attention == "full" else ToyLM(attention=attention)

    tasks = resolve_tasks(["gsm8k", "mmlu"], str(GSM8K), str(MMLU))
    run_lmeval({"nsa": "m-nsa", "full": "m-full"}, load, tasks, out, str(GSM8K), str(MMLU),
               max_gen_toks=64, progress=False, batch_size=4)
    rows = pd.read_csv(out)
    assert loads == [("m-nsa", "nsa"), ("m-full", "full")]
    assert {"git_rev", "torch", "lm_eval", "timestamp"} <= set(rows.columns)
    full = rows[rows["attention"] == "full"].set_index(["task", "metric"])["score"]
    assert full[("gsm8k", "exact_match:strict-match")] == 0.5
    assert full[("gsm8k", "exact_match:flexible-extract")] == 1.0
    nsa = rows[(rows["attention"] == "nsa") & (rows["metric"] == "acc")].set_index("task")
    assert set(nsa.index) == {"mmlu_astronomy", "mmlu_high_school_mathematics", "mmlu"}
    assert nsa.loc["mmlu", "score"] == pytest.approx(
        (3 * nsa.loc["mmlu_astronomy", "score"] + 2 * nsa.loc["mmlu_high_school_mathematics", "score"]) / 5)
    assert nsa.loc["mmlu", "n"] == 5 and (rows[rows["attention"] != "nsa-full"]["fewshot"] == 5).all()
    assert set(rows["suite"]) == {"lmeval"} and set(rows["status"]) == {"ok"}
    # per-document scores (log_samples) give Wilson intervals; 1 of 2 right -> [0.095, 0.905]
    strict = rows[(rows["attention"] == "full") & (rows["metric"] == "exact_match:strict-match")].iloc[0]
    assert json.loads(strict["example_scores"]) == {"0": 1.0, "1": 0.0}
    assert (strict["ci_low"], strict["ci_high"]) == pytest.approx((0.0945, 0.9055), abs=1e-4)
    assert nsa.loc["mmlu", "ci_method"] == "wilson" and len(json.loads(nsa.loc["mmlu", "example_scores"])) == 5
    # NSA minus full on the same doc_ids, McNemar on right/wrong
    paired = rows[rows["attention"] == "nsa-full"].set_index(["task", "metric"])
    assert set(paired.index) == {(t, "acc") for t in ("mmlu", "mmlu_astronomy", "mmlu_high_school_mathematics")} | {
        ("gsm8k", "exact_match:strict-match"), ("gsm8k", "exact_match:flexible-extract")}
    mmlu = paired.loc[("mmlu", "acc")]
    assert mmlu["n"] == 5 and mmlu["test"] == "mcnemar_exact" and mmlu["model"] == "m-nsa vs m-full"
    full_acc = rows[(rows["attention"] == "full") & (rows["task"] == "mmlu") & (rows["metric"] == "acc")]["score"].iloc[0]
    assert mmlu["score"] == pytest.approx(nsa.loc["mmlu", "score"] - full_acc)

    loads.clear()
    run_lmeval({"nsa": "m-nsa", "full": "m-full"}, load, tasks, out, str(GSM8K), str(MMLU), progress=False)
    assert loads == [] and len(pd.read_csv(out)) == len(rows)
    run_lmeval({"full": "m-full"}, load, tasks[:1], out, str(GSM8K), str(MMLU), limit=1, max_gen_toks=64, progress=False)
    assert loads == [("m-full", "full")] and len(pd.read_csv(out)) == len(rows) + 2  # a new limit is a new run


def test_run_lmeval_records_failures_and_goes_on(tmp_path):
    class Broken(OracleLM):
        def logits(self, ids):
            raise RuntimeError("CUDA out of memory. Tried to allocate 80 GiB")

    out = tmp_path / "lmeval.csv"
    tasks = resolve_tasks(["mmlu", "gsm8k"], str(GSM8K), str(MMLU))
    run_lmeval({"nsa": "m"}, lambda m, a: Broken(GSM8K_ANSWERS), tasks, out, str(GSM8K), str(MMLU), limit=1, max_gen_toks=4,
               progress=False)
    rows = pd.read_csv(out).set_index("task")
    assert rows.loc["mmlu_astronomy", "status"] == "oom" and rows.loc["mmlu_high_school_mathematics", "status"] == "oom"
    assert "mmlu" not in rows.index  # no overall row without every subject
    assert list(rows.loc["gsm8k", "status"]) == ["ok", "ok"]  # generation does not need logits


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tasks", "hellaswag"], "unknown task"),
        (["--tasks", "gsm8k"], "--gsm8k-dir"),
        (["--tasks", "gsm8k", "--gsm8k-dir", "/no/such/dir"], "not found"),
        (["--tasks", "mmlu_virology", "--mmlu-dir", str(MMLU)], "virology"),
        (["--tasks", "mmlu", "--mmlu-dir", str(GSM8K)], "no dev/ and test/"),
        (["--tasks", "gsm8k", "--gsm8k-dir", str(GSM8K), "--batch-size", "big"], "--batch-size"),
        (["--tasks", "gsm8k", "--gsm8k-dir", str(GSM8K), "--attn", "sparse"], "--attn"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NSA_BENCH_GSM8K_DIR", raising=False)
    monkeypatch.delenv("NSA_BENCH_MMLU_DIR", raising=False)
    code = main(["lmeval", "--model", "tiny", *args, "--out", str(tmp_path / "l.csv")])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("nsa-bench: error:") and message in err


def test_cli_runs_the_tiny_preset(tmp_path, capsys):
    out = tmp_path / "lmeval.csv"
    args = ["lmeval", "--model", "tiny", "--attn", "full", "--tasks", "gsm8k,mmlu", "--gsm8k-dir", str(GSM8K),
            "--mmlu-dir", str(MMLU), "--limit", "1", "--max-gen-toks", "8", "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    rows = pd.read_csv(out)
    assert set(rows["task"]) == {"gsm8k", "mmlu_astronomy", "mmlu_high_school_mathematics", "mmlu"}
    assert set(rows["status"]) == {"ok"} and (rows["n"][rows["task"] != "mmlu"] == 1).all()
    assert "full  mmlu" in capsys.readouterr().out


@pytest.mark.slow
def test_lm_eval_command_line_with_the_nsa_bench_model(tmp_path):
    metadata = json.dumps({"gsm8k_dir": str(GSM8K)})
    cmd = [sys.executable, "-m", "nsa_bench.suites.lmeval_model", "--model", "nsa-bench",
           "--model_args", "pretrained=tiny,attention=full", "--tasks", "gsm8k_local", "--metadata", metadata,
           "--limit", "1", "--num_fewshot", "0", "--gen_kwargs", "max_gen_toks=4", "--device", "cpu",
           "--output_path", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(next(tmp_path.rglob("results_*.json")).read_text())
    assert result["results"]["gsm8k_local"]["exact_match,strict-match"] == 0.0
    assert result["config"]["model"] == "nsa-bench"
