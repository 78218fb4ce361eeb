"""A broken or mismatched checkpoint is one line naming the file and exit 2 in every command that loads a
model (needle, lmeval, longbench), checked before any work; so is a pair whose attentions cannot both run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nsa_bench.cli import main
from nsa_bench.models import Transformer, check_lm, load_lm, preset, save_checkpoint

FIXTURES = Path(__file__).parent / "fixtures"


def _save(path: Path, attention: str = "full") -> Path:
    torch.manual_seed(0)
    return save_checkpoint(Transformer(preset("tiny", attention=attention)), path)


def truncated(path: Path) -> str:
    weights = _save(path) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    return "model.safetensors is not a complete safetensors file"


def mismatched(path: Path) -> str:
    _save(path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "dim": 2 * config["dim"]}))
    return "model.safetensors does not fit"


def malformed(path: Path) -> str:
    _save(path)
    (path / "config.json").write_text('{"format": "nsa-bench-lm", "dim": ')
    return "config.json is not valid JSON"


BREAKS = [truncated, mismatched, malformed]


@pytest.mark.parametrize("brk", BREAKS)
def test_the_library_raises_one_value_error_naming_the_file(tmp_path, brk):
    message = brk(tmp_path / "ckpt")
    for call in (lambda: check_lm(tmp_path / "ckpt", "full"), lambda: load_lm(tmp_path / "ckpt", "full", "cpu")):
        with pytest.raises(ValueError, match=message) as caught:
            call()
        assert str(tmp_path / "ckpt") in str(caught.value) and "\n" not in str(caught.value)


def _command(name: str, model: str, tmp_path: Path, attn: str = "full") -> list[str]:
    out = ["--out", str(tmp_path / f"{name}.csv")]
    if name == "needle":
        return ["needle", "--model", model, "--attn", attn, "--ctx", "256", "--depths", "1", "--trials", "1",
                "--device", "cpu", "--report-dir", str(tmp_path), *out]
    if name == "lmeval":
        return ["lmeval", "--model", model, "--attn", attn, "--tasks", "gsm8k", "--gsm8k-dir",
                str(FIXTURES / "gsm8k"), "--limit", "1", "--device", "cpu", *out]
    return ["longbench", "run", "--data", str(FIXTURES / "longbench" / "data"), "--datasets", "trec_e",
            "--max-examples", "1", "--model", model, "--attn", attn, "--device", "cpu",
            "--preds", str(tmp_path / "preds"), *out]


@pytest.mark.parametrize("command", ["needle", "lmeval", "longbench"])
@pytest.mark.parametrize("brk", BREAKS)
def test_every_command_gives_one_line_and_exit_2(tmp_path, capsys, command, brk):
    message = brk(tmp_path / "ckpt")
    code = main(_command(command, str(tmp_path / "ckpt"), tmp_path))
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("nsa-bench: error: --model ") and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / f"{command}.csv").exists()


@pytest.mark.parametrize("command", ["needle", "lmeval", "longbench"])
def test_a_pair_that_cannot_run_both_attentions_is_refused_before_any_work(tmp_path, capsys, command):
    _save(tmp_path / "ckpt", attention="full")
    code = main(_command(command, str(tmp_path / "ckpt"), tmp_path, attn="both"))
    err = capsys.readouterr().err
    assert code == 2 and "was trained with full attention; it cannot run with nsa" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / f"{command}.csv").exists()  # nothing ran, not even the full half
