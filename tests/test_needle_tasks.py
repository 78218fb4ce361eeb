"""The needle family: each task's generator hides what it asks for, and the RULER-style scorer."""

import random

import pytest

from nsa_bench.models import ByteTokenizer
from nsa_bench.suites.haystack import TokenHaystack, generated_sentences
from nsa_bench.suites.needle_tasks import TASKS, build_family_prompt, make_instance, match_all


@pytest.mark.parametrize("task", TASKS)
def test_instances_hide_every_reference_and_the_answer_names_them(task):
    for seed in range(20):
        inst = make_instance(task, random.Random(seed))
        hidden = " ".join(inst.needles)
        assert inst.references and all(r in hidden for r in inst.references)
        assert match_all(inst.answer, inst.references) == 1.0
        assert inst.question.endswith(":") and inst.answer.startswith(" ") and inst.answer.endswith(".")


def test_instances_are_seeded_and_keys_values_fresh():
    a, b = make_instance("niah_multikey", random.Random(1)), make_instance("niah_multikey", random.Random(1))
    assert a == b
    taken: set[str] = set()
    insts = [make_instance(t, random.Random(9), taken) for t in TASKS for _ in range(3)]
    refs = [r for i in insts for r in i.references]
    assert len(refs) == len(set(refs))  # no value or name drawn twice while `taken` is shared


def test_multikey_asks_for_the_first_needle_among_distractors():
    inst = make_instance("niah_multikey", random.Random(2))
    key = inst.question.split(" for ", 1)[1].split(" ")[0]
    assert len(inst.needles) == 4 and f"for {key} is: {inst.references[0]}." in inst.needles[0]
    assert all(key not in n for n in inst.needles[1:])


def test_variable_tracking_chain():
    inst = make_instance("vt", random.Random(5))
    value = inst.needles[0].split(" = ")[1].rstrip(".")
    names = inst.references
    assert inst.needles[0] == f"VAR {names[0]} = {value}."
    assert inst.needles[1:] == [f"VAR {b} = VAR {a}." for a, b in zip(names, names[1:])]
    assert value in inst.question


def test_match_all_counts_whole_references():
    assert match_all(" 1234567, 7654321.", ["1234567", "7654321"]) == 1.0
    assert match_all(" 12345678.", ["1234567"]) == 0.0  # a longer number is not the value
    assert match_all(" ABCDE FGHIJ", ["ABCDE", "FGHIJ", "KLMNO", "PQRST"]) == 0.5
    assert match_all("anything", []) == 0.0


def test_family_prompt_has_the_exact_length_and_the_first_needle_at_depth():
    tok = ByteTokenizer()
    inst = make_instance("niah_multivalue", random.Random(3))
    for depth in (0.0, 0.5, 1.0):
        ids, at = build_family_prompt(tok.encode, TokenHaystack(generated_sentences(0), tok.encode), 3000, depth,
                                      inst, random.Random(0))
        text = tok.decode(ids)
        assert len(ids) == 3000 and text.endswith(inst.question)
        assert all(n in text for n in inst.needles) and abs(at - depth) < 0.05
        first = text.index(inst.needles[0])
        assert abs(first / len(text) - depth) < 0.1
    with pytest.raises(ValueError, match="cannot hold"):
        build_family_prompt(tok.encode, TokenHaystack(generated_sentences(0), tok.encode), 50, 0.5, inst, random.Random(0))


def test_needle_without_a_model_says_how_to_get_a_pair(capsys):
    from nsa_bench.cli import main

    assert main(["needle", "--ctx", "64k"]) == 2
    err = capsys.readouterr().err
    assert "nsa-bench train --preset needle --attn both" in err and "Traceback" not in err


def test_needle_task_option_rejects_unknown_tasks(capsys):
    from nsa_bench.cli import main

    assert main(["needle", "--model", "tiny", "--task", "niah_bogus"]) == 2
    assert "unknown needle task" in capsys.readouterr().err
