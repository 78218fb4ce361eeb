"""Small CausalLM stand-ins for the needle and lm-eval tests (byte tokenizer, CPU, deterministic).

ToyLM        a real (random, seeded) causal model: logits from a running mean of token embeddings,
             greedy `generate` through `logits`; it favours ASCII (its greedy text round-trips
             through the tokenizer); counts forward calls and rows.
PasskeyLM    answers the pass-key question by reading the needle, but only when the needle lies in
             its last `window` tokens (a sliding-window model: known heatmaps).
OracleLM     a ToyLM that answers GSM8K-style prompts with scripted text for known questions.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch

BOS, EOS, VOCAB = 256, 257, 259


class ByteLM:
    """Byte tokenizer and the CausalLM attributes; subclasses define logits and generate."""

    bos_token_id = BOS
    eos_token_id = EOS

    def __init__(self, name: str = "scripted", attention: str = "full", max_length: int = 4096):
        self.name, self.attention, self.max_length = name, attention, max_length
        self.device = torch.device("cpu")

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")

    def _stop(self, new: list[int], stop: Sequence[str]) -> list[int]:
        """new cut just after the first token that completes a stop string."""
        for i in range(1, len(new) + 1):
            if any(s and s in self.decode(new[:i]) for s in stop):
                return new[:i]
        return new


class ToyLM(ByteLM):
    """A seeded random causal model: logits[t] = W @ mean(emb[ids[:t+1]]) + b."""

    def __init__(self, seed: int = 0, dim: int = 16, **kw):
        super().__init__(name="toy", **kw)
        g = torch.Generator().manual_seed(seed)
        self.emb = torch.randn(VOCAB, dim, generator=g)
        self.out = torch.randn(dim, VOCAB, generator=g) * 3.0
        self.bias = torch.randn(VOCAB, generator=g)
        self.bias[128:] -= 30.0  # non-ASCII bytes and specials are never the greedy choice
        self.calls: list[tuple[int, int]] = []  # (rows, length) of every logits call

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(ids.shape))
        x = self.emb[ids.long()]  # [B, T, D]
        running = x.cumsum(1) / torch.arange(1, ids.shape[1] + 1).view(1, -1, 1)
        return (running @ self.out + self.bias).float()

    def generate(self, ids: Sequence[int], max_new_tokens: int, stop: Sequence[str] = ()) -> list[int]:
        seq, new = list(ids), []
        for _ in range(max_new_tokens):
            nxt = int(self.logits(torch.tensor([seq]))[0, -1].argmax())
            seq.append(nxt)
            new.append(nxt)
            if stop and any(s in self.decode(new) for s in stop):
                break
        return new


class PasskeyLM(ByteLM):
    """Reads 'pass key is N' from the prompt if the needle starts within the last `window` tokens."""

    def __init__(self, window: int = 10**9, **kw):
        super().__init__(name="passkey-oracle", **kw)
        self.window = window
        self.prompts: list[int] = []  # prompt lengths seen

    def generate(self, ids: Sequence[int], max_new_tokens: int, stop: Sequence[str] = ()) -> list[int]:
        self.prompts.append(len(ids))
        text = self.decode(ids)
        found = re.search(r"pass key is (\d+)", text)
        if found and len(ids) - found.start() <= self.window:
            answer = f" {found.group(1)}. Remember it.\n"
        else:
            answer = " 1. I forgot.\n"
        return self._stop(self.encode(answer)[:max_new_tokens], stop)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class OracleLM(ToyLM):
    """Continues a prompt whose last question is a key of `answers` with that scripted text."""

    def __init__(self, answers: dict[str, str], **kw):
        super().__init__(**kw)
        self.name = "oracle"
        self.answers = answers
        self.requests: list[tuple[int, int]] = []  # (prompt tokens, max_new_tokens)

    def generate(self, ids: Sequence[int], max_new_tokens: int, stop: Sequence[str] = ()) -> list[int]:
        self.requests.append((len(ids), max_new_tokens))
        question = self.decode(ids).rsplit("Question:", 1)[-1].rsplit("\nAnswer:", 1)[0].strip()
        # Deliberately ignores `stop`: the caller must cut the text at stop strings itself.
        return self.encode(self.answers.get(question, " I do not know."))[:max_new_tokens]
