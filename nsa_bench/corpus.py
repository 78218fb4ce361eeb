"""The default training corpus: text every machine has without downloads.

The Python standard library's sources (modules and their docstrings, about 30 MB with the
interpreter that runs this) plus the needle suite's generated prose. Too large for the small models
trained here to memorise, and the same on every machine with the same Python version (the CSV
records which: `describe_default_corpus`).
"""

from __future__ import annotations

import itertools
import sys
import sysconfig
from pathlib import Path

from nsa_bench.suites.haystack import generated_sentences

PROSE_SHARE = 0.1  # share of the corpus that is the needle suite's generated prose


def stdlib_sources() -> list[Path]:
    """The standard library's .py files (no site-packages), sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts and "dist-packages" not in p.parts)


def default_corpus(max_bytes: int = 32 * 2**20, seed: int = 0) -> str:
    """Standard-library sources up to max_bytes, with generated prose making up PROSE_SHARE of it."""
    code_budget = int(max_bytes * (1 - PROSE_SHARE))
    parts, size = [], 0
    for path in stdlib_sources():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if size + len(text) > code_budget:
            break
        parts.append(text)
        size += len(text)
    if not parts:
        raise ValueError(f"no standard-library sources found under {sysconfig.get_paths()['stdlib']}")
    prose_budget = int(size * PROSE_SHARE / (1 - PROSE_SHARE))
    prose, n = [], 0
    for sentence in itertools.islice(generated_sentences(seed), 10**8):
        prose.append(sentence)
        n += len(sentence) + 1
        if n >= prose_budget:
            break
    # prose in paragraphs between the files, so text windows meet both kinds
    step = max(1, len(prose) // len(parts))
    chunks = [" ".join(prose[i : i + step]) for i in range(0, len(prose), step)]
    return "\n\n".join(p for pair in itertools.zip_longest(parts, chunks, fillvalue="") for p in pair if p)


def describe_default_corpus() -> str:
    """What the default corpus is on this machine, for the CSV."""
    return f"python{sys.version_info.major}.{sys.version_info.minor} stdlib sources + generated prose"
