#!/usr/bin/env bash
# Needle in a haystack on the NSA / full pair that scripts/train_pair_gpu.sh trained (issue 7, point 6):
# 8k to 64k tokens (beyond the 8k training context with --extrapolate), Paul Graham essays as the
# haystack. Rows go to NEEDLE_CSV as they are produced, heatmaps to NEEDLE_REPORTS (point both at $OUT on
# the device machine). Run it right after scripts/train_pair_gpu.sh, in the same device call: the
# checkpoints live on that machine (that script's header has the whole command). NEEDLE_SECONDS stops
# the grid in time; rows already written stay, and a rerun resumes them.
set -euo pipefail
CTX=${CTX:-8192}
RUN=${RUN:-runs/train-gpu-ctx$CTX}
DATA=${DATA:-runs/data/PaulGrahamEssays}
timeout "${NEEDLE_SECONDS:-600}" python -m nsa_bench.cli needle --model "nsa=$RUN/nsa" --model "full=$RUN/full" \
  --ctx "${NEEDLE_CTX:-8k,16k,32k,64k}" --depths "${DEPTHS:-6}" --trials "${TRIALS:-2}" --haystack "$DATA" --extrapolate \
  --out "${NEEDLE_CSV:-results/needle_gpu.csv}" --report-dir "${NEEDLE_REPORTS:-reports}"
