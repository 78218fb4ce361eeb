#!/usr/bin/env bash
# Check the kernels of the current revision on one GPU, in one device call of at most 10 minutes:
# every kernel against the reference (scripts/gpu_check_kernels.py, all shapes, no timings), the
# GPU-only tests (pytest -m gpu), a kernels sweep, and the regression gate against the committed
# H200 sweep. Rows and logs go to $OUT as they are produced (check.log, pytest.log,
# kernels_h200_check.csv/.md/.log, gate.log).
#
# On the device machine, in the repository root:
#   export PYTHONUNBUFFERED=1 NSA_BENCH_GIT_REV=<rev>; python -m pip install -q --no-deps --no-build-isolation -e .
#   bash scripts/kernels_gpu_check.sh            # SEQ=8k,16k,32k,64k IMPLS=fa2,cudnn,nsa by default
set -uo pipefail
: "${OUT:?set OUT to the folder that comes back}"
SEQ=${SEQ:-8k,16k,32k,64k}
IMPLS=${IMPLS:-fa2,cudnn,nsa}
BASELINE=${BASELINE:-results/kernels_h200_8k_64k_f819d69.csv}
status=0
timeout 150 python scripts/gpu_check_kernels.py --out "$OUT/triton_nsa_check_h200.csv" --lengths "" > "$OUT/check.log" 2>&1 \
  || status=1
grep -E "^correctness|FAIL" "$OUT/check.log"
timeout 120 python -m pytest -q -m gpu tests/ -p no:cacheprovider > "$OUT/pytest.log" 2>&1 || status=1
tail -1 "$OUT/pytest.log"
timeout 280 nsa-bench kernels --seq "$SEQ" --impl "$IMPLS" --tag h200_check --out "$OUT" --reports "$OUT" \
  > "$OUT/kernels_h200_check.log" 2>&1 || status=1
nsa-bench check --baseline "$BASELINE" --current "$OUT/kernels_h200_check.csv" --allow-missing > "$OUT/gate.log" 2>&1 \
  || status=1
grep -E "regression|gate:" "$OUT/gate.log"
exit "$status"
