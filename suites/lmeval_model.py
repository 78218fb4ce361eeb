"""lm-eval's model class for any nsa-bench CausalLM: `--model nsa-bench`.

Importing this module registers the class with lm-eval under the name `nsa-bench`. lm-eval 0.4
has no plugin entry points for models, so its own `lm_eval` command cannot see the class; run

    python -m nsa_bench.suites.lmeval_model --model nsa-bench \\
        --model_args pretrained=PATH_OR_PRESET,attention=nsa --tasks gsm8k_local \\
        --metadata '{"gsm8k_dir": "/data/gsm8k"}'

which registers the class (and, as any import of nsa_bench does, the model type of exported NSA
models for `--model hf`), adds this package's local task configs (suites/lmeval_tasks) to
`--include_path` and hands every argument to lm-eval's command line. `nsa-bench lmeval` is the
short way.

Model arguments: pretrained (path or preset, see nsa_bench.models.load_lm), attention (nsa | full),
nsa_config (l/d/l_sel/n/w), device, batch_size (int, or 'auto': rows up to AUTO_BATCH_TOKENS
tokens), max_length (cap on the model's context), max_gen_toks (default 256), add_bos_token (as
lm-eval's `hf` model: unset follows the tokenizer, which for Hugging Face tokenizers means their
special tokens, e.g. Llama's <s>; our own models are trained without BOS), parallelize (true: a
Hugging Face model is spread over the GPUs with device_map="auto", as lm-eval's `hf` model does).
gsm8k_dir and mmlu_dir are accepted and ignored here (they are task metadata).

Data parallel, as lm-eval's `hf` model: launched over several processes (`accelerate launch -m
nsa_bench.suites.lmeval_model ...`, or torchrun), each process loads the model on its own device
(accelerate's), lm-eval hands rank r of world_size every world_size-th document and gathers the
metrics to rank 0, which writes the results.

Requests are handled as lm-eval's `hf` model (HFLM) handles them, so a Hugging Face checkpoint gets
lm-eval's own numbers (tests/test_lmeval_parity.py): texts are encoded with the tokenizer's special
tokens unless add_bos_token=false or the text already starts with the BOS text; trailing spaces of a
context move to the continuation, whose tokens are those the whole text has after the context's; an
empty context is replaced by the BOS token (else EOS; with neither, the first token of the
continuation is context, not scored); inputs are cut from the left to max_length. A request with no
context token (whitespace only, no BOS added) or no continuation token (it merges into the
context's last token) is refused with a ValueError, as lm-eval refuses it. Requests with the same
input tokens share one forward pass (multiple-choice answers of one question), inputs are sorted by
length and right-padded into batches (causal models: padding after a row cannot change its
logits). Generation is greedy, stops at EOS and is cut at the first stop string (the EOS text is
one).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Iterable, Sequence

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from nsa_bench.environment import resolve_device
from nsa_bench.lm import CausalLM

log = logging.getLogger(__name__)

NAME = "nsa-bench"
AUTO_BATCH_TOKENS = 16384
DATA_KEYS = ("gsm8k_dir", "mmlu_dir")


def _first_int(*candidates) -> int | None:
    """The first (owner, attribute) pair whose value is an int."""
    for owner, attr in candidates:
        value = getattr(owner, attr, None)
        if isinstance(value, int):
            return value
    return None


def bos_token(lm: CausalLM) -> int | None:
    """The model's BOS token id, if its tokenizer has one."""
    tokenizer = getattr(lm, "tokenizer", None)
    return _first_int((tokenizer, "bos_id"), (tokenizer, "bos_token_id"), (lm, "bos_token_id"))


def prefix_token(lm: CausalLM) -> int | None:
    """The token an empty context stands for: BOS if the tokenizer has one, else EOS, else None."""
    tokenizer = getattr(lm, "tokenizer", None)
    bos = bos_token(lm)
    return bos if bos is not None else _first_int((lm, "eos_id"), (lm, "eos_token_id"), (tokenizer, "eos_token_id"))


def cut_at_stop(text: str, stops: Iterable[str]) -> str:
    """text up to (not including) the earliest occurrence of any stop string."""
    cut = len(text)
    for stop in stops:
        if stop:
            at = text.find(stop)
            if at != -1:
                cut = min(cut, at)
    return text[:cut]


def _flag(value, name: str = "add_bos_token") -> bool | None:
    """A model argument as a bool (lm-eval hands 'True'/'false' through as given), None if unset."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("true", "false", "1", "0"):
        raise ValueError(f"nsa-bench model: {name} must be true or false, got {value!r}")
    return text in ("true", "1")


def _accelerator(device: str | None):
    """accelerate's Accelerator when launched over several processes (accelerate launch, torchrun; on
    the CPU when device is cpu or there is no GPU), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    cpu = resolve_device(device).type == "cpu"
    accelerator = Accelerator(cpu=cpu, kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(weeks=52))])
    return accelerator if accelerator.num_processes > 1 else None


@register_model(NAME)
class NSABenchLM(LM):
    """lm-eval LM over a CausalLM: loaded from `pretrained` with `attention`, or given as `lm`."""

    def __init__(
        self,
        pretrained: str | None = None,
        attention: str = "nsa",
        nsa_config: str | None = None,
        device: str | None = None,
        batch_size: int | str = 1,
        max_batch_size: int | None = None,
        max_length: int | None = None,
        max_gen_toks: int = 256,
        lm: CausalLM | None = None,
        progress: bool = True,
        add_bos_token: bool | str | None = None,
        parallelize: bool | str = False,
        **data_dirs,
    ):
        super().__init__()
        add_bos = _flag(add_bos_token)
        self.accelerator = _accelerator(device)
        if self.accelerator is not None:  # lm-eval shards the documents by rank
            self._rank, self._world_size = self.accelerator.process_index, self.accelerator.num_processes
            device = str(self.accelerator.device)
        unknown = set(data_dirs) - set(DATA_KEYS)
        if unknown:
            raise ValueError(f"nsa-bench model: unknown argument(s) {', '.join(sorted(unknown))}")
        if lm is None:
            if not pretrained:
                raise ValueError("nsa-bench model: give pretrained=PATH_OR_PRESET")
            from nsa_bench.models import load_lm

            lm = load_lm(pretrained, attention=attention, device=resolve_device(device), nsa_config=nsa_config,
                         add_bos_token=add_bos, device_map="auto" if _flag(parallelize, "parallelize") else None)
        self.lm = lm
        self.add_special = add_bos if add_bos is not None else bool(getattr(lm, "adds_special_tokens", False))
        self._max_length = int(max_length) if max_length else lm.max_length
        self.max_gen_toks = int(max_gen_toks)
        self.prefix = prefix_token(lm)
        self.prefix_text = self._token_text(self.prefix)  # texts starting with it get no special tokens
        self.bos_text = self._token_text(bos_token(lm))  # the same for generation prompts
        self.progress = progress
        auto = str(batch_size).startswith("auto")
        self.batch_rows = int(max_batch_size or 64) if auto else max(1, int(batch_size))
        self.batch_tokens = AUTO_BATCH_TOKENS if auto else None

    @property
    def max_length(self) -> int:
        return self._max_length

    # ---- the collectives lm-eval's evaluator calls when world_size > 1 (as its `hf` model) ---------

    def all_gather(self, tensor):
        return tensor if self.accelerator is None else self.accelerator.gather(tensor)

    def gather_object(self, obj, dst=0):
        if self.accelerator is None:
            return [obj]
        result = [None] * self.world_size if self.rank == dst else None
        torch.distributed.gather_object(obj=obj, object_gather_list=result, dst=dst)
        return result

    def barrier(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    @property
    def device(self):
        return self.lm.device

    @property
    def tokenizer_name(self) -> str:
        return f"{NAME}:{self.lm.name}"

    # ---- tokenization (as lm-eval's HFLM) ---------------------------------------------------------

    def _token_text(self, token_id: int | None) -> str | None:
        text = getattr(self.lm, "token_text", None)
        return text(token_id) if text is not None and token_id is not None else None

    def tok_encode(self, text: str, special: bool | None = None) -> list[int]:
        """Token ids of text, with the tokenizer's special tokens (BOS) when `special`, which by
        default is the add_bos_token setting, but false for a text that already starts with BOS."""
        if special is None:
            special = self.add_special and not (self.prefix_text and text.startswith(self.prefix_text))
        return self.lm.encode(text, add_special_tokens=True) if special else self.lm.encode(text)

    # ---- loglikelihood ---------------------------------------------------------------------------

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context ids, continuation ids) as lm-eval splits them; ValueError for a pair it refuses."""
        if not context:
            cont = self.tok_encode(continuation, special=False)
            if self.prefix is not None and cont[:1] != [self.prefix]:
                ctx = [self.prefix]
            else:
                ctx, cont = cont[:1], cont[1:]
        else:
            ctx = self.tok_encode(context.rstrip())  # trailing spaces belong to the continuation
            cont = self.tok_encode(context + continuation)[len(ctx):]
        if not ctx:
            raise ValueError(f"context {context!r} has no token (whitespace only, and the tokenizer adds no BOS); "
                             "lm-eval refuses it too")
        if not cont:
            raise ValueError(f"continuation {continuation!r} adds no token after context {context[-40:]!r} "
                             "(it merges into the context's last token); lm-eval refuses it too")
        return ctx, cont

    def score_tokens(self, pairs: Sequence[tuple[list[int], list[int]]], desc: str = "") -> list[tuple[float, bool]]:
        """(sum log p(continuation | context), whether greedy decoding gives the continuation) per pair.

        Inputs are (context + continuation)[:-1], cut from the left to max_length; identical inputs
        are computed once; batches of similar length, right-padded. Both parts must be non-empty."""
        inputs: dict[tuple[int, ...], int] = {}
        plan = []  # (input index, continuation)
        for context, continuation in pairs:
            if not context or not continuation:
                raise ValueError("a scored pair needs at least one context and one continuation token")
            if len(continuation) > self.max_length:
                raise ValueError(f"a continuation of {len(continuation)} tokens exceeds max_length {self.max_length}")
            row = tuple((list(context) + list(continuation))[-(self.max_length + 1):][:-1])
            plan.append((inputs.setdefault(row, len(inputs)), list(continuation)))
        rows = list(inputs)
        logprobs: list[torch.Tensor | None] = [None] * len(rows)  # per input: log-softmax of its last positions
        needed = [0] * len(rows)
        for index, continuation in plan:
            needed[index] = max(needed[index], len(continuation))
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        with tqdm(total=len(order), desc=desc or "loglikelihood", disable=not self.progress) as bar:
            for batch in self._batches(order, rows):
                width = len(rows[batch[0]])
                ids = torch.tensor([list(rows[i]) + [rows[i][-1]] * (width - len(rows[i])) for i in batch])
                logits = self.lm.logits(ids.to(self.lm.device))
                for j, i in enumerate(batch):
                    n = len(rows[i])
                    logprobs[i] = logits[j, n - needed[i] : n].float().log_softmax(-1).cpu()
                bar.update(len(batch))
        results = []
        for index, continuation in plan:
            lp = logprobs[index][-len(continuation):]
            target = torch.tensor(continuation)
            total = float(lp.gather(-1, target[:, None]).sum())
            results.append((total, bool((lp.argmax(-1) == target).all())))
        return results

    def _batches(self, order: list[int], rows: list[tuple[int, ...]]):
        batch: list[int] = []
        for i in order:  # longest first: the first row of a batch sets its width
            width = len(rows[batch[0]]) if batch else len(rows[i])
            full = len(batch) >= self.batch_rows or (
                self.batch_tokens is not None and (len(batch) + 1) * width > self.batch_tokens
            )
            if batch and full:
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [self._encode_pair(*req.args) for req in requests]
        results = self.score_tokens(pairs, desc="loglikelihood")
        for req, result in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", req.args, result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        pairs, owner = [], []
        for n, req in enumerate(requests):
            tokens = self.tok_encode(req.args[0])
            prefix = self.prefix
            if prefix is None and tokens:
                prefix, tokens = tokens[0], tokens[1:]
            for window in get_rolling_token_windows(tokens, prefix, self.max_length, context_len=1):
                pairs.append(make_disjoint_window(window))
                owner.append(n)
        totals = [0.0] * len(requests)
        for n, (logprob, _) in zip(owner, self.score_tokens(pairs, desc="loglikelihood_rolling")):
            totals[n] += logprob
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    # ---- generation ------------------------------------------------------------------------------

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from lm_eval.models.utils import normalize_gen_kwargs

        eos_text = self._token_text(getattr(self.lm, "eos_id", None))
        outputs = []
        for req in tqdm(requests, desc="generate_until", disable=not self.progress):
            context, kwargs = req.args
            kwargs = normalize_gen_kwargs(dict(kwargs or {}), self.max_gen_toks)
            if kwargs.get("do_sample") and float(kwargs.get("temperature") or 0.0) > 0:
                raise ValueError("nsa-bench model decodes greedily only (do_sample=true was asked for)")
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            if eos_text and eos_text not in until:
                until.append(eos_text)
            max_new = int(kwargs["max_gen_toks"])
            if max_new >= self.max_length:
                raise ValueError(f"max_gen_toks {max_new} leaves no room for a prompt within max_length {self.max_length}")
            ids = self._generation_prompt(context)[-(self.max_length - max_new):]
            text = cut_at_stop(self.lm.decode(self.lm.generate(ids, max_new, stop=until)), until)
            self.cache_hook.add_partial("generate_until", req.args, text)
            outputs.append(text)
        return outputs

    def _generation_prompt(self, context: str) -> list[int]:
        """The prompt's ids as lm-eval encodes generation prompts: special tokens unless the text
        starts with the BOS token's text (or add_bos_token=false)."""
        starts_with_bos = bool(self.bos_text) and context.startswith(self.bos_text)
        return self.tok_encode(context, special=self.add_special and not starts_with_bos)


def main(argv: Sequence[str] | None = None) -> None:
    """lm-eval's command line with the nsa-bench model registered and our task configs included."""
    import sys

    from lm_eval.__main__ import cli_evaluate

    from .lmeval_data import TASKS_DIR

    args = list(sys.argv[1:] if argv is None else argv)
    if "--include_path" in args:
        at = args.index("--include_path") + 1
        log.warning("--include_path %s replaces this package's task configs %s", args[at] if at < len(args) else "", TASKS_DIR)
    elif args and args[0] not in ("-h", "--help"):
        args += ["--include_path", str(TASKS_DIR)]
    sys.argv = ["lm_eval", *args]
    cli_evaluate()


if __name__ == "__main__":
    main()
