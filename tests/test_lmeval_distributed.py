"""The nsa-bench lm-eval class data-parallel (2 CPU processes under torchrun, which sets the environment
accelerate launch sets): lm-eval shards the documents by rank and rank 0's results equal one process's."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from torchrun import torchrun

pytestmark = pytest.mark.slow
MMLU = Path(__file__).parent / "fixtures" / "mmlu"
ARGS = ["--model", "nsa-bench", "--model_args", "pretrained=tiny,attention=full", "--tasks", "mmlu_local_astronomy",
        "--metadata", json.dumps({"mmlu_dir": str(MMLU)}), "--device", "cpu", "--log_samples"]


def _results(folder: Path) -> tuple[dict, list[dict]]:
    result = json.loads(next(folder.rglob("results_*.json")).read_text())
    samples = [json.loads(line) for line in next(folder.rglob("samples_*.jsonl")).read_text().splitlines()]
    return result["results"]["mmlu_local_astronomy"], sorted(samples, key=lambda s: s["doc_id"])


def test_two_ranks_give_the_results_of_one(tmp_path):
    module = "nsa_bench.suites.lmeval_model"
    one = subprocess.run([sys.executable, "-m", module, *ARGS, "--output_path", str(tmp_path / "one")],
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = torchrun(*ARGS, "--output_path", str(tmp_path / "two"), module=module)
    assert "on rank 1" in two.stderr  # lm-eval built rank 1's share of the documents
    (scores_one, samples_one), (scores_two, samples_two) = _results(tmp_path / "one"), _results(tmp_path / "two")
    assert scores_one == scores_two and len(samples_one) == len(samples_two) == 3  # 3 documents over 2 ranks
    for a, b in zip(samples_one, samples_two):
        assert a["doc_id"] == b["doc_id"] and a["arguments"] == b["arguments"]
        assert [r[0][0] for r in a["resps"]] == pytest.approx([r[0][0] for r in b["resps"]], abs=1e-5)


def test_parallelize_loads_a_hugging_face_model_with_device_map_auto(tmp_path, monkeypatch):
    import transformers
    from lm_eval.api.instance import Instance
    from tiny_hf import write_tiny_llama

    from nsa_bench.suites.lmeval_model import NSABenchLM

    path = str(write_tiny_llama(tmp_path / "llama"))
    requests = [Instance(request_type="loglikelihood", doc={}, arguments=("the cat sat on the", " mat."), idx=0)]
    plain = NSABenchLM(pretrained=path, attention="full", device="cpu", progress=False)
    load, asked = transformers.AutoModelForCausalLM.from_pretrained, []
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **kw: asked.append(kw.get("device_map")) or load(*a, **kw))
    spread = NSABenchLM(pretrained=path, attention="full", device="cpu", parallelize="True", progress=False)
    assert asked == ["auto"]  # accelerate places it over the GPUs (here: the CPU)
    assert spread.loglikelihood(requests)[0][0] == pytest.approx(plain.loglikelihood(requests)[0][0], abs=1e-5)
    with pytest.raises(ValueError, match="Hugging Face models"):
        NSABenchLM(pretrained="tiny", attention="full", device="cpu", parallelize=True)
