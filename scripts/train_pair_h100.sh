#!/usr/bin/env bash
# NSA / full-attention pair at 8k context on one H100 (issue 6, point 4): the gpu preset (23M parameters
# full, 30M NSA), the same seed, data order and training-time budget for both; CSV to results/, plot to
# reports/, both also to $OUT when set. A 25 s smoke run measured 0.12 s (full) and 0.24 s (NSA) per
# step of 8 x 8192 tokens, so 210 s is about 1700 and 900 steps.
#
# The device machine sees only the repository, so copy the corpus into an ignored folder first, here:
#   mkdir -p runs/data && cp -r ../shared/data/needle/PaulGrahamEssays runs/data/
# then call the device tool with carry ["runs/data"] and the command
#   PYTHONUNBUFFERED=1 bash scripts/train_pair_h100.sh
# BUDGET (seconds of training per model, default 210) keeps both runs, the warm-up, evaluation and
# start-up inside one 10-minute call. Without a working Triton NSA the run stops at once and says why.
set -euo pipefail
BUDGET=${BUDGET:-210}
CTX=${CTX:-8192}
BATCH=${BATCH:-8}  # sequences per step; e.g. CTX=32768 BATCH=2 keeps the tokens per step
DATA=${DATA:-runs/data/PaulGrahamEssays}
# `python -m pip`: on the device machine the bare `pip` belongs to another Python than `python`
python -m pip install -q --no-deps --no-build-isolation -e .
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python -m nsa_bench.cli train --data "$DATA" --preset gpu --ctx "$CTX" --batch "$BATCH" --attn both --time-budget "$BUDGET" \
  --out "runs/train-gpu-ctx$CTX" --csv "results/train_gpu_ctx$CTX.csv" --plot "reports/train_gpu_ctx$CTX.png"
if [ -n "${OUT:-}" ]; then cp "results/train_gpu_ctx$CTX.csv" "reports/train_gpu_ctx$CTX.png" "$OUT/"; fi
