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
