"""The per-50-step lines that scripts/recipe_sweep.py prints, as a CSV (for a sweep cut off before it
merged its variants' CSVs): variant, step, length, loss, answer_loss, val_answer_acc, tokens_per_s, wall_s.

    python scripts/sweep_log_to_csv.py results/recipe_sweep2_h200.log results/recipe_sweep2_h200.csv
"""

import csv
import re
import sys

LINE = re.compile(r"^(\S+) step (\d+) len (\d+) loss ([\d.]+) ans ([\d.na]+) em ([\d.na]+) ([\d,]+) tok/s (\d+)s$")


def main(log: str, out: str) -> None:
    rows = []
    for line in open(log, encoding="utf-8"):
        match = LINE.match(line.strip())
        if match:
            v, step, length, loss, ans, em, tps, wall = match.groups()
            rows.append({"variant": v, "step": int(step), "length": int(length), "loss": float(loss),
                         "answer_loss": float(ans), "val_answer_acc": float(em), "tokens_per_s": int(tps.replace(",", "")),
                         "wall_s": int(wall)})
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} rows -> {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
