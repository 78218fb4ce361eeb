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

# Keys: single common words (each one token in the tokenizers trained here), distinct within a prompt.
KEY_WORDS = (
    "apple", "bridge", "castle", "dragon", "engine", "forest", "garden", "harbor", "island", "jungle", "kettle",
    "ladder", "meadow", "needle", "ocean", "pencil", "quarry", "river", "saddle", "tunnel", "valley", "window",
    "anchor", "basket", "candle", "desert", "falcon", "glacier", "hammer", "lantern", "mirror", "orchard",
    "pepper", "rocket", "spider", "temple", "violin", "wallet", "beacon", "cactus", "dolphin", "feather",
    "tiger", "piano", "silver", "winter", "summer", "planet", "copper", "marble", "thunder", "shadow",
    "button", "carpet", "helmet", "jacket", "magnet", "napkin", "oyster", "parrot", "rabbit", "salmon",
    "turtle", "walnut", "zipper", "bamboo", "cherry", "coffee", "donkey", "emerald", "fossil", "guitar",
    "hazel", "igloo", "jasmine", "koala", "lemon", "mango", "nectar", "olive", "panda", "quartz",
    "raven", "sphinx", "tulip", "umbrella", "velvet", "walrus", "yogurt", "zebra", "acorn", "blossom",
    "canyon", "dune", "ember", "fjord", "geyser", "horizon", "iris", "jewel", "kayak", "lagoon",
)
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class TaskInstance:
    """needles: texts to hide (the first is the one a grid's depth places; the others go to random
    depths); question: ends where the answer begins; answer: the text a perfect model writes;
    references: the strings scored (RULER's string match)."""

    task: str
    needles: list[str]
    question: str
    answer: str
    references: list[str]


def random_key(rng: random.Random, taken: set[str]) -> str:
    """A key word not in taken (e.g. 'falcon'); taken gains it."""
    while True:
        key = rng.choice(KEY_WORDS)
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
        return TaskInstance(task, [_needle(k, v) for k, v in zip(keys, values)], question,
                            " " + ", ".join(values) + ".", values)
    if task == "vt":
        value = random_value(rng, taken, 5)
        names = [random_variable(rng, taken) for _ in range(4)]
        needles = [f"VAR {names[0]} = {value}."] + [f"VAR {b} = VAR {a}." for a, b in zip(names, names[1:])]
        question = f"Find all variables that are assigned the value {value} in the text above. The variables are:"
        return TaskInstance(task, needles, question, " " + " ".join(names) + ".", names)
    raise ValueError(f"unknown needle task {task!r}; tasks: {', '.join(TASKS)}")


def place_needles(starts: list[int], n_tokens: int, depth: float, n_needles: int, rng: random.Random) -> list[int]:
    """Insertion points (sentence starts) for the needles: the first at depth, the others at random depths."""
    from .haystack import insertion_point

    return [insertion_point(starts, n_tokens, depth if i == 0 else rng.random()) for i in range(n_needles)]


def build_family_prompt(encode, haystack, prompt_tokens: int, depth: float, inst: TaskInstance, rng: random.Random):
    """Token ids of INTRO + haystack with inst's needles + question, exactly prompt_tokens long, and
    the depth at which the first needle went in. ValueError if the pieces do not fit."""
    intro, question = encode(INTRO), encode("\n" + inst.question)
    needles = [encode("\n" + n + "\n") for n in inst.needles]
    budget = prompt_tokens - len(intro) - len(question) - sum(map(len, needles))
    if budget < 0:
        raise ValueError(f"a {prompt_tokens}-token prompt cannot hold the intro, {len(needles)} needle(s) and the "
                         f"question ({prompt_tokens - budget} tokens)")
    tokens, starts = haystack.take(budget)
    points = place_needles(starts, budget, depth, len(needles), rng)
    ids, prev = list(intro), 0
    for at, i in sorted((at, i) for i, at in enumerate(points)):
        ids += tokens[prev:at] + needles[i]
        prev = at
    return ids + tokens[prev:] + question, (points[0] / budget if budget else 0.0)


def match_all(answer: str, references: list[str]) -> float:
    """Fraction of the references that occur in the answer as whole words (RULER's string_match_all)."""
    if not references:
        return 0.0
    found = sum(bool(re.search(rf"(?<![\w]){re.escape(r)}(?![\w])", answer)) for r in references)
    return found / len(references)
