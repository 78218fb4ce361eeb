"""Help texts in plain words: no type placeholders (`<list[str]>`, `<bool>`, `{csvs}...`)."""

import re

import pytest

from nsa_bench.cli import main

PLACEHOLDER = re.compile(r"<(str|int|bool|float|path|list\[[^\]]*\])>|\{csvs\}", re.IGNORECASE)


@pytest.mark.parametrize("command", [[], ["train"], ["longbench", "run"], ["longbench", "score"], ["kernels"],
                                     ["needle"], ["lmeval"], ["check"], ["report"], ["env"]])
def test_help_has_no_type_placeholders(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main([*command, "--help"]) == 0
    shown = capsys.readouterr().out
    assert "--help" in shown and not PLACEHOLDER.search(shown), PLACEHOLDER.search(shown)


def test_help_names_values_plainly(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    main(["report", "--help"])
    report = capsys.readouterr().out
    main(["needle", "--help"])
    needle = capsys.readouterr().out
    assert "[OPTIONS] CSV..." in report and re.search(r"--out\s+PATH\s", report)
    assert re.search(r"--trials\s+N\s", needle) and re.search(r"--extrapolate\s+Also run", needle)


def test_needle_without_model_says_how_to_train_a_pair(capsys, monkeypatch):
    """The one-line error names a train command and a needle command whose options all exist."""
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["needle", "--ctx", "64k"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "nsa-bench train --preset needle" in error
    for command in ("train", "needle"):
        suggested = set(re.findall(r"--[a-z-]+", error.split(f"nsa-bench {command} ", 1)[1].split(";")[0]))
        main([command, "--help"])
        assert suggested <= set(re.findall(r"--[a-z-]+", capsys.readouterr().out)), command
