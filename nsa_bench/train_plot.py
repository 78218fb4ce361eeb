"""The training plot of one train CSV: nsa_bench.plots.train_figure (the figure `report` draws too)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nsa_bench.plots import pyplot, save, train_figure


def plot_training(csv: str | Path, png: str | Path, smooth: int = 20) -> Path:
    """Write the training figure of a train CSV as a PNG; returns its path. A CSV without ok rows
    gets an empty figure, so the PNG always exists after a run."""
    fig = train_figure(pd.read_csv(csv).assign(source=Path(csv).name), smooth)
    if fig is None:
        fig = pyplot().figure(figsize=(6, 2))
        fig.text(0.5, 0.5, f"{Path(csv).name}: no ok training rows", ha="center", va="center")
    return save(fig, png, dpi=120)
