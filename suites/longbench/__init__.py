"""LongBench (v1 and LongBench-E) on local JSONL files: official prompts, truncation and metrics."""

from nsa_bench.suites.longbench.datasets import ALL_SUBSETS, DATASETS, LONGBENCH_E, DatasetSpec, build_prompt, spec_for
from nsa_bench.suites.longbench.metrics import METRICS, score_prediction
from nsa_bench.suites.longbench.runner import run_longbench, truncate_middle
from nsa_bench.suites.longbench.scoring import score_predictions

__all__ = [
    "ALL_SUBSETS", "DATASETS", "LONGBENCH_E", "METRICS", "DatasetSpec", "build_prompt", "run_longbench",
    "score_prediction", "score_predictions", "spec_for", "truncate_middle",
]
