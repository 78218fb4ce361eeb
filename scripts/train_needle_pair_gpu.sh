#!/usr/bin/env bash
# The retrieval recipe on one GPU (issue 15): an NSA / full pair of the `needle` preset (GQA group 16,
# 4k context, subword tokenizer trained on the default corpus), the same seed, data order and
# training-time budget each, then the needle family at the training length; the pair saved in bf16.
# On the device machine, in the repository root:
#   export PYTHONUNBUFFERED=1 NSA_BENCH_GIT_REV=<rev>; python -m pip install -q --no-deps --no-build-isolation -e .
#   OUT=$OUT BUDGET=240 bash scripts/train_needle_pair_gpu.sh
# Writes to $OUT: train_needle_h200.csv/.png/.log, needle_family_4k_h200.csv, pair_full.tar, pair_nsa.tar.
set -euo pipefail
BUDGET=${BUDGET:-240}
WORKERS=${WORKERS:-12}
RUN=${RUN:-runs/needle-pair}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python -m nsa_bench.cli train --preset needle --attn both --time-budget "$BUDGET" --workers "$WORKERS" \
  --eval-every 250 --save-every 1000000 --out "$RUN" --csv "$OUT/train_needle_h200.csv" \
  --plot "$OUT/train_needle_h200.png" 2>&1 | tee "$OUT/train_needle_h200.log"
python - "$RUN" <<'PY'
import sys, torch
from nsa_bench.models import load_checkpoint, save_checkpoint
for a in ("full", "nsa"):
    save_checkpoint(load_checkpoint(f"{sys.argv[1]}/{a}"), f"{sys.argv[1]}-bf16/{a}", dtype=torch.bfloat16)
PY
for a in full nsa; do tar -C "$RUN-bf16" -cf "$OUT/pair_$a.tar" "$a"; done
ls -la "$OUT"
python -m nsa_bench.cli needle --model "nsa=$RUN/nsa" --model "full=$RUN/full" --attn both --task family \
  --ctx 4096 --depths 5 --trials 4 --out "$OUT/needle_family_4k_h200.csv" --report-dir /tmp/needle-reports \
  2>&1 | tail -n 30 | tee -a "$OUT/train_needle_h200.log"
