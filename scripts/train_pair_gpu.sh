#!/usr/bin/env bash
# NSA / full-attention pair at 8k context on one H100/H200 (issue 6, point 4): the gpu preset (23M parameters
# full, 30M NSA), the same seed, data order and training-time budget for both; CSV and plot written as the
# run goes (point CSV/PLOT at $OUT on the device machine so that a call cut short still returns them).
# Measured on the H200: 0.106 s (full) and 0.193 s (NSA) per step of 8 x 8192 tokens; BUDGET=165 took
# 195 s (NSA) and 280 s (full, more held-out evaluations) of wall time.
#
# The device machine sees only the repository, so copy the data into an ignored folder first, here:
#   mkdir -p runs/data && cp -r ../shared/data/needle/PaulGrahamEssays ../shared/data/gsm8k runs/data/
#   echo /.whl/ >> .git/info/exclude; bash scripts/device_wheels.sh     # lm-eval for the eval script
# then call the device tool with carry ["runs/data", ".whl"] and the command (training, then the quality
# suites on the pair in the same call: the checkpoints stay on that machine)
#   export PYTHONUNBUFFERED=1 NSA_BENCH_GIT_REV=<rev>; python3 -m pip install -q --no-index --no-deps \
#     --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site;
#   python -m pip install -q --no-deps --no-build-isolation -e .
#   CSV=$OUT/train_gpu_ctx8192.csv PLOT=$OUT/train_gpu_ctx8192.png bash scripts/train_pair_gpu.sh
#   EVAL_OUT=$OUT NEEDLE_REPORTS=/tmp bash scripts/eval_pair_gpu.sh
# H200 runs of 2026-12-02: BUDGET=165 with the needle grid (results/train_gpu_ctx8192.csv, needle_gpu.csv);
# BUDGET=75 EVAL_EVERY=100 then all suites (pair A: needle + LongBench, pair B: SUITES=lmeval, LMEVAL_LIMIT=10),
# each train + eval in 400-520 s of one call (README, "Results on record").
# Without a working Triton NSA the run stops at once and says why.
set -euo pipefail
BUDGET=${BUDGET:-165}
CTX=${CTX:-8192}
EVAL_EVERY=${EVAL_EVERY:-}  # steps between held-out evaluations (empty: the preset's)
BATCH=${BATCH:-8}  # sequences per step; e.g. CTX=32768 BATCH=2 keeps the tokens per step
DATA=${DATA:-runs/data/PaulGrahamEssays}
CSV=${CSV:-results/train_gpu_ctx$CTX.csv}
PLOT=${PLOT:-reports/train_gpu_ctx$CTX.png}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
# one checkpoint at the end only: a 270 MB checkpoint every 200 steps costs minutes of a 10-minute call
python -m nsa_bench.cli train --data "$DATA" --preset gpu --ctx "$CTX" --batch "$BATCH" --attn both --time-budget "$BUDGET" ${EVAL_EVERY:+--eval-every "$EVAL_EVERY"} \
  --save-every 100000 --out "runs/train-gpu-ctx$CTX" --csv "$CSV" --plot "$PLOT"
