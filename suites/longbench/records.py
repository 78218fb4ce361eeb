"""Reading LongBench JSONL files (data and predictions), with one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

from nsa_bench.errors import UsageError
from nsa_bench.suites.longbench.datasets import ALL_SUBSETS, spec_for

DATA_KEYS = ("input", "context", "answers")
PREDICTION_KEYS = ("pred", "answers")


def read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    """The objects of a JSONL file, each checked for the required keys and list-valued answers."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise UsageError(f"{path}:{number}: not JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise UsageError(f"{path}:{number}: expected a JSON object per line")
        missing = [key for key in required if key not in record]
        if missing:
            raise UsageError(f"{path}:{number}: missing {', '.join(map(repr, missing))} (LongBench format)")
        if not isinstance(record["answers"], list) or not all(isinstance(a, str) for a in record["answers"]):
            raise UsageError(f"{path}:{number}: 'answers' must be a list of strings")
        classes = record.get("all_classes")
        if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
            raise UsageError(f"{path}:{number}: 'all_classes' must be a list of strings or null")
        length = record.get("length")
        if length is not None and (isinstance(length, bool) or not isinstance(length, int)):
            raise UsageError(f"{path}:{number}: 'length' must be an integer")
        records.append(record)
    if not records:
        raise UsageError(f"{path}: no examples")
    return records


def example_id(record: dict, index: int) -> str:
    """An example's id: its `_id`, or its position in the file when it has none."""
    return str(record.get("_id", f"#{index}"))


def subset_of(path: Path) -> str:
    """The subset a file holds, from its name (`hotpotqa.jsonl`, `qasper_e.jsonl`)."""
    name = Path(path).name.split(".")[0]
    try:
        spec_for(name)
    except KeyError:
        raise UsageError(f"{path}: '{name}' is not a LongBench subset (file names are <subset>.jsonl)") from None
    return name


def data_files(data_dir: Path, subsets: list[str] | None) -> dict[str, Path]:
    """The data file of each requested subset in data_dir (default: every LongBench subset found there)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UsageError(f"--data {data_dir}: not a directory")
    if subsets:
        unknown = [s for s in subsets if s not in ALL_SUBSETS]
        if unknown:
            raise UsageError(f"unknown LongBench subset(s): {', '.join(unknown)}")
        missing = [s for s in subsets if not (data_dir / f"{s}.jsonl").is_file()]
        if missing:
            raise UsageError(f"--data {data_dir}: no {', '.join(f'{s}.jsonl' for s in missing)}")
        return {s: data_dir / f"{s}.jsonl" for s in subsets}
    found = {s: data_dir / f"{s}.jsonl" for s in ALL_SUBSETS if (data_dir / f"{s}.jsonl").is_file()}
    if not found:
        raise UsageError(f"--data {data_dir}: no LongBench files (<subset>.jsonl, e.g. hotpotqa.jsonl)")
    return found


def prediction_files(path: Path) -> dict[str, Path]:
    """Prediction files to score: one file, or every `<subset>.jsonl` in a directory."""
    path = Path(path)
    if path.is_file():
        return {subset_of(path): path}
    if path.is_dir():
        files = sorted(p for p in path.glob("*.jsonl") if p.is_file())
        if not files:
            raise UsageError(f"--predictions {path}: no .jsonl files")
        return {subset_of(p): p for p in files}
    raise UsageError(f"--predictions {path}: no such file or directory")
