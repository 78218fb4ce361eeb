#!/usr/bin/env bash
# The retrieval recipe on one GPU (issue 15), in two device calls of at most 10 minutes each.
#
# PHASE=train: an NSA / full pair of the `needle` preset (4 layers, 4 heads of 64, 4k context, a BPE
#   tokenizer trained on the default corpus), the same seed, data order and BUDGET seconds of training
#   each; the pair saved in bf16 as two tars.
# PHASE=eval: the needle family from 4k to 64k on that pair (cells past 4k are extrapolated) and the
#   training throughput of NSA against full at 8k-64k (`nsa-bench train-speed`, the gpu preset).
#
# On the device machine, in the repository root:
#   export PYTHONUNBUFFERED=1 NSA_BENCH_GIT_REV=<rev>; python -m pip install -q --no-deps --no-build-isolation -e .
#   PHASE=train BUDGET=240 bash scripts/train_needle_pair_gpu.sh
# then, here, unpack $OUT's pair_full.tar and pair_nsa.tar into runs/needle-pair-bf16/ (ignored by git),
# carry it, and on the device machine:
#   PHASE=eval PAIR=runs/needle-pair-bf16 bash scripts/train_needle_pair_gpu.sh
# At most 8 files come back from a call: heatmaps stay behind (nsa-bench report redraws them from the CSV).
# Everything goes to $OUT as it is produced (train_needle_h200.csv/.png/.log, needle_family_*_h200.csv,
# train_speed_h200.csv/.png).
set -euo pipefail
PHASE=${PHASE:-train}
BUDGET=${BUDGET:-240}
WORKERS=${WORKERS:-12}
RUN=${RUN:-runs/needle-pair}
PAIR=${PAIR:-$RUN}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
family() {  # $1: lengths, $2: CSV name, $3: seconds at most (rows are written as produced)
  timeout "$3" python -m nsa_bench.cli needle --task family --model "nsa=$PAIR/nsa" --model "full=$PAIR/full" \
    --attn both --ctx "$1" --depths 5 --trials 4 --extrapolate --out "$OUT/$2" --report-dir /tmp/needle_reports 2>&1 \
    | grep -v "^wrote" || echo "needle family stopped after $3 s"
}
if [ "$PHASE" = train ]; then
  python -m nsa_bench.cli train --preset needle --attn both --time-budget "$BUDGET" --workers "$WORKERS" \
    --eval-every 250 --save-every 1000000 --out "$RUN" --csv "$OUT/train_needle_h200.csv" \
    --plot "$OUT/train_needle_h200.png" 2>&1 | tr '\r' '\n' | grep -v "━" | tee "$OUT/train_needle_h200.log"
  python - "$RUN" <<'PY'
import sys, torch
from nsa_bench.models import load_checkpoint, save_checkpoint
for a in ("full", "nsa"):
    save_checkpoint(load_checkpoint(f"{sys.argv[1]}/{a}"), f"{sys.argv[1]}-bf16/{a}", dtype=torch.bfloat16)
PY
  for a in full nsa; do tar -C "$RUN-bf16" -cf "$OUT/pair_$a.tar" "$a"; done
else
  family 4k,8k,16k,32k,64k needle_family_h200.csv "${FAMILY_S:-330}" | tee "$OUT/eval_needle_h200.log"
  python -m nsa_bench.cli train-speed --preset gpu --ctx 8k,16k,32k,64k --out "$OUT/train_speed_h200.csv" \
    2>&1 | tee -a "$OUT/eval_needle_h200.log"
fi
