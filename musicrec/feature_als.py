"""Collaborative features: implicit ALS on the pool's user x song (and user x artist) play counts.

The matrices hold play counts only, never labels, so the factors may see valid/test interactions
when `use_test_interactions` allows. A user or item with no pool row has no factor: its scores are
NaN (LightGBM routes NaN on its own), not 0, which would read as "neutral affinity".
"""
from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

CHUNK = 1 << 20  # rows per block when gathering factor rows, to bound memory


def play_matrix(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Sparse count matrix (duplicates summed), float32 CSR as implicit expects."""
    m = sp.coo_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape).tocsr()
    m.sum_duplicates()
    return m


def fit_als(matrix: sp.csr_matrix, acfg: dict, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """User and item factors of implicit's CPU ALS; BLAS kept to one thread as implicit asks."""
    from implicit.cpu.als import AlternatingLeastSquares

    with threadpool_limits(1, "blas"):  # the constructor checks it too, so both sit inside
        model = AlternatingLeastSquares(factors=acfg["factors"], regularization=acfg["regularization"],
                                        alpha=acfg["alpha"], iterations=acfg["iterations"],
                                        random_state=seed)
        model.fit(matrix, show_progress=False)
    return np.asarray(model.user_factors), np.asarray(model.item_factors)


def row_dot(a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """a[ia] . b[ib] for every row, in blocks."""
    out = np.empty(len(ia), dtype=np.float32)
    for lo in range(0, len(ia), CHUNK):
        hi = lo + CHUNK
        out[lo:hi] = np.einsum("ij,ij->i", a[ia[lo:hi]], b[ib[lo:hi]])
    return out


def seen(codes: np.ndarray, in_pool: np.ndarray) -> np.ndarray:
    """Per row: does its code have at least one pool row?"""
    return (np.bincount(codes[in_pool], minlength=int(codes.max()) + 1) > 0)[codes]


def nan_unless(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    return np.where(known, values, np.nan).astype(np.float32)


def als_features(work: pl.DataFrame, acfg: dict, seeds: tuple[int, int]) -> tuple[pl.DataFrame, list[dict]]:
    """als_user_song (+ als_user_artist, + factor dimensions) for every row of the frame."""
    in_pool = work["in_pool"].to_numpy().astype(bool)
    user = work["user"].to_numpy().astype(np.int64)
    user_known = seen(user, in_pool)
    cols, docs = {}, []
    items = [("song", seeds[0])] + ([("artist", seeds[1])] if acfg["user_artist"] else [])
    for item_col, seed in items:
        item = work[item_col].to_numpy().astype(np.int64)
        item_known = seen(item, in_pool)
        shape = (int(user.max()) + 1, int(item.max()) + 1)
        uf, vf = fit_als(play_matrix(user[in_pool], item[in_pool], shape), acfg, seed)
        cols[f"als_user_{item_col}"] = nan_unless(row_dot(uf, vf, user, item), user_known & item_known)
        docs.append({"name": f"als_user_{item_col}",
                     "description": f"ALS user . {item_col} factor score on the pool's user x {item_col} "
                                    f"play counts; NaN when the user or {item_col} has no pool row"})
        if item_col != "song":
            continue
        for who, factors, idx, known in (("user", uf, user, user_known), ("song", vf, item, item_known)):
            for d in range(acfg["factor_dims"]):
                cols[f"als_{who}_f{d}"] = nan_unless(factors[idx, d], known)
                docs.append({"name": f"als_{who}_f{d}", "description": f"ALS {who} factor {d} of the user x song "
                                                                       f"model; NaN for a {who} with no pool row"})
    for d in docs:
        d["nan"] = not bool(in_pool.all())
    return pl.DataFrame(cols), docs
