"""Result CSVs: rows written as they are produced, each stamped with the run's metadata."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nsa_bench.environment import run_metadata


class ResultWriter:
    """Appends result rows to one CSV, rewriting the file after every row.

    Every row carries the run's metadata (GPU, versions, git revision, time) and the
    `extra` columns given here (e.g. the config), so an interrupted run keeps what it finished
    and any row can be reproduced on its own. Rows of an existing file are kept (resume).
    """

    def __init__(self, path: str | Path, extra: dict | None = None, metadata: dict | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.stamp = {**(metadata if metadata is not None else run_metadata()), **(extra or {})}
        self.rows: list[dict] = read_rows(self.path) if self.path.exists() else []

    def write(self, row: dict) -> None:
        """Add one row (its own keys take precedence over the metadata) and save the file."""
        self.rows.append({**row, **{k: v for k, v in self.stamp.items() if k not in row}})
        pd.DataFrame(self.rows).to_csv(self.path, index=False)

    def done(self, keys: dict) -> bool:
        """Whether a row whose columns match all of `keys` is already in the file (for resuming)."""
        return any(all(str(r.get(k)) == str(v) for k, v in keys.items()) for r in self.rows)


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a result CSV as dicts."""
    return pd.read_csv(path).to_dict(orient="records")
