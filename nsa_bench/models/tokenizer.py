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


_CHUNK = 1 << 16  # characters; longer texts are encoded in chunks cut at newlines


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
        if len(text) <= _CHUNK:
            return self.tok.encode(text, add_special_tokens=False)
        # a corpus: encode line-aligned chunks in one batch (parallel in the Rust tokenizer)
        chunks, start = [], 0
        while start < len(text):
            end = text.find("\n", start + _CHUNK)
            end = len(text) if end < 0 else end + 1
            chunks.append(text[start:end])
            start = end
        return [i for ids in self.tok(chunks, add_special_tokens=False)["input_ids"] for i in ids]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.tok(texts, add_special_tokens=False)["input_ids"]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)


def load_tokenizer(spec: str) -> ByteTokenizer | HFTokenizer:
    """'byte' -> ByteTokenizer; a directory -> its Hugging Face tokenizer."""
    if spec == "byte":
        return ByteTokenizer()
    if not Path(spec).is_dir():
        raise ValueError(f"tokenizer {spec!r} is neither 'byte' nor a local tokenizer directory")
    return HFTokenizer(spec)


def train_bpe(text: str, out_dir: str | Path, vocab_size: int = 4096) -> HFTokenizer:
    """A byte-level BPE tokenizer trained on text, saved to out_dir as a Hugging Face tokenizer
    directory; returns it loaded."""
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast
    except ImportError as error:
        raise ValueError(f"a BPE tokenizer needs the tokenizers and transformers packages ({error}): "
                         "pip install -e '.[eval]'") from None

    specials = ["<bos>", "<eos>", "<pad>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    chunk = 1 << 16
    tok.train_from_iterator((text[i : i + chunk] for i in range(0, len(text), chunk)), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    out_dir = Path(out_dir)
    fast.save_pretrained(str(out_dir))
    return HFTokenizer(out_dir)
