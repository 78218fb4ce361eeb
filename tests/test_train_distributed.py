"""Training under torchrun on the CPU (gloo, 2 processes): the same global batch gives the losses of one
process, with DistributedDataParallel and with FSDP2, and a run resumes across world sizes."""

import pandas as pd
import pytest
from test_train import corpus  # noqa: F401  (the fixture)
from torchrun import torchrun

from nsa_bench.train import TrainConfig, train

pytestmark = pytest.mark.slow
ARGS = dict(preset="tiny", ctx=128, batch=4, eval_every=2, lr=3e-3, device="cpu")


def _torchrun(corpus, out, *flags, steps=4, attn="both", save_every=200) -> str:
    """`nsa-bench train` under torchrun with 2 CPU processes; its output."""
    return torchrun("train", "--data", corpus, "--out", str(out), "--attn", attn, "--preset", "tiny", "--ctx", "128",
                    "--batch", "4", "--max-steps", str(steps), "--eval-every", "2", "--lr", "3e-3", "--device", "cpu",
                    "--save-every", str(save_every), *flags).stdout


def _one(corpus, out, **changes):
    train(TrainConfig(data=corpus, out=str(out), **{**ARGS, **changes}), progress=False)
    return pd.read_csv(out / "train.csv")


def _same_losses(a: pd.DataFrame, b: pd.DataFrame) -> None:
    key = ["attention", "step"]
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    assert a[key].equals(b[key])
    for column in ("loss", "answer_loss", "grad_norm", "val_loss"):
        assert a[column].isna().equals(b[column].isna()), column
        assert (a[column] - b[column]).abs().max() < 1e-5, column


@pytest.mark.parametrize("engine", ["ddp", "fsdp"])
def test_two_processes_equal_one(corpus, tmp_path, engine):
    one = _one(corpus, tmp_path / "one", max_steps=4)
    printed = _torchrun(corpus, tmp_path / "two", *(["--fsdp"] if engine == "fsdp" else []))
    two = pd.read_csv(tmp_path / "two" / "train.csv")
    _same_losses(one, two)
    assert set(one["world_size"]) == {1} and set(one["parallel"]) == {"none"}
    assert set(two["world_size"]) == {2} and set(two["parallel"]) == {engine}
    assert (two["tokens"] == two["step"] * 4 * 128).all()  # tokens of the global batch
    assert printed.count("steps 4") == 2  # rank 0 alone reports the pair
    assert (tmp_path / "two" / "train_loss.png").is_file() and (tmp_path / "two" / "nsa" / "model.safetensors").is_file()


def test_resume_across_world_sizes(corpus, tmp_path):
    _one(corpus, tmp_path / "whole", attention="nsa", max_steps=2)  # the same three budgets, all in one process
    _one(corpus, tmp_path / "whole", attention="nsa", max_steps=4, resume=True)
    whole = _one(corpus, tmp_path / "whole", attention="nsa", max_steps=6, resume=True)
    _one(corpus, tmp_path / "mixed", attention="nsa", max_steps=2)  # 1 process: steps 1-2
    _torchrun(corpus, tmp_path / "mixed", "--fsdp", "--resume", steps=4, attn="nsa")  # 2 processes, FSDP: 3-4
    mixed = _one(corpus, tmp_path / "mixed", attention="nsa", max_steps=6, resume=True)  # 1 process: 5-6
    _same_losses(whole, mixed)
    assert mixed["world_size"].tolist() == [1, 1, 2, 2, 1, 1]


def test_batch_must_split_over_processes(corpus, tmp_path):
    done = torchrun("train", "--data", corpus, "--out", str(tmp_path), "--batch", "3", "--max-steps", "1",
                    "--device", "cpu", expect_ok=False)
    assert done.returncode != 0 and "must split evenly over 2 processes" in done.stdout + done.stderr
