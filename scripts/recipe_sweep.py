"""Training-recipe variants run side by side on one GPU: which recipe makes a small model retrieve?

Each variant is `nsa-bench train` (one attention) with some model-shape and training changes, in its
own process, all at once (they share the GPU, so their tokens/s are not a speed comparison; compare
curves against steps). Rows of all variants go to one CSV with a `variant` column, as produced.

    python scripts/recipe_sweep.py --out DIR --time-budget 240 [--only A,B]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from pathlib import Path

VARIANTS = {
    # name: (attention, model changes, training changes)
    "A_full": ("full", {}, {}),
    "A_nsa": ("nsa", {}, {}),
    "B_full_4layers": ("full", {"n_layers": 4}, {}),
    "C_full_d256_hd16_4layers": ("full", {"dim": 256, "n_layers": 4, "ffn_dim": 704}, {}),
    "D_full_lr1e-3": ("full", {}, {"lr": 1e-3}),
    "E_nsa_4layers": ("nsa", {"n_layers": 4}, {}),
    # does one 32-wide KV head per layer (GQA 16 at this width) starve retrieval? Roomier KV heads:
    "F_full_8h_kv2_hd64": ("full", {"n_heads": 8, "n_kv_heads": 2}, {}),
    "G_full_8h_kv8_hd64": ("full", {"n_heads": 8, "n_kv_heads": 8}, {}),
    "H_full_d256_4h_kv4_hd64_4l": ("full", {"dim": 256, "n_heads": 4, "n_kv_heads": 4, "n_layers": 4, "ffn_dim": 704}, {}),
}


def run_variant(name: str, out: str, tokenizer: str, budget: float, workers: int, ctx: int | None, data: str) -> None:
    from nsa_bench.models import config
    from nsa_bench.train import TrainConfig, train

    attention, model_changes, train_changes = VARIANTS[name]
    config.PRESETS["needle"] = config.PRESETS["needle"].with_(**model_changes)
    cfg = TrainConfig(data=data, out=str(Path(out) / name), preset="needle", attention=attention,
                      time_budget=budget, tokenizer=tokenizer, workers=workers, eval_every=100, ctx=ctx,
                      curriculum=0.0 if ctx else None, extra={"variant": name}, **train_changes)
    train(cfg, progress=False, on_step=lambda a, row: row["step"] % 50 == 0 and print(
        f"{name} step {row['step']} len {row['length']} loss {row['loss']:.3f} ans {row['answer_loss']:.3f} "
        f"em {row.get('val_answer_acc', float('nan')):.2f} {row['tokens_per_s']:,.0f} tok/s {row['wall_s']:.0f}s",
        flush=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--time-budget", type=float, default=240)
    parser.add_argument("--only", default=",".join(VARIANTS))
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--ctx", type=int, default=None, help="training length (default: the needle preset's)")
    parser.add_argument("--corpus-mb", type=int, default=32)
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    from nsa_bench.corpus import default_corpus
    from nsa_bench.train_data import tokenizer_text
    from nsa_bench.models.tokenizer import train_bpe
    from nsa_bench.train import BPE_VOCAB

    tokenizer = Path(args.out) / "tokenizer"
    corpus = default_corpus(args.corpus_mb * 2**20)
    data = Path(args.out) / "corpus.txt"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text(corpus, encoding="utf-8")
    train_bpe(tokenizer_text(corpus, 0), tokenizer, BPE_VOCAB)
    print(f"tokenizer {tokenizer}", flush=True)
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=run_variant, args=(n, args.out, str(tokenizer.resolve()), args.time_budget, args.workers, args.ctx, str(data)))
             for n in names]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    import pandas as pd

    frames = [pd.read_csv(Path(args.out) / n / "train.csv") for n in names if (Path(args.out) / n / "train.csv").exists()]
    if frames:
        pd.concat(frames).to_csv(Path(args.out) / "recipe_sweep.csv", index=False)
    sys.exit(0 if len(frames) == len(names) else 1)


if __name__ == "__main__":
    main()
