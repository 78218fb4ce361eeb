"""Haystacks for the needle test: filler sentences (generated or from text files), sized in model tokens.

A haystack is a stream of sentences. `TokenHaystack` encodes sentences one at a time (each with a
trailing space) and keeps their token boundaries, so a prompt can be cut to an exact token count
and a needle inserted between two sentences at a chosen depth.
"""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path
from typing import Callable, Iterator, Sequence

from nsa_bench.errors import UsageError

# Word lists of the built-in generator: plain, digit-free sentences that look like prose and
# never contain anything resembling a pass key.
_SUBJECTS = (
    "the old farmer", "a quiet student", "the river", "my neighbour", "the committee", "a small bird",
    "the engineer", "the village", "an artist", "the north wind", "the library", "a tired traveller",
    "the garden", "our teacher", "the city council", "a young fox", "the orchestra", "the ship",
)
_VERBS = (
    "watched", "described", "followed", "painted", "remembered", "carried", "ignored", "admired",
    "visited", "measured", "praised", "crossed", "studied", "repaired", "imagined", "collected",
)
_OBJECTS = (
    "the distant hills", "a long letter", "the morning fog", "an empty road", "the harvest",
    "a wooden bridge", "the evening sky", "an old map", "the quiet harbour", "a field of barley",
    "the broken clock", "a stack of books", "the winter market", "a narrow staircase",
    "the summer rain", "a forgotten song", "the stone wall", "a basket of apples",
)
_ENDINGS = (
    "", " before dinner", " with great care", " for the last time", " in the afternoon",
    " without a word", " as the light faded", " during the long walk home", " once again",
    " while the others slept", " after the storm",
)

# A sentence ends at . ! ? followed by whitespace, or glued to the next capital ("it.But"), as in
# texts whose paragraph breaks were lost.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[a-z0-9)][.!?])(?=[A-Z])")


def generated_sentences(seed: int) -> Iterator[str]:
    """An endless, deterministic stream of filler sentences for one seed."""
    rng = random.Random(f"haystack-{seed}")
    while True:
        sentence = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_ENDINGS)}."
        yield sentence[0].upper() + sentence[1:]


def read_text_dir(path: str | Path) -> str:
    """The .txt files of a directory (sorted by name) joined into one text; UsageError if there are none."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"haystack directory not found: {path}")
    files = sorted(path.glob("*.txt"))
    if not files:
        raise UsageError(f"no .txt files in haystack directory {path}")
    text = "\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files)
    if not text.strip():
        raise UsageError(f"the .txt files in {path} are empty")
    return text


def split_sentences(text: str) -> list[str]:
    """Sentences of a text (see _SENTENCE_END), whitespace collapsed."""
    sentences = (" ".join(s.split()) for s in _SENTENCE_END.split(text))
    return [s for s in sentences if s]


def cycled(sentences: Sequence[str]) -> Iterator[str]:
    """The sentences repeated endlessly (a long context from a short corpus)."""
    return itertools.cycle(sentences)


class TokenHaystack:
    """Encodes a sentence stream lazily and hands out exact-length token prefixes with sentence starts."""

    def __init__(self, sentences: Iterator[str], encode: Callable[[str], list[int]]):
        self._sentences = sentences
        self._encode = encode
        self._tokens: list[int] = []
        self._starts: list[int] = []  # token offset where each sentence begins

    def _grow(self, n_tokens: int) -> None:
        while len(self._tokens) < n_tokens:
            ids = self._encode(next(self._sentences) + " ")
            if ids:
                self._starts.append(len(self._tokens))
                self._tokens.extend(ids)

    def take(self, n_tokens: int) -> tuple[list[int], list[int]]:
        """The first n_tokens tokens (the last sentence cut if needed) and the sentence starts within them."""
        self._grow(n_tokens)
        starts = [s for s in self._starts if s < n_tokens] + [n_tokens]
        return self._tokens[:n_tokens], sorted(set(starts))


def insertion_point(starts: Sequence[int], n_tokens: int, depth: float) -> int:
    """The sentence boundary at or before depth * n_tokens (0 = start, 1 = end of the haystack)."""
    target = depth * n_tokens
    return max((s for s in starts if s <= target + 1e-9), default=0)
