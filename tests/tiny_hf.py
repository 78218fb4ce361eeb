"""A tiny random Hugging Face Llama with a byte-level BPE tokenizer trained offline (tests only).

write_tiny_llama(dir, bos=True) gives a Llama-style tokenizer that adds <s> to every encoding;
bos=False one that adds nothing. "abcd" is one token of the vocabulary (a continuation "d" merges
into a context ending in "abc").
"""

from __future__ import annotations

from pathlib import Path

import torch

CORPUS = [
    "the cat sat on the mat.", "a dog ran in the park!", "hello world, hello there.", "abcd abcd abcd",
    "Question: what is two plus two?\nAnswer: four", "numbers 12 345 6789 and more text here",
] * 20
SPECIALS = ["<unk>", "<s>", "</s>"]


def write_tiny_llama(path: str | Path, bos: bool = True, max_length: int = 64, seed: int = 0) -> Path:
    """Save the model and tokenizer into directory path; returns it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=360, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    raw.train_from_iterator(CORPUS, trainer)
    if bos:
        raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tokenizer.save_pretrained(path)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=max_length, bos_token_id=1, eos_token_id=2,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return path
