"""The needle family: RULER-style retrieval tasks, generated offline from a seed.

Each task is one question over a haystack in which needles are hidden (after NVIDIA RULER's NIAH
and variable-tracking tasks; the wording is this project's own):

  niah_single      one needle  "One of the special magic numbers for {key} is: {value}."
  niah_multikey    the asked needle among 3 distractor needles with other keys
  niah_multivalue  4 needles with the same key and different values; all 4 values are asked
  niah_multiquery  4 needles with different keys; all 4 are asked at once
  vt               variable tracking: "VAR {A} = {value}." then a chain "VAR {B} = VAR {A}." ...;
                   the question asks for every variable that holds the value

A `TaskInstance` holds the needles (text, in the order they must appear), the question (which ends
where the answer begins) and the answer the model should write. Scores follow RULER's string
matching: `match_all` is the fraction of the reference strings found in the answer. Training
(`nsa_bench.train_data`) draws its retrieval rows from the same generators with other seeds, so a
trained model meets the suite's wording, never its examples.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

TASKS = ("niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery", "vt")

INTRO = ("Some special magic numbers are hidden within the following text. Make sure to memorize them. "
         "I will quiz you about them afterwards.\n")

_ADJECTIVES = (
    "ancient", "brave", "calm", "dark", "eager", "fancy", "gentle", "happy", "icy", "jolly", "kind", "lively",
    "mighty", "narrow", "odd", "proud", "quick", "rapid", "silent", "tall", "upper", "vast", "wild", "young",
    "bitter", "clever", "dusty", "empty", "fuzzy", "golden", "hollow", "jagged", "lonely", "misty", "noble",
    "orange", "purple", "rusty", "shiny", "tidy", "violet", "wooden", "yellow", "zealous", "busy", "cold",
)
_NOUNS = (
    "apple", "bridge", "castle", "dragon", "engine", "forest", "garden", "harbor", "island", "jungle", "kettle",
    "ladder", "meadow", "needle", "ocean", "pencil", "quarry", "river", "saddle", "tunnel", "valley", "window",
    "anchor", "basket", "candle", "desert", "falcon", "glacier", "hammer", "lantern", "mirror", "orchard",
    "pepper", "rocket", "spider", "temple", "violin", "wallet", "beacon", "cactus", "dolphin", "feather",
)
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class TaskInstance:
    """needles: texts to hide (in this order); question: ends where the answer begins; answer: the
    text a perfect model writes; references: the strings scored (RULER's string match)."""

    task: str
    needles: list[str]
    question: str
    answer: str
    references: list[str]


def random_key(rng: random.Random, taken: set[str]) -> str:
    """A fresh adjective-noun key (e.g. 'misty-harbor') not in taken; taken gains it."""
    while True:
        key = f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}"
        if key not in taken:
            taken.add(key)
            return key


def random_value(rng: random.Random, taken: set[str], digits: int = 7) -> str:
    """A fresh number of `digits` digits, no leading zero."""
    while True:
        value = str(rng.randint(10 ** (digits - 1), 10**digits - 1))
        if value not in taken:
            taken.add(value)
            return value


def random_variable(rng: random.Random, taken: set[str]) -> str:
    """A fresh name of 5 capital letters."""
    while True:
        name = "".join(rng.choice(_LETTERS) for _ in range(5))
        if name not in taken:
            taken.add(name)
            return name


def _needle(key: str, value: str) -> str:
    return f"One of the special magic numbers for {key} is: {value}."


def _ask_one(key: str) -> str:
    return f"What is the special magic number for {key} mentioned in the provided text? The special magic number for {key} is:"


def _ask_all(key: str) -> str:
    return f"What are all the special magic numbers for {key} mentioned in the provided text? The special magic numbers for {key} are:"


def make_instance(task: str, rng: random.Random, taken: set[str] | None = None, digits: int = 7) -> TaskInstance:
    """One instance of `task`; keys, values and names are drawn fresh (not in `taken`, which gains them)."""
    taken = set() if taken is None else taken
    if task == "niah_single":
        key, value = random_key(rng, taken), random_value(rng, taken, digits)
        return TaskInstance(task, [_needle(key, value)], _ask_one(key), f" {value}.", [value])
    if task == "niah_multikey":
        keys = [random_key(rng, taken) for _ in range(4)]
        values = [random_value(rng, taken, digits) for _ in keys]
        needles = [_needle(k, v) for k, v in zip(keys, values)]
        rng.shuffle(needles)
        return TaskInstance(task, needles, _ask_one(keys[0]), f" {values[0]}.", [values[0]])
    if task == "niah_multivalue":
        key = random_key(rng, taken)
        values = [random_value(rng, taken, digits) for _ in range(4)]
        return TaskInstance(task, [_needle(key, v) for v in values], _ask_all(key), " " + ", ".join(values) + ".", values)
    if task == "niah_multiquery":
        keys = [random_key(rng, taken) for _ in range(4)]
        values = [random_value(rng, taken, digits) for _ in keys]
        question = ("What are the special magic numbers for " + ", ".join(keys[:-1]) + f" and {keys[-1]} mentioned in "
                    "the provided text? The special magic numbers for them are:")
        order = list(range(4))
        rng.shuffle(order)  # needles in another order than the question asks for them
        return TaskInstance(task, [_needle(keys[i], values[i]) for i in order], question,
                            " " + ", ".join(values) + ".", values)
    if task == "vt":
        value = random_value(rng, taken, 5)
        names = [random_variable(rng, taken) for _ in range(4)]
        needles = [f"VAR {names[0]} = {value}."] + [f"VAR {b} = VAR {a}." for a, b in zip(names, names[1:])]
        question = f"Find all variables that are assigned the value {value} in the text above. The variables are:"
        return TaskInstance(task, needles, question, " " + " ".join(names) + ".", names)
    raise ValueError(f"unknown needle task {task!r}; tasks: {', '.join(TASKS)}")


def match_all(answer: str, references: list[str]) -> float:
    """Fraction of the references that occur in the answer as whole words (RULER's string_match_all)."""
    if not references:
        return 0.0
    found = sum(bool(re.search(rf"(?<![\w]){re.escape(r)}(?![\w])", answer)) for r in references)
    return found / len(references)
