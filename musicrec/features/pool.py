"""What the label-free families share: the pool's play matrix, per-group spans, NaN for the unseen.

The pool is the rows whose plays (never labels) may feed features: train rows always, valid/test
rows too when `features.use_test_interactions` is true.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from musicrec.parallel import cores, thread_map

CHUNK = 1 << 20  # rows per block when gathering factor rows, to bound memory


def pool_play_matrix(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Sparse count matrix (duplicates summed), float32 CSR as implicit expects."""
    m = sp.coo_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape).tocsr()
    m.sum_duplicates()
    return m


def unit_rows(f: np.ndarray) -> np.ndarray:
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def seen(codes: np.ndarray, in_pool: np.ndarray) -> np.ndarray:
    """Per row: does its code have at least one pool row?"""
    return (np.bincount(codes[in_pool], minlength=int(codes.max()) + 1) > 0)[codes]


def nan_unless(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    return np.where(known, values, np.nan).astype(np.float32)


def span(ids: np.ndarray, n_groups: int, t: np.ndarray, in_pool: np.ndarray
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: first and last pool t (0, 0 without pool rows) and the number of pool rows."""
    t = t.astype(np.int64)
    first = np.full(n_groups, np.iinfo(np.int64).max)
    last = np.full(n_groups, -1, dtype=np.int64)
    np.minimum.at(first, ids[in_pool], t[in_pool])
    np.maximum.at(last, ids[in_pool], t[in_pool])
    none = last < 0
    first[none], last[none] = 0, 0
    return first, last, np.bincount(ids[in_pool], minlength=n_groups)


def by_chunks(n: int, fill) -> None:
    """fill(rows) for consecutive slices of CHUNK rows, on every core; each call writes only its rows."""
    thread_map(fill, [slice(lo, min(lo + CHUNK, n)) for lo in range(0, n, CHUNK)], cores())
