"""The language-model interface the quality suites evaluate (ours or Hugging Face models)."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch


@runtime_checkable
class CausalLM(Protocol):
    """A causal language model with its tokenizer, as the suites see it.

    name        label for result rows (path or preset)
    attention   'nsa' or 'full'
    max_length  the longest context the model takes (prompts are truncated to fit)
    device      where logits are computed

    Optional, for tokenizing as lm-eval does (suites/lmeval_model.py): `adds_special_tokens` (whether
    the tokenizer's default encoding adds special tokens such as BOS), `encode(text,
    add_special_tokens=True)` and `token_text(token_id)` (a special token's text, e.g. '<s>').
    """

    name: str
    attention: str
    max_length: int
    device: torch.device

    def encode(self, text: str) -> list[int]:
        """Token ids of text (no special tokens added)."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids."""
        ...

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits [B, T, V] (float32) for a batch of equal-length id rows [B, T]."""
        ...

    def generate(self, ids: Sequence[int], max_new_tokens: int, stop: Sequence[str] = ()) -> list[int]:
        """Greedy continuation of ids: new token ids only, ending early at a stop string."""
        ...
