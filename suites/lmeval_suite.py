"""`nsa-bench lmeval`: GSM8K and MMLU from local folders through lm-eval, one CSV row per task and metric.

Task names: `gsm8k`, `mmlu` (every subject in the MMLU folder, plus an `mmlu` row: accuracy over all
questions, i.e. subjects weighted by size as lm-eval's mmlu group), `mmlu_<subject>`. Each task runs
as its own lm-eval evaluation, so rows are written as tasks finish and a rerun skips tasks already
in the CSV for the same model, attention, limit and few-shot count.
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Callable, Sequence

from nsa_bench.errors import UsageError
from nsa_bench.lm import CausalLM
from nsa_bench.paired import example_scores, interval_fields, nsa_minus_full, run_rows, scored_fields, write_new
from nsa_bench.results import status_of

from .lmeval_data import TASKS_DIR, DataError, mmlu_subjects, read_gsm8k, read_mmlu


def require_lm_eval() -> None:
    """UsageError unless lm-eval is installed."""
    import importlib.util

    if importlib.util.find_spec("lm_eval") is None:
        raise UsageError("lm-eval is not installed: pip install 'lm-eval>=0.4.13' (in the eval and dev extras)")


def resolve_tasks(names: Sequence[str], gsm8k_dir: str | None, mmlu_dir: str | None) -> list[tuple[str, str | None]]:
    """(row task, lm-eval task) pairs for `gsm8k`, `mmlu`, `mmlu_<subject>`; checks the data up front.

    `mmlu` gives its subjects, then ('mmlu', None): the overall row computed from theirs."""
    pairs: list[tuple[str, str | None]] = []
    try:
        for name in names:
            if name == "gsm8k":
                if not gsm8k_dir:
                    raise UsageError("task gsm8k needs --gsm8k-dir (a folder with train.jsonl and test.jsonl)")
                read_gsm8k(gsm8k_dir)
                pairs.append(("gsm8k", "gsm8k_local"))
            elif name == "mmlu" or name.startswith("mmlu_"):
                if not mmlu_dir:
                    raise UsageError(f"task {name} needs --mmlu-dir (Hendrycks CSVs: dev/, test/)")
                available = mmlu_subjects(mmlu_dir)
                subjects = available if name == "mmlu" else [name[len("mmlu_"):]]
                for subject in subjects:
                    if subject not in available:
                        raise UsageError(f"task {name}: no {subject}_dev.csv and {subject}_test.csv in {mmlu_dir}")
                    read_mmlu(mmlu_dir, subject)
                    pairs.append((f"mmlu_{subject}", f"mmlu_local_{subject}"))
                if name == "mmlu":
                    pairs.append(("mmlu", None))
            else:
                raise UsageError(f"unknown task {name!r} (known: gsm8k, mmlu, mmlu_<subject>)")
    except DataError as error:
        raise UsageError(str(error)) from None
    if not pairs:
        raise UsageError("no tasks given (--tasks gsm8k,mmlu)")
    return list(dict.fromkeys(pairs))


PAIR_KEYS = ("suite", "task", "metric", "data_dir", "limit", "num_fewshot")  # with doc_id: what pairs NSA and full


def sample_scores(results: dict, lm_task: str) -> dict[tuple[str, str], dict[str, float]]:
    """Per-document scores of one task from lm-eval's logged samples: (metric, filter) -> {doc_id: score}."""
    found: dict[tuple[str, str], dict[str, float]] = {}
    for sample in results.get("samples", {}).get(lm_task, []):
        for metric in sample.get("metrics", []):
            value = sample.get(metric)
            if isinstance(value, (int, float)):
                found.setdefault((metric, sample.get("filter", "none")), {})[str(sample["doc_id"])] = float(value)
    return found


def result_rows(results: dict, lm_task: str) -> list[dict]:
    """metric, score, stderr, n, fewshot (the count used) for each metric (and filter) of one task, with
    the per-document scores (`example_scores`, by doc_id) and their 95% interval where lm-eval logged them."""
    scores = results["results"][lm_task]
    per_doc = sample_scores(results, lm_task)
    n = results["n-samples"][lm_task]["effective"]
    fewshot = results["configs"][lm_task].get("num_fewshot")
    rows = []
    for key, value in scores.items():
        if "," not in key or "_stderr," in key:
            continue
        metric, filt = key.split(",", 1)
        stderr = scores.get(f"{metric}_stderr,{filt}")
        rows.append({
            "metric": metric if filt == "none" else f"{metric}:{filt}",
            "score": float(value),
            "stderr": float(stderr) if isinstance(stderr, (int, float)) else float("nan"),
            "n": n,
            "fewshot": fewshot,
            **(scored_fields(per_doc[(metric, filt)]) if (metric, filt) in per_doc else {}),
        })
    return rows


def mmlu_overall(rows: Sequence[dict]) -> dict:
    """Accuracy over all questions of the subject rows, and its stderr from the subjects' stderrs; the
    questions' scores (ids `<task>/<doc_id>`) and interval when every subject row has them."""
    total = sum(r["n"] for r in rows)
    per_subject = [(r.get("task"), example_scores(r)) for r in rows]
    questions = {f"{task}/{i}": v for task, found in per_subject if found is not None for i, v in found.items()}
    complete = all(found is not None for _, found in per_subject)
    score = sum(r["score"] * r["n"] for r in rows) / total
    variance = sum((r["n"] / total) ** 2 * r["stderr"] ** 2 for r in rows)  # NaN if a subject has none
    fewshot = {r.get("fewshot") for r in rows}
    return {"metric": "acc", "score": score, "stderr": math.sqrt(variance), "n": total, "subjects": len(rows),
            "fewshot": fewshot.pop() if len(fewshot) == 1 else float("nan"),
            **(scored_fields(questions) if complete else interval_fields([]))}


@contextlib.contextmanager
def _without_environment_report():
    """simple_evaluate collects a pip/torch environment report (~1.5 s, a `git describe` that may print
    to stderr) on every call; our rows carry run metadata already, so skip it for our many calls."""
    import lm_eval.evaluator as evaluator

    names = ("add_env_info", "get_git_commit_hash")
    saved = {name: getattr(evaluator, name) for name in names if hasattr(evaluator, name)}
    for name in saved:
        setattr(evaluator, name, lambda *args, **kwargs: None)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(evaluator, name, function)


def _free_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_lmeval(
    models: dict[str, str],
    load: Callable[[str, str], CausalLM],
    tasks: Sequence[tuple[str, str | None]],
    out: str | Path,
    gsm8k_dir: str | None = None,
    mmlu_dir: str | None = None,
    limit: int | None = None,
    num_fewshot: int | None = None,
    batch_size: int | str = 8,
    max_gen_toks: int | None = None,
    progress: bool = True,
) -> list[dict]:
    """Evaluate each attention's model on the tasks (from resolve_tasks); returns the rows written to `out`."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from nsa_bench.results import ResultWriter

    from .lmeval_model import NSABenchLM

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    manager = TaskManager(
        include_path=str(TASKS_DIR), include_defaults=False,
        metadata={"gsm8k_dir": str(gsm8k_dir or ""), "mmlu_dir": str(mmlu_dir or "")},
    )
    writer = ResultWriter(out)
    setting = {"limit": "all" if limit is None else limit,
               "num_fewshot": "default" if num_fewshot is None else num_fewshot}
    written: list[dict] = []

    def data_dir(task: str) -> str:
        return str(gsm8k_dir if task == "gsm8k" else mmlu_dir)

    def key(model: str, attention: str, task: str) -> dict:
        return {"suite": "lmeval", "model": model, "attention": attention, "task": task,
                "data_dir": data_dir(task), **setting}

    def write(model: str, attention: str, task: str, lm_task: str, row: dict) -> None:
        row = {"kind": "quality", **key(model, attention, task), "lm_eval_task": lm_task, "status": "ok", **row}
        writer.write(row)
        written.append(row)

    def subject_rows(model: str, attention: str) -> dict[str, dict]:
        """The finished accuracy rows of this run's MMLU subjects, by task."""
        found = {}
        for task in (t for t, lm_task in tasks if lm_task and t.startswith("mmlu_")):
            wanted = {**key(model, attention, task), "metric": "acc", "status": "ok"}
            rows = [r for r in writer.rows if all(str(r.get(k)) == str(v) for k, v in wanted.items())]
            if rows:
                found[task] = rows[-1]
        return found

    todo = {a: [t for t in tasks if not writer.done(key(m, a, t[0]))] for a, m in models.items()}
    columns = (TextColumn("[bold]lmeval[/] {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not progress or not any(todo.values())) as bar, _without_environment_report():
        skipped = len(tasks) * len(models) - sum(len(v) for v in todo.values())
        if skipped:
            bar.console.print(f"skipping {skipped} tasks already in {out} (same model, attention and settings); "
                              "a new --out or deleting those rows reruns them", highlight=False, soft_wrap=True)
        job = bar.add_task("", total=sum(len(v) for v in todo.values()))
        for attention, model in models.items():
            lm = None
            for task, lm_task in todo[attention]:
                bar.update(job, description=f"{attention} {task}")
                if lm_task is None:  # the overall MMLU row, from the subjects' rows
                    rows = subject_rows(model, attention)
                    if len(rows) == sum(1 for t, lm_t in tasks if lm_t and t.startswith("mmlu_")):
                        write(model, attention, task, "mmlu_local", mmlu_overall(list(rows.values())))
                    bar.advance(job)
                    continue
                if lm is None:
                    lm = NSABenchLM(lm=load(model, attention), batch_size=batch_size, progress=False,
                                    **({"max_gen_toks": max_gen_toks} if max_gen_toks else {}))
                try:
                    results = simple_evaluate(model=lm, tasks=[lm_task], task_manager=manager, limit=limit,
                                              num_fewshot=num_fewshot, log_samples=True)
                    for row in result_rows(results, lm_task):
                        write(model, attention, task, lm_task, row)
                except (RuntimeError, MemoryError) as error:
                    write(model, attention, task, lm_task,
                          {"metric": "", "score": float("nan"), "n": 0, "status": status_of(error)})
                    _free_cuda()
                bar.advance(job)
                if progress and not bar.console.is_terminal:  # a log gets a line per task, not a live bar
                    step = bar.tasks[0]
                    bar.console.print(f"lmeval {attention} {task} done ({int(step.completed)}/{step.total:.0f}, "
                                      f"{step.elapsed or 0:.0f} s)", highlight=False, soft_wrap=True)
            del lm
    if {"nsa", "full"} <= models.keys():
        mine = run_rows(writer.rows, models, {"suite": "lmeval", **setting})
        written += write_new(writer, nsa_minus_full(mine, PAIR_KEYS), PAIR_KEYS)
    return written
