#!/usr/bin/env bash
# Wheels for the GPU machine (Python 3.12, no internet) of what `nsa-bench lmeval`, the LongBench Chinese
# metrics and `nsa-bench kernels --impl fla` need beyond its image: lm-eval, fla-core and the packages the
# image lacks. Run here, in the repository root:
#   echo /.whl/ >> .git/info/exclude; bash scripts/device_wheels.sh
# then name .whl in the device call's carry and start its command with
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
#     .whl/*.whl && export PYTHONPATH=/tmp/site || exit;
# Versions: those CI installs with ".[dev]" (pip freeze, 2026-12); the image's own packages are not carried.
set -euo pipefail
DEST=${DEST:-.whl}
mkdir -p "$DEST"
BINARY=(lm_eval==0.4.13 datasets==5.2.0 evaluate==0.4.6 dill==0.4.1 multiprocess==0.70.19 more-itertools==11.2.1
        pytablewriter==1.2.1 DataProperty==1.1.1 mbstrdecoder==1.1.5 pathvalidate==3.3.1 tabledata==1.3.5
        tcolorpy==0.1.7 typepy==1.3.5 chardet==6.0.0.post1 nltk==3.10.4 fla-core==0.6.0 einops==0.8.2)
SOURCE_ONLY=(rouge_score==0.1.2 sqlitedict==2.1.0 word2number==1.1 jieba==0.42.1)  # pure Python: built here
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$DEST" "${BINARY[@]}"
python3 -m pip wheel -q --no-deps -w "$DEST" "${SOURCE_ONLY[@]}"
du -sh "$DEST"
