"""`train` never overwrites a run without being asked, warns about settings too slow for a CPU, and
shows progress in a log (a line at each evaluation, not only at the end)."""

import random

import pytest
import torch

from nsa_bench.cli import main
from nsa_bench.train import TrainConfig, slow_on_cpu, train


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(0)
    words = "the a essay startup founder idea work write read think good hard time money people city".split()
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text("\n".join(" ".join(rng.choice(words) for _ in range(9)) + "." for _ in range(1500)))
    return str(path)


def _config(corpus, out, **changes):
    base = dict(data=corpus, out=str(out), preset="tiny", ctx=128, batch=4, max_steps=12, eval_every=6, lr=3e-3)
    return TrainConfig(**{**base, **changes})


def test_an_existing_run_needs_resume_or_force(corpus, tmp_path, capsys):
    args = ["train", "--data", corpus, "--preset", "tiny", "--ctx", "64", "--max-steps", "2", "--attn", "full",
            "--out", str(tmp_path)]
    assert main(args) == 0
    first = (tmp_path / "train.csv").read_text()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"nsa-bench: error: {tmp_path} holds a run already ({tmp_path / 'train.csv'}): "
                           "--resume continues it, --force starts over, or give another --out")
    assert (tmp_path / "train.csv").read_text() == first  # untouched
    assert main([*args, "--resume"]) == 0  # the budget is spent: nothing new
    assert main([*args, "--force"]) == 0


def test_a_log_gets_progress_lines_at_each_evaluation(corpus, tmp_path, capsys):
    train(_config(corpus, tmp_path, attention="full", ctx=64, max_steps=4, eval_every=2), progress=True)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("full step")]
    assert [line.split(" loss")[0] for line in lines] == ["full step 2", "full step 4"]
    assert "held-out" in lines[0] and lines[1].endswith("(100%)")


def test_settings_too_slow_for_a_cpu_are_warned(corpus, tmp_path):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert "--preset gpu at 8192 tokens on the CPU" in slow_on_cpu(_config(corpus, tmp_path, preset="gpu", ctx=None).resolved(), cpu)
    assert slow_on_cpu(_config(corpus, tmp_path).resolved(), cpu) is None
    assert slow_on_cpu(_config(corpus, tmp_path, preset="gpu", ctx=None).resolved(), cuda) is None


def test_resume_reads_the_train_state_without_running_code(corpus, tmp_path):
    """train_state.pt is read with weights_only=True (a pickled object would be refused): a resumed run
    goes on from the saved step."""
    train(_config(corpus, tmp_path, attention="full", ctx=64, max_steps=2), progress=False)
    cfg = _config(corpus, tmp_path, attention="full", ctx=64, max_steps=3, resume=True)
    assert train(cfg, progress=False)["full"]["step"] == 3
