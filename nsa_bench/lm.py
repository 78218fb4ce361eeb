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
