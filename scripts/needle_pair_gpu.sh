#!/usr/bin/env bash
# Needle in a haystack on the NSA / full pair that scripts/train_pair_h100.sh trained (issue 7, point 6):
# 8k to 64k tokens (beyond the 8k training context with --extrapolate), Paul Graham essays as the
# haystack; CSV to results/, heatmaps to reports/, both also to $OUT when set.
# Run it right after the training script, in the same device call (the checkpoints live on that machine):
#   BUDGET=190 bash scripts/train_pair_h100.sh && NEEDLE_SECONDS=150 bash scripts/needle_pair_gpu.sh
# NEEDLE_SECONDS stops the grid in time; rows already written stay (a rerun resumes them).
set -uo pipefail
CTX=${CTX:-8192}
RUN=${RUN:-runs/train-gpu-ctx$CTX}
DATA=${DATA:-runs/data/PaulGrahamEssays}
timeout "${NEEDLE_SECONDS:-600}" python -m nsa_bench.cli needle --model "nsa=$RUN/nsa" --model "full=$RUN/full" \
  --ctx "${NEEDLE_CTX:-8k,16k,32k,64k}" --depths "${DEPTHS:-6}" --trials "${TRIALS:-2}" --haystack "$DATA" --extrapolate \
  --out "${NEEDLE_CSV:-results/needle_gpu.csv}" --report-dir "${NEEDLE_REPORTS:-reports}"
code=$?
if [ -n "${OUT:-}" ]; then cp "${NEEDLE_CSV:-results/needle_gpu.csv}" "${NEEDLE_REPORTS:-reports}"/needle*.png "$OUT/" 2>/dev/null; fi
exit $code
