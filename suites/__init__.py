"""Benchmark and evaluation suites: kernels, needle-in-a-haystack, LongBench, lm-eval."""
