"""Seeds for random test inputs: fixed, so CI is deterministic, and overridable to explore.

NSA_BENCH_TEST_SEED (default 0) is the base; each call site gets its own seed from the base and
a key (its arguments), so a test's inputs do not depend on which other tests ran before it.
"""

from __future__ import annotations

import os
import zlib

BASE_SEED = int(os.environ.get("NSA_BENCH_TEST_SEED", "0"))


def seed_for(*key) -> int:
    """A seed in [0, 2**31) from BASE_SEED and key (stable across runs and processes)."""
    return (BASE_SEED * 1_000_003 + zlib.crc32(repr(key).encode())) % (2**31 - 1)
