"""Threads for numpy loops over millions of rows: numpy's kernels release the GIL, so independent
passes (a fold, a key, a block of rows) run side by side on one machine's cores."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def thread_map(work, items, threads: int) -> list:
    """[work(x) for x in items] on `threads` threads, results in input order. Each item must own its
    outputs (its rows, its fold), so that results do not depend on which thread finished first."""
    items = list(items)
    if threads <= 1 or len(items) <= 1:
        return [work(x) for x in items]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(work, items))


class RowBlocks:
    """A CSR matrix cut into one block of rows per thread, so that products with it run on every
    core: scipy's sparse product releases the GIL but uses one core, and each output row comes from
    the same loop either way (the result equals the single-threaded product to the bit)."""

    def __init__(self, matrix, threads: int | None = None):
        threads = max(1, min(threads or cores(), matrix.shape[0]))
        bounds = [round(i * matrix.shape[0] / threads) for i in range(threads + 1)]
        self.rows = [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
        self.blocks = [matrix[r] for r in self.rows]
        self.shape = matrix.shape

    def each(self, work) -> None:
        """work(block, rows) for every block on its own thread; each call writes only its rows."""
        thread_map(lambda i: work(self.blocks[i], self.rows[i]), range(len(self.blocks)), len(self.blocks))

    def __matmul__(self, dense):
        import numpy as np

        out = np.empty((self.shape[0], dense.shape[1]), dtype=np.result_type(self.blocks[0].dtype, dense.dtype))

        def product(block, rows: slice) -> None:
            out[rows] = block @ dense

        self.each(product)
        return out
