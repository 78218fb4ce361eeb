"""Training data: windows of text mixed with dense retrieval rows from the needle family.

Every batch is a pure function of (seed, step, length), so an NSA / full pair sees the same data in
the same order, and a resumed run continues with the batches it would have seen.

A retrieval row (`retrieval_row`) is text with the needles of several task instances of the needle
family (suites/needle_tasks.py) hidden at random depths, then every instance's question followed by
its answer: many answers per row, keys at every depth, so retrieval pays from the first steps. The
answer tokens are marked, so their loss and exact-match accuracy can be reported apart. Held-out
rows (`val_retrieval`) are shaped like the needle suite's prompts: one question, at the end.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from nsa_bench.suites.needle_tasks import INTRO, TASKS, make_instance

TEXT_SUFFIXES = (".txt", ".md", ".text")
NEEDLE_SHARE = 0.4  # at most this share of a retrieval row is needles, questions and answers


def load_corpus(path: str | Path) -> str:
    """The text of a file, or of a directory's text files (sorted by name, recursively)."""
    path = Path(path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    else:
        raise ValueError(f"training data {path} does not exist")
    text = "\n\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files)
    if not text.strip():
        raise ValueError(f"training data {path} holds no text (looked for {', '.join(TEXT_SUFFIXES)} files)")
    return text


@dataclass
class Example:
    """ids: length+1 tokens (inputs ids[:-1], targets ids[1:]); answers: [start, end) spans of answers in ids."""

    ids: list[int]
    answers: list[tuple[int, int]]


def _fill(parts: list[list[int]], text_ids: list[int], n_fill: int, rng: random.Random) -> list[int]:
    """parts (needles) hidden at random token positions of a random window of n_fill text tokens."""
    start = rng.randrange(0, max(1, len(text_ids) - n_fill))
    filler = text_ids[start : start + n_fill]
    cuts = sorted(rng.randint(0, len(filler)) for _ in parts)
    out, prev = [], 0
    for cut, part in zip(cuts, parts):
        out += filler[prev:cut] + part
        prev = cut
    return out + filler[prev:]


def interleave(groups: list[list[list[int]]], rng: random.Random) -> list[list[int]]:
    """The needles of all instances in a random order that keeps each instance's own needles in
    their order, so an answer listing several values (multi-value, variable tracking) lists them in
    the order the text gives them: the only order a model can learn."""
    slots = [g for g, parts in enumerate(groups) for _ in parts]
    rng.shuffle(slots)
    pending = [iter(parts) for parts in groups]
    return [next(pending[g]) for g in slots]


def _encode_all(tokenizer, texts: list[str]) -> list[list[int]]:
    """Each text's ids, in one call where the tokenizer can batch."""
    batch = getattr(tokenizer, "encode_batch", None)
    return batch(texts) if batch else [tokenizer.encode(t) for t in texts]


def retrieval_row(rng: random.Random, text_ids: list[int], tokenizer, length: int, tasks=TASKS) -> Example:
    """`length` tokens: intro, text with the needles of several instances, then each question and answer."""
    taken: set[str] = set()
    # instances until their needles, questions and answers would pass a share of the row drawn up to
    # NEEDLE_SHARE (so rows range from one instance, no distractors, to many; estimated at 3 characters
    # a token, then measured)
    share = rng.uniform(0.0, NEEDLE_SHARE)
    instances, chars = [], 0
    while chars < 3 * share * length or not instances:
        inst = make_instance(rng.choice(tasks), rng, taken)
        instances.append(inst)
        chars += sum(map(len, inst.needles)) + len(inst.question) + len(inst.answer)
    texts = [INTRO]
    for inst in instances:
        texts += ["\n" + n + "\n" for n in inst.needles] + ["\n" + inst.question, inst.answer]
    encoded = iter(_encode_all(tokenizer, texts))
    intro = next(encoded)
    groups, qa, used = [], [], 0
    for inst in instances:
        parts = [next(encoded) for _ in inst.needles]
        question, answer = next(encoded), next(encoded)
        cost = sum(map(len, parts)) + len(question) + len(answer)
        if used + cost > share * length and qa:
            break
        used += cost
        groups.append(parts)
        qa.append((question, answer))
    needles = interleave(groups, rng)
    n_fill = max(0, length - len(intro) - used)
    ids = intro + _fill(needles, text_ids, n_fill, rng)
    rng.shuffle(qa)
    answers = []
    for question, answer in qa:
        ids += question
        answers.append((len(ids), len(ids) + len(answer)))
        ids += answer
    return _trim(ids, answers, length)


def prompt_row(rng: random.Random, text_ids: list[int], tokenizer, length: int, task: str) -> Example:
    """One instance shaped like a needle-suite prompt: intro, text with its needles, its question, the answer."""
    inst = make_instance(task, rng, set())
    intro, question, answer, *needles = _encode_all(
        tokenizer, [INTRO, "\n" + inst.question, inst.answer] + ["\n" + n + "\n" for n in inst.needles])
    n_fill = max(0, length - len(intro) - sum(map(len, needles)) - len(question) - len(answer))
    ids = intro + _fill(needles, text_ids, n_fill, rng) + question
    return _trim(ids + answer, [(len(ids), len(ids) + len(answer))], length)


def _trim(ids: list[int], answers: list[tuple[int, int]], length: int) -> Example:
    """Keep the last `length` tokens (a row may overshoot by a few when the text is short)."""
    cut = max(0, len(ids) - length)
    return Example(ids[cut:], [(a - cut, b - cut) for a, b in answers if a >= cut])


def tokenizer_text(text: str, seed: int, max_chars: int = 16 * 2**20, n_instances: int = 3000) -> str:
    """What a subword tokenizer is trained on: up to max_chars of the corpus and the needle family's
    wording (n_instances rendered), so the wording's words are tokens."""
    rng = random.Random(f"{seed}:tokenizer")
    shown = []
    for i in range(n_instances):
        inst = make_instance(TASKS[i % len(TASKS)], rng)
        shown.append(INTRO + "\n".join(inst.needles) + "\n" + inst.question + inst.answer)
    return text[:max_chars] + "\n".join(shown)


class TrainData:
    """Batches [B, length+1] of token ids with an answer mask [B, length] over the targets.

    retrieval_frac of each batch's rows (rounded) are dense retrieval rows; the rest are random
    windows of the text. The last val_frac of the text is held out for validation.
    """

    def __init__(self, text: str, tokenizer, ctx: int, batch: int, seed: int,
                 retrieval_frac: float = 0.5, val_frac: float = 0.05, tasks: tuple[str, ...] = TASKS):
        if not 0 <= retrieval_frac <= 1:
            raise ValueError(f"retrieval fraction must be in [0, 1], got {retrieval_frac}")
        ids = tokenizer.encode(text)
        split = int(len(ids) * (1 - val_frac))
        self.train_ids, self.val_ids = ids[:split], ids[split:]
        shortest = min(len(self.train_ids), len(self.val_ids))
        if shortest < ctx + 1:
            # a small corpus: repeat it so that windows of ctx+1 tokens exist (documented in the CSV's n_text_tokens)
            reps = -(-(ctx + 1) // max(1, shortest)) + 1
            self.train_ids, self.val_ids = self.train_ids * reps, self.val_ids * reps
        self.n_text_tokens = len(ids)
        self.tokenizer, self.ctx, self.batch, self.seed = tokenizer, ctx, batch, seed
        self.retrieval_frac = retrieval_frac
        unknown = set(tasks) - set(TASKS)
        if not tasks or unknown:
            raise ValueError(f"unknown retrieval tasks {sorted(unknown)}; tasks: {', '.join(TASKS)}")
        self.tasks = tuple(tasks)

    def _text_row(self, rng: random.Random, text_ids: list[int], length: int) -> Example:
        start = rng.randrange(0, len(text_ids) - length)
        return Example(text_ids[start : start + length + 1], [])

    @staticmethod
    def _tensors(rows: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.tensor([r.ids for r in rows], dtype=torch.long)
        mask = torch.zeros(len(rows), ids.shape[1] - 1, dtype=torch.bool)
        for i, r in enumerate(rows):
            for a, b in r.answers:
                mask[i, max(0, a - 1) : max(0, b - 1)] = True  # target position j predicts ids[j+1]
        return ids, mask

    def batch_at(self, step: int, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The training batch of step (0-based) at `length` tokens (default ctx; the batch keeps
        batch*ctx tokens): ids [B, length+1], answer mask [B, length]."""
        length = length or self.ctx
        rows = max(1, self.batch * self.ctx // length)
        n_retrieval = round(self.retrieval_frac * rows)
        rng = random.Random(f"{self.seed}:train:{step}:{length}")
        out = [retrieval_row(rng, self.train_ids, self.tokenizer, length + 1, self.tasks) for _ in range(n_retrieval)]
        out += [self._text_row(rng, self.train_ids, length) for _ in range(rows - n_retrieval)]
        return self._tensors(out)

    def val_text(self, i: int) -> torch.Tensor:
        """Held-out text batch i: ids [B, ctx+1]."""
        rng = random.Random(f"{self.seed}:val:{i}")
        return self._tensors([self._text_row(rng, self.val_ids, self.ctx) for _ in range(self.batch)])[0]

    def val_retrieval(self, i: int, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Held-out prompt-shaped rows (held-out text, fresh keys), the tasks in turn: ids, answer mask, tasks."""
        rng = random.Random(f"{self.seed}:val-retrieval:{i}")
        tasks = [self.tasks[j % len(self.tasks)] for j in range(n or self.batch)]
        rows = [prompt_row(rng, self.val_ids, self.tokenizer, self.ctx + 1, t) for t in tasks]
        return (*self._tensors(rows), tasks)
