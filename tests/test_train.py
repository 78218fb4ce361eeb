"""Training: the tiny preset learns on a CPU, a resumed run equals an uninterrupted one, data is a
function of (seed, step), and the CLI command's output."""

import random

import pandas as pd
import pytest
import torch

from nsa_bench.cli import main
from nsa_bench.models import ByteTokenizer, load_checkpoint, load_lm
from nsa_bench.train import TrainConfig, train
from nsa_bench.train_data import TrainData, interleave, prompt_row, retrieval_row

WORDS = "the a essay startup founder idea work write read think good hard time money people city".split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12))) + "." for _ in range(1500)]
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text("\n".join(lines))
    return str(path)


def _config(corpus, out, **changes):
    base = dict(data=corpus, out=str(out), preset="tiny", ctx=128, batch=4, max_steps=12, eval_every=6, lr=3e-3)
    return TrainConfig(**{**base, **changes})


@pytest.mark.slow
def test_tiny_pair_trains_and_loss_decreases(corpus, tmp_path):
    finals = train(_config(corpus, tmp_path), progress=False)
    df = pd.read_csv(tmp_path / "train.csv")
    assert set(finals) == {"nsa", "full"}
    for attention in ("nsa", "full"):
        g = df[df["attention"] == attention].sort_values("step")
        assert g["step"].tolist() == list(range(1, 13)) and (g["status"] == "ok").all()
        assert g["loss"].iloc[-3:].mean() < g["loss"].iloc[:3].mean() - 0.5
        assert g["val_loss"].notna().sum() == 2 and (g["tokens_per_s"] > 0).all()
        assert (g["tokens"] == g["step"] * 4 * 128).all()
        model = load_checkpoint(tmp_path / attention)
        assert model.cfg.attention == attention and model.cfg.max_seq_len == 128
        assert load_lm(str(tmp_path / attention)).attention == attention
    assert set(df["kind"]) == {"train"} and df["ctx_len"].eq(128).all()
    assert (tmp_path / "train_loss.png").stat().st_size > 10_000


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(corpus, tmp_path):
    whole = _config(corpus, tmp_path / "a", attention="nsa", max_steps=6, save_every=3)
    train(whole, progress=False)

    def crash_after_step_4(attention, row):
        if row["step"] == 4:
            raise KeyboardInterrupt

    cut = _config(corpus, tmp_path / "b", attention="nsa", max_steps=6, save_every=3)
    with pytest.raises(KeyboardInterrupt):
        train(cut, on_step=crash_after_step_4, progress=False)
    assert len(pd.read_csv(tmp_path / "b" / "train.csv")) == 4  # rows are written as produced
    cut.resume = True
    train(cut, progress=False)

    a, b = (pd.read_csv(tmp_path / d / "train.csv") for d in ("a", "b"))
    assert b["step"].tolist() == list(range(1, 7))  # steps after the checkpoint (step 4) were redone once
    assert b["loss"].tolist() == pytest.approx(a["loss"].tolist(), abs=1e-5)
    ma, mb = (load_checkpoint(tmp_path / d / "nsa").state_dict() for d in ("a", "b"))
    for name in ma:
        torch.testing.assert_close(mb[name], ma[name], atol=1e-6, rtol=1e-5)


def test_batches_are_a_function_of_seed_step_and_length():
    text = " ".join(WORDS * 300)
    data = TrainData(text, ByteTokenizer(), ctx=256, batch=4, seed=7, retrieval_frac=0.5)
    ids, mask = data.batch_at(3)
    again, _ = TrainData(text, ByteTokenizer(), ctx=256, batch=4, seed=7, retrieval_frac=0.5).batch_at(3)
    assert torch.equal(ids, again) and ids.shape == (4, 257)
    assert not torch.equal(ids, data.batch_at(4)[0])
    assert mask[:2].sum() > 0 and mask[2:].sum() == 0  # 2 retrieval rows, then 2 text rows
    short, short_mask = data.batch_at(3, 128)  # a curriculum length: the batch keeps its tokens
    assert short.shape == (8, 129) and short_mask[:4].sum() > 0 and short_mask[4:].sum() == 0


def test_retrieval_rows_ask_for_what_they_hid():
    tok, rng = ByteTokenizer(), random.Random(3)
    text_ids = tok.encode("filler text. " * 2000)
    for _ in range(12):
        ex = retrieval_row(rng, text_ids, tok, 2048)
        text = tok.decode(ex.ids)
        assert len(ex.ids) == 2048 and ex.answers
        for a, b in ex.answers:
            answer = tok.decode(ex.ids[a:b])
            before = tok.decode(ex.ids[:a])
            assert answer.startswith(" ") and answer.endswith(".")
            question = before.rsplit("\n", 1)[1]
            if question.startswith("Find all"):  # variable tracking: each name is assigned in the text, in order
                names = answer[1:-1].split()
                assert all(f"VAR {name} = " in text for name in names)
                assert [text.index(f"VAR {n} = ") for n in names] == sorted(text.index(f"VAR {n} = ") for n in names)
            elif "for them are:" not in question:  # one key asked: each value is that key's, in text order
                key = question.split(" for ", 1)[1].split(" ")[0]
                values = answer[1:-1].split(", ")
                places = [text.find(f"numbers for {key} is: {value}.") for value in values]
                assert min(places) >= 0 and places == sorted(places)
            else:
                assert all(f" is: {value}." in text for value in answer[1:-1].split(", "))


def test_interleave_keeps_each_groups_order():
    groups = [[[g, i]] for g in range(3) for i in range(1)] + [[[9, i] for i in range(5)]]
    order = interleave(groups, random.Random(0))
    assert sorted(map(tuple, order)) == sorted(tuple(p) for g in groups for p in g)
    assert [p[1] for p in order if p[0] == 9] == list(range(5))


def test_prompt_rows_end_with_one_question_and_its_answer():
    tok, rng = ByteTokenizer(), random.Random(4)
    text_ids = tok.encode("filler text. " * 2000)
    ex = prompt_row(rng, text_ids, tok, 1024, "niah_multikey")
    (a, b), = ex.answers
    value = tok.decode(ex.ids[a:b]).strip(" .")
    assert b == len(ex.ids) == 1024 and tok.decode(ex.ids).count("special magic numbers for") == 4
    key = tok.decode(ex.ids[:a]).rsplit("The special magic number for ", 1)[1].split(" ")[0]
    assert f"numbers for {key} is: {value}." in tok.decode(ex.ids)


def test_cli_train_and_its_errors(corpus, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["train", "--data", corpus, "--preset", "tiny", "--ctx", "64", "--max-steps", "2", "--out", str(out)]
    assert main(args + ["--attn", "full"]) == 0
    printed = capsys.readouterr().out
    assert "full steps 2" in printed and str(out / "train.csv") in printed
    assert main(["train", "--data", str(tmp_path / "missing"), "--max-steps", "2"]) == 2
    assert main(["train", "--data", corpus]) == 2  # no budget
    assert main(["train", "--data", corpus, "--max-steps", "2", "--nsa", "8/3/16/4/32"]) == 2
    assert main(["train", "--data", corpus, "--max-steps", "2", "--nsa-impl", "triton", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("nsa-bench: error:") == 4 and "Traceback" not in err
