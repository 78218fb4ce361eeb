"""Training data: windows of local text mixed with synthetic long-context retrieval examples.

Every batch is a pure function of (seed, step), so an NSA / full pair sees the same data in the same
order, and a resumed run continues with the batches it would have seen.

Synthetic examples fill the whole context (so retrieval spans it):
  passkey  a 5-digit key hidden at a random depth in essay text, asked for at the end
  kv       a list of random hex key/value pairs; the value of one key is asked for at the end
The answer tokens are marked, so their loss and exact-match accuracy can be reported apart.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

TEXT_SUFFIXES = (".txt", ".md", ".text")


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
    """ids: ctx+1 tokens (inputs are ids[:-1], targets ids[1:]); answer: [start, end) of the answer in ids."""

    ids: list[int]
    answer: tuple[int, int]


def _assemble(parts: list[list[int]], answer: list[int], length: int) -> Example:
    ids = [t for p in parts for t in p]
    ids = (ids + answer)[-length:]
    return Example(ids, (len(ids) - len(answer), len(ids)))


def passkey_example(rng: random.Random, text_ids: list[int], tokenizer, length: int) -> Example:
    """A passkey hidden in essay text at a random depth, asked for at the end; `length` tokens in all."""
    key = str(rng.randint(10000, 99999))
    head = tokenizer.encode("A pass key is hidden in this text. Find it and remember it.\n")
    needle = tokenizer.encode(f"\nThe pass key is {key}. Remember it. {key} is the pass key.\n")
    question = tokenizer.encode("\nWhat is the pass key? The pass key is ")
    answer = tokenizer.encode(key)
    n_fill = max(0, length - len(head) - len(needle) - len(question) - len(answer))
    start = rng.randrange(0, max(1, len(text_ids) - n_fill))
    filler = text_ids[start : start + n_fill]
    cut = rng.randint(0, len(filler))
    return _assemble([head, filler[:cut], needle, filler[cut:], question], answer, length)


def kv_example(rng: random.Random, tokenizer, length: int) -> Example:
    """Random hex key/value pairs filling the context, then the value of one of them is asked for."""
    head = tokenizer.encode("Remember the value of each key.\n")
    pairs, used = [], len(head)
    keys: list[tuple[str, str]] = []
    budget = length - 64
    while True:
        k, v = f"{rng.getrandbits(32):08x}", f"{rng.getrandbits(32):08x}"
        line = tokenizer.encode(f"key {k} value {v}\n")
        if used + len(line) > budget and keys:
            break
        pairs.append(line)
        keys.append((k, v))
        used += len(line)
    k, v = keys[rng.randrange(len(keys))]
    question = tokenizer.encode(f"\nThe value of key {k} is ")
    answer = tokenizer.encode(v)
    n_pad = max(0, length - used - len(question) - len(answer))
    pad = (tokenizer.encode("\n") * n_pad)[:n_pad]
    return _assemble([head, pad, *pairs, question], answer, length)


class TrainData:
    """Batches [B, ctx+1] of token ids with an answer mask [B, ctx] over the targets.

    synthetic_frac of each batch's rows (rounded) are retrieval examples, alternating passkey and kv;
    the rest are random windows of the text. The last val_frac of the text is held out for validation.
    """

    def __init__(self, text: str, tokenizer, ctx: int, batch: int, seed: int,
                 synthetic_frac: float = 0.25, val_frac: float = 0.1):
        if not 0 <= synthetic_frac <= 1:
            raise ValueError(f"synthetic fraction must be in [0, 1], got {synthetic_frac}")
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
        self.n_synthetic = round(synthetic_frac * batch)

    def _rows(self, rng: random.Random, text_ids: list[int], n_text: int, n_synth: int) -> list[Example]:
        rows = []
        for _ in range(n_text):
            start = rng.randrange(0, len(text_ids) - self.ctx)
            rows.append(Example(text_ids[start : start + self.ctx + 1], (0, 0)))
        for i in range(n_synth):
            if i % 2 == 0:
                rows.append(passkey_example(rng, text_ids, self.tokenizer, self.ctx + 1))
            else:
                rows.append(kv_example(rng, self.tokenizer, self.ctx + 1))
        return rows

    @staticmethod
    def _tensors(rows: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.tensor([r.ids for r in rows], dtype=torch.long)
        mask = torch.zeros(len(rows), ids.shape[1] - 1, dtype=torch.bool)
        for i, r in enumerate(rows):
            a, b = r.answer
            mask[i, max(0, a - 1) : max(0, b - 1)] = True  # target position j predicts ids[j+1]
        return ids, mask

    def batch_at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The training batch of step (0-based): ids [B, ctx+1], answer mask [B, ctx]."""
        rng = random.Random(f"{self.seed}:train:{step}")
        return self._tensors(self._rows(rng, self.train_ids, self.batch - self.n_synthetic, self.n_synthetic))

    def val_text(self, i: int) -> torch.Tensor:
        """Held-out text batch i: ids [B, ctx+1]."""
        return self._tensors(self._rows(random.Random(f"{self.seed}:val:{i}"), self.val_ids, self.batch, 0))[0]

    def val_retrieval(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Held-out retrieval batch i (filler from held-out text): ids and answer mask."""
        rng = random.Random(f"{self.seed}:val-retrieval:{i}")
        return self._tensors(self._rows(rng, self.val_ids, 0, self.batch))
