"""Needle in a haystack: retrieval of a planted value over a grid of context lengths and needle depths.

For each (context length, depth, trial) the prompt is

    INTRO + haystack[:p] + needle + haystack[p:] + question

built in the model's own tokens (the defaults follow the pass-key examples `nsa-bench train` mixes
into training; a custom needle or question is set off by newlines unless it starts or ends with
whitespace itself). `ctx_len` counts the prompt plus the tokens reserved for the answer, so a cell
of length L fits a model whose max_length is L exactly. The needle goes in at the sentence boundary
at or before depth * (haystack tokens). The model answers greedily and the answer is scored against
the needle's value:

    exact_match   1 if the answer (leading whitespace and quotes dropped) starts with the value and
                  the value is not followed by another letter or digit, else 0
    prefix_match  the length of the longest common prefix of the answer and the value, over the
                  value's length (partial credit: 0.6 for 3 of 5 digits right from the start)

Trial t uses seed + t for the value (and for the generated haystack), so both attentions and every
cell see the same values. One CSV row per cell and metric, written as produced; cells already in
the CSV are skipped (resume).
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from nsa_bench.errors import UsageError
from nsa_bench.flops import parse_size
from nsa_bench.lm import CausalLM
from nsa_bench.paired import nsa_minus_full, run_rows, scored_fields, write_new
from nsa_bench.results import status_of

from .haystack import TokenHaystack, cycled, generated_sentences, insertion_point, read_text_dir, split_sentences
from .needle_tasks import TASKS as FAMILY_TASKS
from .needle_tasks import build_family_prompt, make_instance, match_all

INTRO = "A pass key is hidden in this text. Find it and remember it.\n"
DEFAULT_NEEDLE = "\nThe pass key is {value}. Remember it. {value} is the pass key.\n"
DEFAULT_QUESTION = "\nWhat is the pass key? The pass key is "
METRICS = ("exact_match", "prefix_match")
FAMILY_METRICS = ("exact_match", "match_all")  # every reference found (0/1); the share found (RULER's score)


def ctx_ladder(ctx: int) -> list[int]:
    """The default lengths up to ctx: ctx/16, ctx/8, ctx/4, ctx/2, ctx (those of at least 256 tokens)."""
    return [ctx >> i for i in range(4, -1, -1) if ctx >> i >= 256] or [ctx]


def parse_ctx(spec: str) -> list[int]:
    """'64k' -> the ladder up to 64k; '8k,16k,32k' -> exactly those lengths (sorted, unique)."""
    parts = [p for p in spec.split(",") if p.strip()]
    if not parts:
        raise UsageError("--ctx is empty")
    try:
        sizes = [parse_size(p) for p in parts]
    except ValueError as error:
        raise UsageError(f"bad context length: {error}") from None
    return ctx_ladder(sizes[0]) if len(parts) == 1 else sorted(set(sizes))


def parse_tasks(spec: str) -> list[str | None]:
    """'passkey' -> [None]; 'family' -> every needle-family task; else a comma list of tasks."""
    names = [p.strip() for p in spec.split(",") if p.strip()]
    if names == ["family"]:
        return list(FAMILY_TASKS)
    unknown = [n for n in names if n != "passkey" and n not in FAMILY_TASKS]
    if not names or unknown:
        raise UsageError(f"unknown needle task {', '.join(unknown) or spec!r}; tasks: passkey, family, {', '.join(FAMILY_TASKS)}")
    return [None if n == "passkey" else n for n in names]


def parse_depths(spec: str) -> list[float]:
    """'11' -> 11 depths evenly from 0 to 1; '0,0.5,1' or '0%,50%,100%' -> those depths."""
    spec = spec.strip()
    if re.fullmatch(r"\d+", spec):
        count = int(spec)
        if count < 1:
            raise UsageError("--depths must be a positive count or a list of depths")
        return [0.5] if count == 1 else [round(i / (count - 1), 4) for i in range(count)]
    depths = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        try:
            value = float(part[:-1]) / 100 if part.endswith("%") else float(part)
        except ValueError:
            raise UsageError(f"bad depth {part!r} (use fractions 0..1 or percentages like 50%)") from None
        if not 0.0 <= value <= 1.0:
            raise UsageError(f"depth {part!r} is outside 0..1 (0%..100%)")
        depths.append(round(value, 4))
    if not depths:
        raise UsageError("--depths is empty")
    return sorted(set(depths))


def passkey(seed: int, digits: int = 5) -> str:
    """The needle's value for one trial seed: a number of `digits` digits, no leading zero."""
    rng = random.Random(f"passkey-{seed}")
    return str(rng.randint(10 ** (digits - 1), 10**digits - 1))


def _normalize(text: str) -> str:
    return " ".join(text.strip().lstrip("\"'`").split())


def exact_match(answer: str, value: str) -> float:
    """1.0 if the answer starts with the value and the value ends there (not '123456' for '12345')."""
    answer, value = _normalize(answer), _normalize(value)
    if not value or not answer.startswith(value):
        return 0.0
    rest = answer[len(value):]
    return 0.0 if rest[:1].isalnum() else 1.0


def prefix_match(answer: str, value: str) -> float:
    """Longest common prefix of answer and value, as a fraction of the value's length."""
    answer, value = _normalize(answer), _normalize(value)
    if not value:
        return 0.0
    n = 0
    for a, b in zip(answer, value):
        if a != b:
            break
        n += 1
    return n / len(value)


def _set_off(text: str, end: bool = True) -> str:
    """text with a newline before it (and after it if end) unless it has whitespace there already."""
    text = text if text[:1].isspace() else "\n" + text
    return text if not end or text[-1:].isspace() else text + "\n"


@dataclass
class NeedlePrompt:
    """One prompt: token ids, where the needle starts (token index) and its depth in the haystack."""

    ids: list[int]
    needle_start: int
    needle_depth: float


def build_prompt(
    encode: Callable[[str], list[int]],
    haystack: TokenHaystack,
    prompt_tokens: int,
    depth: float,
    needle: str,
    question: str,
) -> NeedlePrompt:
    """A prompt of exactly prompt_tokens tokens with the needle at `depth` of the haystack."""
    intro, needle_ids, question_ids = encode(INTRO), encode(_set_off(needle)), encode(_set_off(question, end=False))
    budget = prompt_tokens - len(intro) - len(needle_ids) - len(question_ids)
    if budget < 0:
        raise ValueError(
            f"a {prompt_tokens}-token prompt cannot hold the intro, needle and question "
            f"({prompt_tokens - budget} tokens)"
        )
    tokens, starts = haystack.take(budget)
    at = insertion_point(starts, budget, depth)
    ids = intro + tokens[:at] + needle_ids + tokens[at:] + question_ids
    return NeedlePrompt(ids=ids, needle_start=len(intro) + at, needle_depth=at / budget if budget else 0.0)


@dataclass
class NeedleGrid:
    """What to run: lengths x depths x trials, the needle, the question and the haystack source."""

    ctx_lens: list[int]
    depths: list[float]
    trials: int = 3
    seed: int = 0
    needle: str = DEFAULT_NEEDLE
    question: str = DEFAULT_QUESTION
    haystack_dir: str | None = None
    digits: int = 5
    extrapolate: bool = False
    family: str | None = None  # a needle-family task (needle_tasks.TASKS) instead of the pass key
    _file_sentences: list[str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if "{value}" not in self.needle:
            raise UsageError("--needle must contain the placeholder {value}")
        if self.trials < 1:
            raise UsageError("--trials must be at least 1")
        if not 1 <= self.digits <= 32:
            raise UsageError("--digits must be between 1 and 32")
        if not self.ctx_lens or not self.depths:
            raise UsageError("the grid is empty (no context lengths or no depths)")
        if self.family is not None and self.family not in FAMILY_TASKS:
            raise UsageError(f"unknown needle task {self.family!r}; tasks: passkey, {', '.join(FAMILY_TASKS)}")
        if self.haystack_dir is not None:
            self._file_sentences = split_sentences(read_text_dir(self.haystack_dir))

    @property
    def metrics(self) -> tuple[str, ...]:
        return FAMILY_METRICS if self.family else METRICS

    @property
    def task(self) -> str:
        if self.family:
            return self.family
        return "passkey" if (self.needle, self.question) == (DEFAULT_NEEDLE, DEFAULT_QUESTION) else "needle"

    @property
    def haystack_name(self) -> str:
        return str(self.haystack_dir) if self.haystack_dir is not None else "generated"

    def config(self) -> dict:
        """The columns that identify this grid's rows (resume only skips rows of the same grid)."""
        return {
            "needle": self.needle,
            "question": self.question,
            "haystack": self.haystack_name,
            "seed": self.seed,
            "trials": self.trials,
            "digits": self.digits,
        }

    def value(self, trial: int) -> str:
        return passkey(self.seed + trial, self.digits)

    def haystacks(self, encode: Callable[[str], list[int]]) -> list[TokenHaystack]:
        """One haystack per trial: generated from seed + trial, or the files' sentences (shared)."""
        if self._file_sentences is not None:
            shared = TokenHaystack(cycled(self._file_sentences), encode)
            return [shared] * self.trials
        return [TokenHaystack(generated_sentences(self.seed + t), encode) for t in range(self.trials)]


def _stderr(scores: Sequence[float]) -> float:
    n = len(scores)
    if n < 2:
        return float("nan")
    mean = sum(scores) / n
    return math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1) / n)


def run_cell(
    lm: CausalLM, grid: NeedleGrid, haystacks: list[TokenHaystack], ctx_len: int, depth: float, max_length: int
) -> dict:
    """Run all trials of one cell; returns status, per-trial answers and scores, prompt facts.

    max_length is the model's own limit: longer cells are unsupported unless grid.extrapolate."""
    if ctx_len > max_length and not grid.extrapolate:
        return {"status": f"unsupported: context {ctx_len} > model max_length {max_length} (see --extrapolate)"}
    if grid.family:
        return _run_family_cell(lm, grid, haystacks, ctx_len, depth)
    answers, values, exact, prefix, depths, lengths = [], [], [], [], [], []
    for trial in range(grid.trials):
        value = grid.value(trial)
        reserve = len(lm.encode(" " + value + ".")) + 2  # tokens left for the answer
        needle = grid.needle.replace("{value}", value)
        try:
            prompt = build_prompt(lm.encode, haystacks[trial], ctx_len - reserve, depth, needle, grid.question)
        except ValueError as error:
            return {"status": f"unsupported: {error}"}
        new_ids = lm.generate(prompt.ids, max_new_tokens=reserve, stop=("\n",))
        answer = lm.decode(new_ids)
        answers.append(answer)
        values.append(value)
        exact.append(exact_match(answer, value))
        prefix.append(prefix_match(answer, value))
        depths.append(prompt.needle_depth)
        lengths.append(len(prompt.ids))
    return {
        "status": "ok",
        "answers": answers,
        "values": values,
        "exact_match": exact,
        "prefix_match": prefix,
        "needle_depth": sum(depths) / len(depths),
        "prompt_tokens": max(lengths),
    }


def _run_family_cell(lm: CausalLM, grid: NeedleGrid, haystacks: list[TokenHaystack], ctx_len: int, depth: float) -> dict:
    """run_cell for a needle-family task: trial t's instance comes from seed + t (the same in every cell)."""
    answers, values, exact, share, depths, lengths = [], [], [], [], [], []
    for trial in range(grid.trials):
        inst = make_instance(grid.family, random.Random(f"needle-{grid.family}-{grid.seed + trial}"))
        reserve = len(lm.encode(inst.answer)) + 4  # tokens left for the answer
        place = random.Random(f"needle-place-{grid.seed + trial}-{ctx_len}-{depth}")
        try:
            ids, at = build_family_prompt(lm.encode, haystacks[trial], ctx_len - reserve, depth, inst, place)
        except ValueError as error:
            return {"status": f"unsupported: {error}"}
        answer = lm.decode(lm.generate(ids, max_new_tokens=reserve, stop=("\n",)))
        answers.append(answer)
        values.append(inst.answer.strip())
        share.append(match_all(answer, inst.references))
        exact.append(float(share[-1] == 1.0))
        depths.append(at)
        lengths.append(len(ids))
    return {"status": "ok", "answers": answers, "values": values, "exact_match": exact, "match_all": share,
            "needle_depth": sum(depths) / len(depths), "prompt_tokens": max(lengths)}


def cell_rows(
    model: str, attention: str, max_length: int, grid: NeedleGrid, ctx_len: int, depth: float, cell: dict
) -> list[dict]:
    """The CSV rows (one per metric) of one finished cell, with per-trial scores (`example_scores`,
    keyed `<trial>:<value>`) and their 95% interval."""
    rows = []
    for metric in grid.metrics:
        scores = cell.get(metric)
        trials = {f"{t}:{v}": s for t, (v, s) in enumerate(zip(cell.get("values", []), scores or []))}
        rows.append(
            {
                "kind": "quality",
                "suite": "needle",
                "task": grid.task,
                "attention": attention,
                "model": model,
                "metric": metric,
                "score": sum(scores) / len(scores) if scores else float("nan"),
                "n": len(scores) if scores else 0,
                "stderr": _stderr(scores) if scores else float("nan"),
                "ctx_len": ctx_len,
                "depth": depth,
                "status": cell["status"],
                "needle_depth": cell.get("needle_depth", float("nan")),
                "prompt_tokens": cell.get("prompt_tokens", float("nan")),
                "max_length": max_length,
                "extrapolated": ctx_len > max_length,
                "values": json.dumps(cell.get("values", [])),
                "answers": json.dumps(cell.get("answers", [])),
                **scored_fields(trials),
                **grid.config(),
            }
        )
    return rows


def run_needle(
    models: dict[str, str],
    load: Callable[[str, str], CausalLM],
    grid: NeedleGrid,
    out: str | Path,
    report_dir: str | Path | None = "reports",
    progress: bool = True,
) -> list[Path]:
    """Run the grid for each attention in `models` (attention -> model path or preset); returns the heatmaps.

    `load(model, attention)` gives the CausalLM (one at a time, freed before the next). Rows go to
    the CSV at `out` as cells finish; cells already there (same model, attention, grid) are skipped.
    Under torchrun the ranks take the cells in turn and rank 0 writes every rank's rows, in the order
    of a one-process run.
    """
    import gc

    from nsa_bench import distributed

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from nsa_bench.results import ResultWriter

    main = distributed.current_ranks().main
    writer = ResultWriter(out) if main else None
    cells = [(c, d) for c in grid.ctx_lens for d in grid.depths]
    keys = run_keys(models, grid)
    todo = {a: [c for c in cells if not writer.done({**keys[a], "ctx_len": c[0], "depth": c[1]})] for a in models} \
        if main else None
    todo = distributed.broadcast_object(todo)  # rank 0's reading of the CSV
    progress = progress and main
    columns = (TextColumn("[bold]needle[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress or not any(todo.values())) as bar:
        skipped = len(cells) * len(models) - sum(len(v) for v in todo.values())
        if skipped:
            bar.console.print(f"skipping {skipped} cells already in {out} (same model, attention and grid); "
                              "a new --out or deleting those rows reruns them", highlight=False, soft_wrap=True)
        job = bar.add_task("", total=sum(len(v) for v in todo.values()))
        for attention, model in models.items():
            if not todo[attention]:
                continue
            lm = load(model, attention)
            max_length = lm.max_length
            if grid.extrapolate:  # let the model take the longest cell (CausalLM truncates to max_length)
                lm.max_length = max(max_length, *grid.ctx_lens)
            haystacks = grid.haystacks(lm.encode)

            def rows_of(ctx_depth: tuple[int, float]) -> list[dict]:
                try:
                    cell = run_cell(lm, grid, haystacks, *ctx_depth, max_length)
                except (RuntimeError, MemoryError) as error:
                    cell = {"status": status_of(error)}
                    _free_cuda()
                return cell_rows(model, attention, max_length, grid, *ctx_depth, cell)

            for (ctx_len, depth), rows in distributed.map_in_rounds(todo[attention], rows_of):
                for row in rows if writer else ():
                    writer.write(row)
                bar.update(job, advance=1, description=f"{attention} ctx={ctx_len} depth={depth:.0%}")
                if progress and not bar.console.is_terminal:  # a log gets a line per cell, not a live bar
                    task, first = bar.tasks[0], rows[0]
                    outcome = f"{first['metric'].replace('_', ' ')} {first['score']:.2f}" if first["n"] else first["status"].split(":")[0]
                    bar.console.print(f"needle {attention} ctx={ctx_len} depth={depth:.0%}: {outcome} "
                                      f"({int(task.completed)}/{task.total:.0f}, {task.elapsed or 0:.0f} s)",
                                      highlight=False, soft_wrap=True)
            del lm, haystacks
            gc.collect()
            _free_cuda()
    if not main:
        return []
    if {"nsa", "full"} <= models.keys():
        write_paired_rows(writer, grid, models)
    if report_dir is None:
        return []
    stem = Path(out).stem if grid.family is None else f"{Path(out).stem}_{grid.family}"
    return plot_heatmaps(out, models, grid.task, report_dir, stem=stem)


def write_paired_rows(writer, grid: NeedleGrid, models: dict[str, str]) -> list[dict]:
    """NSA-minus-full rows of the grid's cells in the writer's CSV (pairs: task, ctx_len, depth and
    trial, whose values are seeded per trial), and per ctx_len one over all depths and trials (`depth`
    empty, `pooled_over = depth`). Rows already in the CSV are not written again."""
    config = grid.config()
    mine = run_rows(writer.rows, models, {"suite": "needle", "task": grid.task, **config})
    keys = ("suite", "task", "metric", "ctx_len", "depth", *config)
    rows = nsa_minus_full(mine, keys) + nsa_minus_full(mine, keys, pool_over="depth")
    return write_new(writer, rows, keys)


def run_keys(models: dict[str, str], grid: NeedleGrid) -> dict[str, dict]:
    """attention -> the columns that identify its exact-match rows of this grid (for resuming, summaries)."""
    return {a: {"suite": "needle", "task": grid.task, "model": m, "attention": a, "metric": METRICS[0],
                **grid.config()} for a, m in models.items()}


def _free_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def heatmap_table(rows: list[dict], model: str, task: str, attention: str, metric: str = "exact_match"):
    """depth x ctx_len table (pandas) of the mean score (NaN where a cell did not run), or None if no rows."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    if frame.empty or "suite" not in frame:
        return None
    sel = frame[
        (frame["suite"] == "needle") & (frame["model"].astype(str) == str(model)) & (frame["task"] == task)
        & (frame["attention"] == attention) & (frame["metric"] == metric)
    ].copy()
    if sel.empty:
        return None
    sel.loc[sel["status"] != "ok", "score"] = float("nan")
    return sel.pivot_table(index="depth", columns="ctx_len", values="score", aggfunc="mean", dropna=False).sort_index()


def plot_heatmaps(
    csv: str | Path, models: dict[str, str], task: str, report_dir: str | Path, stem: str = "needle"
) -> list[Path]:
    """PNGs of exact match (depth x length) per attention (`<stem>_<attention>.png`) and, when both
    attentions have rows, NSA minus full (`<stem>_diff.png`); `models` maps attention -> model."""
    from nsa_bench.plots import heatmap_figure, save
    from nsa_bench.results import read_rows

    rows = read_rows(csv) if Path(csv).exists() else []
    report_dir = Path(report_dir)
    tables, paths = {}, []
    for attention, model in models.items():
        table = heatmap_table(rows, model, task, attention)
        if table is None:
            continue
        tables[attention] = table
        title = f"{task}: exact match, {attention} attention, {model}"
        paths.append(save(heatmap_figure([(title, table, "viridis", 0.0)]), report_dir / f"{stem}_{attention}.png"))
    if {"nsa", "full"} <= tables.keys():
        diff = tables["nsa"].sub(tables["full"])
        title = f"{task}: exact match, NSA − full (nsa: {models['nsa']}, full: {models['full']})"
        paths.append(save(heatmap_figure([(title, diff, "RdBu", -1.0)]), report_dir / f"{stem}_diff.png"))
    return paths
