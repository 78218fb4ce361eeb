#!/usr/bin/env bash
# The quality suites on the NSA / full pair that scripts/train_pair_gpu.sh trained (issue 7, point 6): the
# needle grid at 8k to 64k (beyond the 8k training context with --extrapolate; Paul Graham essays as the
# haystack), LongBench on LONGBENCH (default: the repository's own small fixtures, a wiring check; point it at
# an unzipped LongBench data.zip for real scores) and lm-eval GSM8K (GSM8K_DIR) and MMLU (MMLU_DIR).
# Rows go to EVAL_OUT (needle_gpu.csv, longbench_gpu.csv, lmeval_gpu.csv) as they are produced; point it
# at $OUT on the device machine. Heatmaps: `nsa-bench report` on the CSVs, here.
# Run it right after scripts/train_pair_gpu.sh, in the same device call: the checkpoints live on that
# machine (that script's header has the whole command). lm-eval is not on the GPU image: carry its wheels
# (scripts/device_wheels.sh). *_SECONDS stop each suite in time; rows already written stay, a rerun resumes.
set -uo pipefail
CTX=${CTX:-8192}
RUN=${RUN:-runs/train-gpu-ctx$CTX}
EVAL_OUT=${EVAL_OUT:-results}
PAIR=(--model "nsa=$RUN/nsa" --model "full=$RUN/full")
SUITES=${SUITES:-needle longbench lmeval}  # which to run, in this order
status=0
[[ " $SUITES " == *" needle "* ]] && { timeout "${NEEDLE_SECONDS:-300}" python -m nsa_bench.cli needle "${PAIR[@]}" --ctx "${NEEDLE_CTX:-8k,16k,32k,64k}" \
  --depths "${DEPTHS:-6}" --trials "${TRIALS:-2}" --haystack "${HAYSTACK:-runs/data/PaulGrahamEssays}" --extrapolate \
  --out "$EVAL_OUT/needle_gpu.csv" --report-dir "${NEEDLE_REPORTS:-reports}" || status=1; }
[[ " $SUITES " == *" longbench "* ]] && { timeout "${LONGBENCH_SECONDS:-120}" python -m nsa_bench.cli longbench run "${PAIR[@]}" \
  --data "${LONGBENCH:-tests/fixtures/longbench/data}" --max-examples "${LONGBENCH_EXAMPLES:-20}" \
  --out "$EVAL_OUT/longbench_gpu.csv" --preds "${PREDS:-runs/longbench_preds}" || status=1; }
[[ " $SUITES " == *" lmeval "* ]] && { timeout "${LMEVAL_SECONDS:-240}" python -m nsa_bench.cli lmeval "${PAIR[@]}" --tasks "${LMEVAL_TASKS:-mmlu,gsm8k}" \
  --gsm8k-dir "${GSM8K_DIR:-runs/data/gsm8k}" --mmlu-dir "${MMLU_DIR:-tests/fixtures/mmlu}" --limit "${LMEVAL_LIMIT:-50}" \
  --out "$EVAL_OUT/lmeval_gpu.csv" || status=1; }
exit $status
