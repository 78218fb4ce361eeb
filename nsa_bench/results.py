"""Result CSVs: rows written as they are produced, each stamped with the run's metadata."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd

from nsa_bench.environment import run_metadata


class Unsupported(Exception):
    """A case this setup cannot run (a missing backend, a length beyond a limit): its row's status
    is 'unsupported: <message>'."""


def status_of(error: BaseException) -> str:
    """The status a result row records for a failed case, the one rule of every suite:
    'oom' when it ran out of memory; 'unsupported: <message>' for Unsupported, and
    'unsupported: <type>: <message>' for ValueError and Triton's OutOfResources (the inputs or the
    device do not fit the case); else 'error: <type>: <message>'. The message is its first line,
    at most 200 characters."""
    names = {cls.__name__ for cls in type(error).__mro__}
    text = str(error).strip().splitlines()
    message = (text[0] if text else type(error).__name__)[:200]
    if "OutOfMemoryError" in names or "out of memory" in str(error).lower():
        return "oom"
    if isinstance(error, Unsupported):
        return f"unsupported: {message}"
    if isinstance(error, ValueError) or "OutOfResources" in names:
        return f"unsupported: {type(error).__name__}: {message}"
    return f"error: {type(error).__name__}: {message}"


class ResultWriter:
    """Appends result rows to one CSV as they are produced.

    Every row carries the run's metadata (GPU, versions, git revision, time) and the
    `extra` columns given here (e.g. the config), so an interrupted run keeps what it finished
    and any row can be reproduced on its own. Rows of an existing file are kept (resume). A row
    whose columns the file has is appended as one line; a row with new columns (or rows replaced
    through `rows = ...`) rewrites the file once, so long runs stay linear in their rows.
    """

    def __init__(self, path: str | Path, extra: dict | None = None, metadata: dict | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.stamp = {**(metadata if metadata is not None else run_metadata()), **(extra or {})}
        self._rows: list[dict] = read_rows(self.path) if self.path.exists() else []
        self._columns: list[str] = list(pd.read_csv(self.path, nrows=0).columns) if self._rows else []
        self._in_file = len(self._rows)  # rows the file holds, in self._columns; -1: rewrite on the next write

    @property
    def rows(self) -> list[dict]:
        return self._rows

    @rows.setter
    def rows(self, rows: list[dict]) -> None:
        self._rows = list(rows)
        self._in_file = -1

    def write(self, row: dict) -> None:
        """Add one row (its own keys take precedence over the metadata) and save it."""
        row = {**row, **{k: v for k, v in self.stamp.items() if k not in row}}
        self._rows.append(row)
        if self._in_file == len(self._rows) - 1 and self._columns and set(row) <= set(self._columns):
            with open(self.path, "a", newline="", encoding="utf-8") as f:
                csv.writer(f).writerow([_cell(row.get(c)) for c in self._columns])
        else:
            frame = pd.DataFrame(self._rows)
            frame.to_csv(self.path, index=False)
            self._columns = list(frame.columns)
        self._in_file = len(self._rows)

    def done(self, keys: dict) -> bool:
        """Whether a row whose columns match all of `keys` is already in the file (for resuming)."""
        return any(all(str(r.get(k)) == str(v) for k, v in keys.items()) for r in self._rows)


def _cell(value) -> object:
    """A value as pandas writes it: empty for None and NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a result CSV as dicts."""
    return pd.read_csv(path).to_dict(orient="records")
