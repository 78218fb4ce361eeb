"""Local data for the lm-eval tasks in suites/lmeval_tasks/: GSM8K (JSONL) and MMLU (Hendrycks CSVs).

The task YAMLs load their data through `custom_dataset` functions here, which lm-eval calls with
the run's metadata. The folders come from the metadata keys `gsm8k_dir` / `mmlu_dir` (lm_eval's
`--metadata '{"gsm8k_dir": "..."}'`, or `nsa-bench lmeval --gsm8k-dir/--mmlu-dir`), else from the
environment variables NSA_BENCH_GSM8K_DIR / NSA_BENCH_MMLU_DIR.

GSM8K folder:  train.jsonl, test.jsonl; lines {"question": ..., "answer": "... #### 42"} (OpenAI's release).
MMLU folder:   Hendrycks' layout, dev/<subject>_dev.csv and test/<subject>_test.csv (val/ optional),
               either directly or under data/; rows `question,A,B,C,D,answer` with no header,
               answer a letter A-D.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

TASKS_DIR = Path(__file__).parent / "lmeval_tasks"
GSM8K_SPLITS = ("train", "test")
MMLU_SPLITS = ("dev", "test")  # few-shot examples, questions (val/ is read too when present)
LETTERS = ("A", "B", "C", "D")

# The 57 subjects of Hendrycks et al. (2021), as named in the CSV files.
MMLU_SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine", "college_physics",
    "computer_security", "conceptual_physics", "econometrics", "electrical_engineering", "elementary_mathematics",
    "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry", "high_school_computer_science",
    "high_school_european_history", "high_school_geography", "high_school_government_and_politics",
    "high_school_macroeconomics", "high_school_mathematics", "high_school_microeconomics", "high_school_physics",
    "high_school_psychology", "high_school_statistics", "high_school_us_history", "high_school_world_history",
    "human_aging", "human_sexuality", "international_law", "jurisprudence", "logical_fallacies", "machine_learning",
    "management", "marketing", "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition",
    "philosophy", "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy", "virology",
    "world_religions",
)


class DataError(ValueError):
    """A data folder or file that is missing or not in the expected format (one-line message)."""


def resolve_dir(value: str | os.PathLike | None, env: str, key: str) -> Path:
    """The folder from the metadata value, else from the environment variable; DataError if neither."""
    chosen = value or os.environ.get(env)
    if not chosen:
        raise DataError(f"no {key}: pass --metadata '{{\"{key}\": \"DIR\"}}' to lm_eval or set {env}")
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise DataError(f"{key} {path} is not a directory")
    return path


def read_gsm8k(folder: str | os.PathLike) -> dict[str, list[dict]]:
    """{'train': [...], 'test': [...]} of {'question', 'answer'} dicts from a GSM8K folder."""
    folder = Path(folder)
    splits = {}
    for split in GSM8K_SPLITS:
        path = folder / f"{split}.jsonl"
        if not path.is_file():
            raise DataError(f"GSM8K: {path} not found (expected {', '.join(s + '.jsonl' for s in GSM8K_SPLITS)})")
        rows = []
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise DataError(f"GSM8K: {path}:{number} is not JSON") from None
                if not isinstance(row, dict) or not {"question", "answer"} <= row.keys():
                    raise DataError(f"GSM8K: {path}:{number} lacks 'question' or 'answer'")
                rows.append({"question": str(row["question"]), "answer": str(row["answer"])})
        if not rows:
            raise DataError(f"GSM8K: {path} is empty")
        splits[split] = rows
    return splits


def mmlu_root(folder: str | os.PathLike) -> Path:
    """The folder holding dev/ and test/ (the given one or its data/ subfolder)."""
    folder = Path(folder)
    for root in (folder, folder / "data"):
        if all((root / split).is_dir() for split in MMLU_SPLITS):
            return root
    raise DataError(f"MMLU: {folder} has no dev/ and test/ folders (Hendrycks layout: dev/<subject>_dev.csv ...)")


def mmlu_subjects(folder: str | os.PathLike) -> list[str]:
    """Subjects with both a dev and a test CSV, sorted."""
    root = mmlu_root(folder)
    found = {p.name[: -len("_test.csv")] for p in (root / "test").glob("*_test.csv")}
    subjects = sorted(s for s in found if (root / "dev" / f"{s}_dev.csv").is_file())
    if not subjects:
        raise DataError(f"MMLU: no <subject>_test.csv with a matching <subject>_dev.csv under {root}")
    return subjects


def read_mmlu_csv(path: str | os.PathLike, subject: str) -> list[dict]:
    """Rows of one Hendrycks CSV as {'question', 'subject', 'choices', 'answer' (0-3)} dicts."""
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for number, fields in enumerate(csv.reader(handle), 1):
            if not fields:
                continue
            if len(fields) != 6 or fields[5].strip() not in LETTERS:
                raise DataError(f"MMLU: {path}:{number} is not 'question,A,B,C,D,answer' with answer in A-D")
            rows.append({
                "question": fields[0],
                "subject": subject,
                "choices": fields[1:5],
                "answer": LETTERS.index(fields[5].strip()),
            })
    if not rows:
        raise DataError(f"MMLU: {path} is empty")
    return rows


def read_mmlu(folder: str | os.PathLike, subject: str) -> dict[str, list[dict]]:
    """{'dev': [...], 'test': [...], ('validation': [...])} for one subject."""
    root = mmlu_root(folder)
    splits = {}
    for split, name in (("dev", "dev"), ("test", "test"), ("validation", "val")):
        path = root / name / f"{subject}_{name}.csv"
        if path.is_file():
            splits[split] = read_mmlu_csv(path, subject)
        elif split != "validation":
            raise DataError(f"MMLU: {path} not found")
    return splits


def _dataset_dict(splits: dict[str, list[dict]]):
    import datasets

    return datasets.DatasetDict({name: datasets.Dataset.from_list(rows) for name, rows in splits.items()})


def load_gsm8k(gsm8k_dir: str | None = None, **_metadata):
    """custom_dataset of the gsm8k_local task: a DatasetDict with train and test."""
    return _dataset_dict(read_gsm8k(resolve_dir(gsm8k_dir, "NSA_BENCH_GSM8K_DIR", "gsm8k_dir")))


def load_mmlu(mmlu_dir: str | None = None, subject: str = "", **_metadata):
    """custom_dataset of the mmlu_local_<subject> tasks: a DatasetDict with dev and test."""
    return _dataset_dict(read_mmlu(resolve_dir(mmlu_dir, "NSA_BENCH_MMLU_DIR", "mmlu_dir"), subject))
