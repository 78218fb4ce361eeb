"""Generating and scoring LongBench predictions with a CausalLM.

Each example gets its dataset's official prompt (no chat template), cut in the middle to the
model's window minus the dataset's generation length, and a greedy continuation. Predictions are
appended to `<pred_dir>/<subset>.jsonl` as they are produced (LongBench's pred format plus `_id`,
`prompt_tokens`, `truncated`), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import re
from contextlib import nullcontext
from pathlib import Path
from typing import Sequence

from nsa_bench import distributed
from nsa_bench.errors import UsageError
from nsa_bench.lm import CausalLM
from nsa_bench.results import ResultWriter
from nsa_bench.suites.longbench.datasets import build_prompt, spec_for
from nsa_bench.suites.longbench.records import DATA_KEYS, example_id, read_jsonl
from nsa_bench.suites.longbench.scoring import average_rows, score_records, subset_rows


def truncate_middle(ids: Sequence[int], budget: int) -> list[int]:
    """ids unchanged if they fit in budget, else the first budget//2 and the last budget - budget//2."""
    ids = list(ids)
    if len(ids) <= budget:
        return ids
    head = budget // 2
    return ids[:head] + ids[len(ids) - (budget - head):]


def prediction_dir(root: str | Path, model: str, attention: str) -> Path:
    """Where one model's predictions go: <root>/<model as a file name>/<attention>/."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model.strip("/")).strip("_") or "model"
    return Path(root) / slug / attention


def _load_predictions(path: Path) -> dict[str, dict]:
    """Predictions already in a file, by example id; a torn last line (interrupted write) is dropped."""
    if not path.exists():
        return {}
    done, kept = {}, []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "_id" in record and "pred" in record:
            done[str(record["_id"])] = record
            kept.append(line)
    path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    return done


def predict_subset(lm: CausalLM, subset: str, records: Sequence[dict], path: Path, progress=None) -> list[dict]:
    """Prediction records for the examples, in order: those already in `path`, the rest generated
    and appended to it one by one (under torchrun: shared out over the ranks, rank 0 appends them all)."""
    spec = spec_for(subset)
    budget = lm.max_length - spec.max_gen
    if budget < 1:
        raise UsageError(f"{subset}: the model's window ({lm.max_length}) leaves no room for {spec.max_gen} new tokens")
    main = distributed.current_ranks().main
    path.parent.mkdir(parents=True, exist_ok=True)
    done = distributed.broadcast_object(_load_predictions(path) if main else None)
    keys = [example_id(record, index) for index, record in enumerate(records)]
    todo = [(key, record) for key, record in zip(keys, records) if key not in done]

    def predict(item: tuple[str, dict]) -> dict:
        key, record = item
        ids = lm.encode(build_prompt(spec, record))
        new = lm.generate(truncate_middle(ids, budget), spec.max_gen, stop=spec.stop)
        return {"_id": key, "pred": lm.decode(new), "answers": record["answers"],
                "all_classes": record.get("all_classes"), "length": record.get("length"),
                "prompt_tokens": len(ids), "truncated": len(ids) > budget}

    task = progress.add_task(f"{lm.attention} {subset}", total=len(records)) if progress else None
    if progress:
        progress.advance(task, len(records) - len(todo))
    with path.open("a", encoding="utf-8") if main else nullcontext() as sink:
        for (key, _), prediction in distributed.map_in_rounds(todo, predict):
            done[key] = prediction
            if sink:
                sink.write(json.dumps(prediction, ensure_ascii=False) + "\n")
                sink.flush()
            if progress:
                progress.advance(task)
                _log_line(progress, task, last=False)
    if progress:
        _log_line(progress, task, last=True)
    return [done[key] for key in keys]


def _log_line(progress, task, last: bool) -> None:
    """When output is not a terminal (a log file), a line every 30 s and at a subset's end instead of a live bar."""
    state = next(t for t in progress.tasks if t.id == task)
    elapsed = state.elapsed or 0.0
    if progress.console.is_terminal or not (last or elapsed - state.fields.get("said", 0.0) >= 30):
        return
    state.fields["said"] = elapsed
    progress.console.print(f"longbench {state.description}: {int(state.completed)}/{state.total:.0f} examples, "
                           f"{elapsed:.0f} s", highlight=False, soft_wrap=True)


def load_subsets(files: dict[str, Path], max_examples: int | None = None) -> dict[str, list[dict]]:
    """The examples of each subset ({subset: data file}), the first max_examples of each if given."""
    return {subset: read_jsonl(file, DATA_KEYS)[:max_examples] for subset, file in files.items()}


def run_longbench(
    lm: CausalLM,
    subsets: dict[str, Sequence[dict]],
    pred_dir: Path,
    writer: ResultWriter | None = None,
    progress=None,
    code_sim: str = "levenshtein",
) -> list[dict]:
    """Predict and score every subset ({subset: examples}, see `load_subsets`) with one model
    (code_sim: how lcc and repobench-p are scored, see metrics.code_sim_difflib).

    Rows (per subset, per length bucket, and macro averages) are returned and, with a writer,
    saved as each subset finishes; rows already in the writer's CSV are not written twice.
    """
    label = {"model": lm.name, "attention": lm.attention, "max_length": lm.max_length}
    rows: list[dict] = []

    def save(new_rows: list[dict]) -> None:
        for row in new_rows:
            row.update(label)
            if writer is not None and not writer.done(
                {k: row[k] for k in ("suite", "model", "attention", "task", "length_bucket", "n")}
            ):
                writer.write(row)

    for subset, records in subsets.items():
        predictions = predict_subset(lm, subset, records, Path(pred_dir) / f"{subset}.jsonl", progress)
        scores = score_records(subset, predictions, code_sim=code_sim)
        subset_level = subset_rows(subset, scores, [p.get("length") for p in predictions],
                                   [p["_id"] for p in predictions], code_sim)
        subset_level[0]["truncated"] = sum(bool(p.get("truncated")) for p in predictions)
        save(subset_level)
        rows += subset_level
    averages = average_rows(rows)
    save(averages)
    return rows + averages
