"""`nsa-bench export`: our checkpoints as Hugging Face directories. A full-attention model loads as a
plain Llama, an NSA model as model type nsa_bench; both give our model's logits, the byte tokenizer's
Hugging Face form encodes and decodes as ours does, and lm-eval's own `hf` model scores the export as
the nsa-bench class scores the checkpoint."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from nsa_bench.cli import main  # noqa: E402
from nsa_bench.models import ByteTokenizer, Transformer, preset, save_checkpoint  # noqa: E402
from nsa_bench.models import hf_model  # noqa: E402, F401  (registers model type nsa_bench)
from nsa_bench.models.hf_export import export_checkpoint  # noqa: E402

TEXTS = ["hello world", "héllo wörld ✓\n\tend", "日本語 and ascii", "", "  two  spaces  "]


def _checkpoint(path, attention: str):
    """A random tiny model (NSA: perturbed gates and compression) with non-default RoPE theta and norm eps."""
    torch.manual_seed(0)
    model = Transformer(preset("tiny", attention=attention, rope_theta=5000.0, norm_eps=1e-6), nsa_impl="reference")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or "compress" in name or "gate" in name:
                param.add_(torch.randn_like(param) * 0.1)
    return model, save_checkpoint(model, path)


@pytest.fixture(scope="module", params=["full", "nsa"])
def exported(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"export-{request.param}")
    model, checkpoint = _checkpoint(root / "checkpoint", request.param)
    return request.param, model, checkpoint, export_checkpoint(checkpoint, root / "hf")


def test_export_gives_our_logits(exported):
    attention, model, _, out = exported
    hf = AutoModelForCausalLM.from_pretrained(out)
    assert type(hf).__name__ == ("LlamaForCausalLM" if attention == "full" else "NSABenchForCausalLM")
    if attention == "full":
        assert json.loads((out / "config.json").read_text())["model_type"] == "llama"
    ids = torch.randint(0, 259, (2, 100), generator=torch.Generator().manual_seed(1))  # > the NSA window (32)
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), atol=1e-5, rtol=1e-5)
        greedy = hf.generate(ids[:1, :20], max_new_tokens=6, do_sample=False)[0, 20:].tolist()
    assert greedy == model.generate(ids[0, :20].tolist(), 6)


def test_byte_tokenizer_export_encodes_as_ours(exported):
    tokenizer, ours = AutoTokenizer.from_pretrained(exported[3]), ByteTokenizer()
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (ours.bos_id, ours.eos_id, ours.pad_id)
    for text in TEXTS:
        assert tokenizer.encode(text) == ours.encode(text)  # no BOS: our models are trained without
        assert tokenizer.decode(ours.encode(text)) == text
    assert tokenizer.decode([104, 0xC3, ours.eos_id], skip_special_tokens=True) == ours.decode([104, 0xC3, ours.eos_id])


def test_lm_eval_hf_scores_the_export_as_we_score_the_checkpoint(exported):
    pytest.importorskip("accelerate")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from nsa_bench.suites.lmeval_model import NSABenchLM

    attention, _, checkpoint, out = exported
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    theirs = HFLM(pretrained=str(out), device="cpu", dtype="float32")
    ours = NSABenchLM(pretrained=str(checkpoint), attention=attention, device="cpu", progress=False)
    ll = [Instance("loglikelihood", {}, (c, x), 0) for c, x in [("The cat", " sat."), ("", "hello"), ("a " * 150, "b c")]]
    rolling = [Instance("loglikelihood_rolling", {}, ("some text " * 40,), 0)]
    gen = [Instance("generate_until", {}, ("Once upon", {"until": ["\n"], "max_gen_toks": 8}), 0)]
    got, want = ours.loglikelihood(ll), theirs.loglikelihood(ll, disable_tqdm=True)
    assert [g[0] for g in got] == pytest.approx([w[0] for w in want], abs=1e-4)
    assert [g[1] for g in got] == [w[1] for w in want]
    assert ours.loglikelihood_rolling(rolling) == pytest.approx(theirs.loglikelihood_rolling(rolling, disable_tqdm=True), abs=1e-3)
    assert ours.generate_until(gen) == theirs.generate_until(gen, disable_tqdm=True)


def test_export_cli_and_bad_input(tmp_path, capsys):
    _, checkpoint = _checkpoint(tmp_path / "run" / "full", "full")
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "model.safetensors").is_file() and (tmp_path / "hf" / "tokenizer.json").is_file()
    capsys.readouterr()
    for args, message in [
        ([str(checkpoint), "--out", str(tmp_path / "hf")], "not an empty directory"),  # never overwrites
        ([str(tmp_path / "run"), "--out", str(tmp_path / "x")], "holds checkpoints full: export one"),
        ([str(tmp_path / "nothing"), "--out", str(tmp_path / "y")], "not an nsa-bench checkpoint"),
    ]:
        assert main(["export", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_nsa_export_loads_in_a_fresh_interpreter(exported):
    """`import nsa_bench` is enough for AutoModelForCausalLM (before or after transformers), and with
    trust_remote_code nothing of ours needs importing (the directory's modeling_nsa_bench.py does);
    a Llama directory holds no code of ours."""
    attention, _, _, out = exported
    if attention == "full":
        assert "auto_map" not in json.loads((out / "config.json").read_text())
        assert not list(out.glob("*.py"))
        return
    load = f"m = AutoModelForCausalLM.from_pretrained({str(out)!r}{{}}); print(type(m).__name__)"
    for code in [
        "import nsa_bench; from transformers import AutoModelForCausalLM; " + load.format(""),
        "from transformers import AutoModelForCausalLM; " + load.format(", trust_remote_code=True"),
    ]:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert done.stdout.split() == ["NSABenchForCausalLM"], done.stderr[-2000:]


def test_subword_tokenizer_goes_along_without_bos(tmp_path):
    """A checkpoint whose tokenizer/ directory holds a Llama-style tokenizer (it adds <s>): the export
    encodes as our model does, without BOS."""
    from tiny_hf import write_tiny_llama

    source = write_tiny_llama(tmp_path / "source", bos=True)
    tokenizer_dir = tmp_path / "checkpoint" / "tokenizer"
    AutoTokenizer.from_pretrained(source).save_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    model = Transformer(preset("tiny", attention="full", vocab_size=384, tokenizer=str(tokenizer_dir)))
    out = export_checkpoint(save_checkpoint(model, tmp_path / "checkpoint"), tmp_path / "hf")
    exported, ours = AutoTokenizer.from_pretrained(out), AutoTokenizer.from_pretrained(tokenizer_dir)
    for text in TEXTS:
        assert exported.encode(text) == ours.encode(text, add_special_tokens=False)
    assert ours.encode("hello")[0] == ours.bos_token_id != exported.encode("hello")[0]
    ids = torch.tensor([exported.encode("the cat sat on the mat. a dog ran in the park!")])
    with torch.no_grad():
        torch.testing.assert_close(AutoModelForCausalLM.from_pretrained(out)(ids).logits, model(ids), atol=1e-5, rtol=1e-5)
