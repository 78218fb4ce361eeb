"""Training batches built ahead of the step that needs them, in worker processes."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor

_DATA = None  # the TrainData the forked workers inherit


def _build(step: int, length: int):
    return _DATA.batch_at(step, length)


def _one_thread() -> None:
    """Workers build batches in Python: one torch thread each, or a GPU machine's cores are oversubscribed."""
    import torch

    torch.set_num_threads(1)


class Prefetcher:
    """get(step, length) returns data.batch_at(step, length); with workers > 0 the next 2 x workers
    steps at the same length are built in forked processes meanwhile (inline when workers == 0).

    The workers fork when this is made, so make it before CUDA starts."""

    def __init__(self, data, workers: int = 0):
        global _DATA
        _DATA = data
        self.data, self.ahead = data, 2 * workers
        self.pending: dict[tuple[int, int], Future] = {}
        self.pool = None
        if workers:
            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                            initializer=_one_thread)
            self.pool.submit(int).result()  # a fork context starts every worker on the first task

    def get(self, step: int, length: int):
        if self.pool is None:
            return self.data.batch_at(step, length)
        for key in [k for k in self.pending if k[0] < step or k[1] != length]:
            self.pending.pop(key).cancel()
        for s in range(step, step + self.ahead):
            if (s, length) not in self.pending:
                self.pending[(s, length)] = self.pool.submit(_build, s, length)
        return self.pending.pop((step, length)).result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
