"""Tokenizers: a built-in byte-level one (no files), or a local Hugging Face tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255, then the specials <bos>=256, <eos>=257, <pad>=258."""

    bos_id = 256
    eos_id = 257
    pad_id = 258
    vocab_size = 259
    name = "byte"

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")


class HFTokenizer:
    """A Hugging Face tokenizer loaded from a local directory (no downloads)."""

    def __init__(self, path: str | Path):
        from transformers import AutoTokenizer

        self.name = str(path)
        self.tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.bos_id = self.tok.bos_token_id
        self.eos_id = self.tok.eos_token_id
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.eos_id
        self.vocab_size = len(self.tok)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)


def load_tokenizer(spec: str) -> ByteTokenizer | HFTokenizer:
    """'byte' -> ByteTokenizer; a directory -> its Hugging Face tokenizer."""
    if spec == "byte":
        return ByteTokenizer()
    if not Path(spec).is_dir():
        raise ValueError(f"tokenizer {spec!r} is neither 'byte' nor a local tokenizer directory")
    return HFTokenizer(spec)
