"""The recipe sweeps' answer loss against steps (what was tried for issue 15), one panel per sweep.

    python scripts/plot_recipe_sweeps.py reports/recipe_sweeps_h200.png
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

PANELS = [
    ("4k context, curriculum from 512 (sweep 1: 6 variants sharing one H200; the pair run, NSA only, cut by the call limit)",
     [("results/recipe_sweep1_h200.csv", "variant"), ("results/train_needle_h200_cut.csv", None)]),
    ("1k context (sweep 2: 4 variants sharing one H200)", [("results/recipe_sweep2_h200.csv", "variant")]),
]


def main(out: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(14, 5), sharey=True)
    for ax, (title, sources) in zip(axes, PANELS):
        for path, column in sources:
            frame = pd.read_csv(path)
            groups = frame.groupby(column) if column else [("pair run: NSA, 2 layers G16 (cut)", frame)]
            for name, g in groups:
                g = g.sort_values("step")
                smooth = g["answer_loss"].rolling(max(1, len(g) // 60), min_periods=1).mean()
                ax.plot(g["step"], smooth, label=name, linewidth=1.6 if "H_" in str(name) else 1.0)
        ax.set_title(title, fontsize=9, wrap=True)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("loss on the answer tokens (nats, smoothed)")
    fig.suptitle("Does a small model learn needle retrieval? Only the 4-layer, 64-wide-head shape (H) did", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main(sys.argv[1])
