"""Needle in a haystack: parsing, haystacks, prompt sizing and needle placement, scoring, the run loop
(known heatmaps from a scripted model), resuming, unsupported cells, and the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from scripted_lm import PasskeyLM

from nsa_bench.cli import main
from nsa_bench.errors import UsageError
from nsa_bench.suites import needle as nd
from nsa_bench.suites.haystack import (
    TokenHaystack,
    generated_sentences,
    insertion_point,
    read_text_dir,
    split_sentences,
)

FIXTURES = Path(__file__).parent / "fixtures" / "needle_haystack"


def byte_encode(text: str) -> list[int]:
    return list(text.encode())


def byte_decode(ids) -> str:
    return bytes(ids).decode()


# --- parsing -----------------------------------------------------------------------------------


def test_sizes_ladders_and_lists():
    assert nd.parse_size("8k") == 8192
    assert nd.parse_size("64K") == 65536
    assert nd.parse_size("3000") == 3000
    assert nd.parse_size("1m") == 1024**2
    assert nd.parse_ctx("64k") == [4096, 8192, 16384, 32768, 65536]
    assert nd.parse_ctx("1k") == [256, 512, 1024]
    assert nd.parse_ctx("300") == [300]
    assert nd.parse_ctx("16k,8k,8k") == [8192, 16384]
    for bad in ("12q", "0", "1.5", "k", ""):
        with pytest.raises(UsageError):
            nd.parse_ctx(bad)


def test_depths():
    assert nd.parse_depths("5") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert nd.parse_depths("11")[1] == 0.1
    assert nd.parse_depths("1") == [0.5]
    assert nd.parse_depths("100%,0%,50%") == [0.0, 0.5, 1.0]
    assert nd.parse_depths("0.9, 0.1") == [0.1, 0.9]
    for bad in ("0", "150%", "-0.1", "abc", ","):
        with pytest.raises(UsageError):
            nd.parse_depths(bad)


# --- haystacks and prompts ---------------------------------------------------------------------


def test_generated_haystack_is_deterministic_per_seed_and_digit_free():
    take = lambda seed, n: [next(s) for s in [generated_sentences(seed)] for _ in range(n)]  # noqa: E731
    first = take(0, 200)
    assert first == take(0, 200)
    assert first != take(1, 200)
    assert not any(re.search(r"\d", s) for s in first)
    assert all(s[0].isupper() and s.endswith(".") for s in first)


def test_sentences_and_text_dirs(tmp_path):
    assert split_sentences("One.  Two!\nThree? It ended.Then more") == ["One.", "Two!", "Three?", "It ended.", "Then more"]
    text = read_text_dir(FIXTURES)
    assert text.index("lighthouse") < text.index("orchard")  # files in name order
    with pytest.raises(UsageError, match="not found"):
        read_text_dir(tmp_path / "missing")
    with pytest.raises(UsageError, match="no .txt files"):
        read_text_dir(tmp_path)


def test_token_haystack_cuts_exactly_and_reports_sentence_starts():
    hay = TokenHaystack(iter(["Aa.", "Bbb.", "Cc."] * 10), byte_encode)
    tokens, starts = hay.take(10)
    assert byte_decode(tokens) == "Aa. Bbb. C"
    assert starts == [0, 4, 9, 10]
    assert insertion_point(starts, 10, 0.0) == 0
    assert insertion_point(starts, 10, 0.5) == 4  # at or before token 5
    assert insertion_point(starts, 10, 1.0) == 10


@pytest.mark.parametrize("length", [300, 1000])
@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 1.0])
def test_prompt_length_and_needle_depth(length, depth):
    needle = nd.DEFAULT_NEEDLE.format(value="48213")
    hay = TokenHaystack(generated_sentences(3), byte_encode)
    prompt = nd.build_prompt(byte_encode, hay, length, depth, needle, nd.DEFAULT_QUESTION)
    text = byte_decode(prompt.ids)
    assert len(prompt.ids) == length
    assert text.count("48213") == 2 and text.count("The pass key is 48213") == 1
    assert text.startswith(nd.INTRO) and text.endswith(nd.DEFAULT_QUESTION)
    start = text.index(needle)
    assert start == prompt.needle_start
    body_len = length - len(nd.INTRO) - len(needle) - len(nd.DEFAULT_QUESTION)
    pos = start - len(nd.INTRO)
    assert prompt.needle_depth == pytest.approx(pos / body_len)
    longest_sentence = 90
    assert depth * body_len - longest_sentence <= pos <= depth * body_len
    if 0 < pos < body_len:  # between two sentences
        assert text[start - 2 : start] == ". " and text[start + len(needle)].isupper()
    if depth == 1.0:
        assert text.endswith(needle + nd.DEFAULT_QUESTION)


def test_prompt_is_sized_in_the_models_tokens():
    def pairs(text: str) -> list[int]:  # a tokenizer with two characters per token
        return [ord(text[i]) for i in range(0, len(text), 2)]

    hay = TokenHaystack(generated_sentences(0), pairs)
    prompt = nd.build_prompt(pairs, hay, 700, 0.5, "The code is {value}.".format(value=7), "What is the code?")
    assert len(prompt.ids) == 700  # tokens, not characters (the text is about twice as long)


def test_prompt_too_short_for_the_needle():
    hay = TokenHaystack(generated_sentences(0), byte_encode)
    with pytest.raises(ValueError, match="cannot hold"):
        nd.build_prompt(byte_encode, hay, 50, 0.5, nd.DEFAULT_NEEDLE.format(value=1), nd.DEFAULT_QUESTION)


def test_custom_needle_and_question_are_set_off_by_newlines():
    hay = TokenHaystack(generated_sentences(0), byte_encode)
    prompt = nd.build_prompt(byte_encode, hay, 400, 0.5, "The code is 42.", "What is the code?")
    text = byte_decode(prompt.ids)
    assert "\nThe code is 42.\n" in text and text.endswith("\nWhat is the code?")


# --- scoring -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, value, exact, prefix",
    [
        ("12345", "12345", 1.0, 1.0),
        (" 12345. Remember it.", "12345", 1.0, 1.0),
        ("'12345'", "12345", 1.0, 1.0),
        ("123456", "12345", 0.0, 1.0),
        ("12399", "12345", 0.0, 0.6),
        (" 12", "12345", 0.0, 0.4),
        ("92345", "12345", 0.0, 0.0),
        ("", "12345", 0.0, 0.0),
        ("blue  whale, of course", "blue whale", 1.0, 1.0),
    ],
)
def test_scores(answer, value, exact, prefix):
    assert nd.exact_match(answer, value) == exact
    assert nd.prefix_match(answer, value) == pytest.approx(prefix)


def test_passkeys_are_seeded_with_the_requested_digits():
    assert nd.passkey(0) == nd.passkey(0) != nd.passkey(1)
    assert len(nd.passkey(5, digits=7)) == 7 and nd.passkey(5, digits=7).isdigit()


# --- the run loop ------------------------------------------------------------------------------


def grid(**kw) -> nd.NeedleGrid:
    return nd.NeedleGrid(**{"ctx_lens": [512, 1024], "depths": [0.0, 0.5, 1.0], "trials": 2, **kw})


class Loader:
    """Counts loads; nsa is a sliding-window reader of 600 tokens, full reads everything."""

    def __init__(self, **kw):
        self.loads, self.kw = [], kw

    def __call__(self, model, attention):
        self.loads.append((model, attention))
        self.lm = PasskeyLM(window=600 if attention == "nsa" else 10**9, attention=attention, **self.kw)
        return self.lm


def test_known_heatmaps_rows_and_pngs(tmp_path):
    out, reports = tmp_path / "needle.csv", tmp_path / "reports"
    loader = Loader()
    paths = nd.run_needle({"nsa": "m-nsa", "full": "m-full"}, loader, grid(), out, reports, progress=False)
    assert [p.name for p in paths] == ["needle_nsa.png", "needle_full.png", "needle_diff.png"]
    assert all(p.stat().st_size > 1000 for p in paths)

    rows = pd.read_csv(out)
    paired, rows = rows[rows["attention"] == "nsa-full"], rows[rows["attention"] != "nsa-full"]
    assert len(rows) == 2 * 6 * 2 and set(rows["status"]) == {"ok"}
    assert set(rows["suite"]) == {"needle"} and set(rows["task"]) == {"passkey"}
    assert {"git_rev", "torch", "timestamp", "kind"} <= set(rows.columns)
    em = rows[rows["metric"] == "exact_match"]
    assert (em[em["attention"] == "full"]["score"] == 1.0).all()
    nsa = em[em["attention"] == "nsa"].set_index(["ctx_len", "depth"])["score"]
    # the 600-token window sees every needle at 512 tokens, and at 1024 only those past the middle
    assert nsa.to_dict() == {(512, 0.0): 1.0, (512, 0.5): 1.0, (512, 1.0): 1.0,
                             (1024, 0.0): 0.0, (1024, 0.5): 1.0, (1024, 1.0): 1.0}
    assert (em["n"] == 2).all()
    # the prompt plus the answer's reserve is the cell's length
    assert max(loader.lm.prompts) == 1024 - (len(" 12345.") + 2)
    table = nd.heatmap_table(rows.to_dict("records"), "m-nsa", "passkey", "nsa")
    assert table.loc[0.0, 1024] == 0.0 and table.loc[1.0, 1024] == 1.0
    # per-trial scores and 95% intervals: 2 of 2 right -> Wilson [0.342, 1]
    assert em["ci_method"].eq("wilson").all() and em["ci_low"].round(3).isin([0.0, 0.342]).all()
    # NSA minus full per cell and pooled over depths per length (6 cells + 2 pooled, per metric)
    assert len(paired) == 2 * (6 + 2) and set(paired["model"]) == {"m-nsa vs m-full"}
    pem = paired[paired["metric"] == "exact_match"].fillna({"depth": -1}).set_index(["ctx_len", "depth"])
    assert pem.loc[(1024, 0.0), "score"] == -1.0 and pem.loc[(1024, 0.0), "p_value"] == 0.5
    assert set(pem.loc[pem["pooled_over"] == "depth"].index) == {(512, -1), (1024, -1)}  # depth empty: all
    pooled = pem.loc[(1024, -1)]  # 6 pairs: full alone right on 2 -> McNemar b=0, c=2
    assert pooled["n"] == 6 and pooled["score"] == pytest.approx(-1 / 3) and pooled["p_value"] == 0.5
    assert pooled["test"] == "mcnemar_exact" and pooled["ci_method"] == "newcombe_paired"
    assert pooled["ci_low"] < pooled["score"] < 0 < pooled["ci_high"]
    assert pem.loc[(512, -1), "score"] == 0.0 and pem.loc[(512, -1), "p_value"] == 1.0


def test_resume_skips_finished_cells(tmp_path):
    out = tmp_path / "needle.csv"
    models = {"nsa": "m", "full": "m"}
    nd.run_needle(models, Loader(), grid(), out, None, progress=False)
    first = pd.read_csv(out)
    again = Loader()
    nd.run_needle(models, again, grid(), out, None, progress=False)
    assert again.loads == [] and len(pd.read_csv(out)) == len(first)

    keep = ~((first["attention"] == "nsa") & (first["ctx_len"] == 1024) & (first["depth"] == 1.0))
    first[keep].to_csv(out, index=False)
    partial = Loader()
    nd.run_needle(models, partial, grid(), out, None, progress=False)
    assert partial.loads == [("m", "nsa")]
    assert len(partial.lm.prompts) == 2  # one cell, two trials
    assert len(pd.read_csv(out)) == len(first)

    other = Loader()  # a different grid (seed) is not mistaken for done
    nd.run_needle(models, other, grid(seed=7), out, None, progress=False)
    assert len(other.loads) == 2


def test_cells_beyond_max_length_are_unsupported_unless_extrapolating(tmp_path):
    out = tmp_path / "needle.csv"
    nd.run_needle({"full": "m"}, Loader(max_length=600), grid(), out, None, progress=False)
    rows = pd.read_csv(out)
    assert set(rows[rows["ctx_len"] == 1024]["status"]) == {"unsupported: context 1024 > model max_length 600 (see --extrapolate)"}
    assert set(rows[rows["ctx_len"] == 512]["status"]) == {"ok"}

    out2 = tmp_path / "extrapolated.csv"
    loader = Loader(max_length=600)
    nd.run_needle({"full": "m"}, loader, grid(extrapolate=True), out2, None, progress=False)
    rows = pd.read_csv(out2)
    assert set(rows["status"]) == {"ok"} and max(loader.lm.prompts) > 600
    assert rows.groupby("ctx_len")["extrapolated"].all().to_dict() == {512: False, 1024: True}


def test_file_haystack_is_used(tmp_path):
    loader = Loader()
    g = grid(ctx_lens=[400], depths=[0.5], trials=1, haystack_dir=str(FIXTURES))
    nd.run_needle({"full": "m"}, loader, g, tmp_path / "n.csv", None, progress=False)
    assert pd.read_csv(tmp_path / "n.csv")["haystack"].iloc[0] == str(FIXTURES)
    hay = g.haystacks(byte_encode)[0]
    text = byte_decode(hay.take(300)[0])
    assert text.startswith("The lighthouse keeper climbed the stairs every evening. He trimmed")
    assert "The orchard was planted" in text and "glass. He kept a log" in text


def test_grid_rejects_bad_settings():
    with pytest.raises(UsageError, match="placeholder"):
        grid(needle="no value here")
    with pytest.raises(UsageError, match="trials"):
        grid(trials=0)
    with pytest.raises(UsageError, match="not found"):
        grid(haystack_dir="/no/such/dir")


# --- CLI ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "tiny", "--ctx", "12q"], "bad context length"),
        (["--model", "tiny", "--depths", "150%"], "outside"),
        (["--model", "tiny", "--haystack", "/no/such/dir"], "haystack directory not found"),
        (["--model", "tiny", "--needle", "no placeholder"], "placeholder"),
        (["--model", "tiny", "--attn", "sparse"], "--attn"),
        (["--model", "/no/such/model", "--ctx", "256", "--depths", "1", "--trials", "1"], "/no/such/model"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    code = main(["needle", *args, "--out", str(tmp_path / "n.csv"), "--report-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("nsa-bench: error:") and message in err


def test_cli_runs_the_tiny_preset_end_to_end(tmp_path, capsys):
    # full attention only: NSA decoding of the tiny model under the Triton interpreter takes ~1 s a token
    out = tmp_path / "needle.csv"
    args = ["needle", "--model", "tiny", "--attn", "full", "--ctx", "256,200", "--depths", "1", "--trials", "1",
            "--device", "cpu", "--out", str(out), "--report-dir", str(tmp_path / "reports")]
    assert main(args) == 0
    rows = pd.read_csv(out)
    assert len(rows) == 4 and set(rows["status"]) == {"ok"} and set(rows["model"]) == {"tiny"}
    assert set(rows["attention"]) == {"full"} and (rows["prompt_tokens"] < rows["ctx_len"]).all()
    assert [p.name for p in (tmp_path / "reports").iterdir()] == ["needle_full.png"]
    assert "needle_full.png" in capsys.readouterr().out
