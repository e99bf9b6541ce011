"""Dense group ids for the keys features are grouped by, computed once and shared by every family.

Grouping with numpy bincount on a dense id is several times faster than polars window expressions
at KKBOX scale on two cores (10M rows: ~0.1 s per sum against ~4 s per `.over`), and a key such as
user x artist is needed by counts, target statistics and time features alike.
"""
from __future__ import annotations

import numpy as np
import polars as pl

from musicrec.parallel import cores, thread_map

I64_MAX = np.iinfo(np.int64).max


def mixed_radix(work: pl.DataFrame, cols: tuple[str, ...]) -> tuple[np.ndarray, int]:
    """One int64 code per row for the combination of `cols`, and the number of possible codes."""
    code = np.zeros(work.height, dtype=np.int64)
    size = 1
    for col in cols:
        v = work[col].to_numpy().astype(np.int64)
        if v.size and v.min() < 0:
            raise ValueError(f"column {col} has negative codes; stage 01 codes start at 0")
        radix = int(v.max()) + 1 if v.size else 1
        if size > I64_MAX // radix:
            raise OverflowError(f"key {' x '.join(cols)} has too many possible values for int64")
        code, size = code * radix + v, size * radix
    return code, size


def densify(code: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """Codes renumbered 0..G-1 in increasing order: by a presence table when the code range is
    small, else by sorting (both give the same ids)."""
    if size <= max(4 * code.size, 1 << 20):
        present = np.bincount(code, minlength=size) > 0
        remap = np.cumsum(present) - 1
        return remap[code], int(present.sum())
    order = np.argsort(code)
    sorted_code = code[order]
    new = np.empty(code.size, dtype=bool)
    new[:1] = True
    np.not_equal(sorted_code[1:], sorted_code[:-1], out=new[1:])
    dense = np.empty(code.size, dtype=np.int64)
    dense[order] = np.cumsum(new) - 1
    return dense, int(new.sum())


class KeyCodes:
    """Dense id per row for a tuple of columns, cached: `ids, n_groups = keys(("user", "artist"))`."""

    def __init__(self, work: pl.DataFrame):
        self.work = work
        self._cache: dict[tuple[str, ...], tuple[np.ndarray, int]] = {}

    def __call__(self, cols: tuple[str, ...]) -> tuple[np.ndarray, int]:
        cols = tuple(cols)
        if cols not in self._cache:
            self._cache[cols] = self._codes(cols)
        return self._cache[cols]

    def prepare(self, groupings) -> None:
        """The codes of several keys computed side by side, one key per core (numpy's sorts and
        arithmetic release the GIL); the cache itself is filled by the calling thread only."""
        todo = list(dict.fromkeys(tuple(c) for c in groupings if tuple(c) not in self._cache))
        for cols, got in zip(todo, thread_map(self._codes, todo, cores())):
            self._cache[cols] = got

    def _codes(self, cols: tuple[str, ...]) -> tuple[np.ndarray, int]:
        ids, n_groups = densify(*mixed_radix(self.work, cols))
        return (ids.astype(np.int32) if n_groups < 2**31 else ids), n_groups


def group_sum(ids: np.ndarray, n_groups: int, values: np.ndarray) -> np.ndarray:
    """Per row, the sum of `values` over the rows of its group."""
    return np.bincount(ids, weights=values, minlength=n_groups)[ids]
