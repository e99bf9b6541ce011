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

from musicrec.features.pool import by_chunks, nan_unless, pool_play_matrix, seen, unit_rows


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

    def fill(rows: slice) -> None:
        out[rows] = np.einsum("ij,ij->i", a[ia[rows]], b[ib[rows]])

    by_chunks(len(ia), fill)
    return out


def taste_similarity(matrix: sp.csr_matrix, item_unit: np.ndarray, user: np.ndarray, item: np.ndarray) -> np.ndarray:
    """Mean cosine between the row's item and the user's other pool items (item-kNN in factor space).

    The user's taste centroid is the sum of the unit item vectors of what the user played; the
    row's own item is taken out so that a single play does not look like a perfect match.
    """
    centroid = matrix @ item_unit
    plays = np.asarray(matrix.sum(axis=1)).ravel()
    out = np.empty(len(user), dtype=np.float32)

    def fill(rows: slice) -> None:
        u, i = user[rows], item[rows]
        own = np.asarray(matrix[u, i]).ravel()
        total = np.einsum("ij,ij->i", centroid[u], item_unit[i]) - own * 1.0
        out[rows] = total / np.maximum(plays[u] - own, 1.0)

    by_chunks(len(user), fill)
    return out


def als_features(work: pl.DataFrame, acfg: dict, seeds: tuple[int, int],
                 fitted: dict | None = None) -> tuple[pl.DataFrame, list[dict]]:
    """als_user_song (+ als_user_artist, + factor dimensions) for every row of the frame.

    `fitted`, when given, receives the user x song model's user factors (the taste clusters start
    from them)."""
    in_pool = work["in_pool"].to_numpy().astype(bool)
    user = work["user"].to_numpy().astype(np.int64)
    user_known = seen(user, in_pool)
    cols, docs = {}, []
    items = [("song", seeds[0])] + ([("artist", seeds[1])] if acfg["user_artist"] else [])
    for item_col, seed in items:
        item = work[item_col].to_numpy().astype(np.int64)
        item_known = seen(item, in_pool)
        shape = (int(user.max()) + 1, int(item.max()) + 1)
        matrix = pool_play_matrix(user[in_pool], item[in_pool], shape)
        uf, vf = fit_als(matrix, acfg, seed)
        if fitted is not None and item_col == "song":
            fitted["user_factors"] = uf
        known = user_known & item_known
        cols[f"als_user_{item_col}"] = nan_unless(row_dot(uf, vf, user, item), known)
        cols[f"als_cos_user_{item_col}"] = nan_unless(row_dot(unit_rows(uf), unit_rows(vf), user, item), known)
        cols[f"als_knn_user_{item_col}"] = nan_unless(taste_similarity(matrix, unit_rows(vf), user, item), known)
        docs += [{"name": f"als_user_{item_col}",
                  "description": f"ALS user . {item_col} factor score on the pool's user x {item_col} "
                                 f"play counts; NaN when the user or {item_col} has no pool row"},
                 {"name": f"als_cos_user_{item_col}",
                  "description": f"cosine of the ALS user and {item_col} factors (taste match without the "
                                 f"{item_col}'s popularity); NaN when either has no pool row"},
                 {"name": f"als_knn_user_{item_col}",
                  "description": f"mean cosine of the {item_col}'s ALS factor with those of the user's other "
                                 f"pool {item_col}s (item-kNN taste match); NaN when either has no pool row"}]
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
