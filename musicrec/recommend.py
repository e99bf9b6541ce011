"""Top-k song lists by factor scores, and the popularity baseline every ranking family is judged against.

Factor lists are the best dot products of each user by implicit's own batched top-k (held to
implicit's `recommend` in the tests); the popularity lists, one order shared by every
user, by a search over each user's played songs in that order. Both are filtered the same way: no
song the user played in train, no song unseen in train.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

POPULARITY_METHODS = ("listeners", "damped")


def train_plays(user: np.ndarray, song: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Binary user x song matrix of train plays (what not to recommend again)."""
    m = sp.csr_matrix((np.ones(len(user), dtype=np.float32), (user, song)), shape=shape)
    m.data[:] = 1.0
    return m


def top_k_by_factors(user_factors: np.ndarray, item_factors: np.ndarray, k: int, plays: sp.csr_matrix,
                     filter_items: np.ndarray | None, n_threads: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, scores), each (users, min(k, items)): every user's highest float32 dot products among the
    items not in their `plays` row and not in `filter_items`, best first; -1 / NaN where fewer are left.

    implicit's own batched top-k (implicit.cpu.topk, what its recommend calls), given the play matrix
    of exactly these users: recommend itself slices the play matrix once per user while it holds the
    GIL, which costs as much as the scoring."""
    from implicit.cpu.topk import topk

    k = min(k, item_factors.shape[0])
    U = np.ascontiguousarray(user_factors, dtype=np.float32)
    V = np.ascontiguousarray(item_factors, dtype=np.float32)
    banned = np.unique(np.asarray(filter_items if filter_items is not None else [], dtype=np.int32))
    with threadpool_limits(1, "blas"):
        ids, sc = topk(V, U, k, filter_query_items=plays.tocsr() if plays.nnz else None,
                       filter_items=banned if len(banned) else None, num_threads=n_threads)
    ids, sc = np.asarray(ids, dtype=np.int64), np.asarray(sc, dtype=np.float64)
    gone = ~np.isfinite(sc) | (sc <= -0.5 * float(np.finfo(np.float32).max))   # implicit's mark of a filtered item
    return np.where(gone, -1, ids), np.where(gone, np.nan, sc)


def pad_lists(ids: np.ndarray, sc: np.ndarray, k: int, n_songs: int) -> tuple[np.ndarray, np.ndarray]:
    out_ids = np.full((ids.shape[0], k), -1, dtype=np.int64)
    out_sc = np.full((ids.shape[0], k), np.nan, dtype=np.float64)
    w = min(k, ids.shape[1])
    out_ids[:, :w], out_sc[:, :w] = ids[:, :w], sc[:, :w]
    bad = (out_ids < 0) | (out_ids >= n_songs) | ~np.isfinite(out_sc)
    out_ids[bad], out_sc[bad] = -1, np.nan  # fewer than k candidates
    return out_ids, out_sc


def popularity_scores(user: np.ndarray, song: np.ndarray, plays: np.ndarray, n_songs: int, method: str,
                      beta: float) -> np.ndarray:
    """Score per song from the train rows: distinct listeners, or the damped sum plays / (listeners + beta)."""
    key = np.unique(user.astype(np.int64) * n_songs + song)
    listeners = np.bincount(key % n_songs, minlength=n_songs).astype(np.float64)
    if method == "listeners":
        return listeners
    if method == "damped":
        total = np.bincount(song, weights=plays.astype(np.float64), minlength=n_songs)
        return total / (listeners + beta)
    raise ValueError(f"popularity method must be one of {', '.join(POPULARITY_METHODS)}")


def recommend_popular(scores: np.ndarray, users: np.ndarray, k: int, plays: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """The k best-scored train songs each user has not played in train (ties: lower song code first).

    Every user reads the same global order, so no song is scored per user: with q_i = p_i - i for
    the user's played positions p_0 < p_1 < ... in that order (the free places before the i-th),
    the user's j-th free place is j + #{i: q_i <= j}, found for every user and j by one search."""
    n_songs, users = len(scores), np.asarray(users, dtype=np.int64)
    order = np.lexsort((np.arange(n_songs), -scores))          # best first, ties by lower code
    cand = order[scores[order] > 0]                             # a song never played in train is never listed
    place = np.full(n_songs, -1, dtype=np.int64)
    place[cand] = np.arange(len(cand))
    rows = plays[users].tocsr()
    owner = np.repeat(np.arange(len(users)), np.diff(rows.indptr))
    pos = place[rows.indices]
    owner, pos = owner[pos >= 0], pos[pos >= 0]
    by = np.lexsort((pos, owner))
    owner, pos = owner[by], pos[by]
    start = np.searchsorted(owner, np.arange(len(users) + 1))
    span = len(cand) + k + 1
    key = owner * span + pos - (np.arange(len(pos)) - start[owner])   # sorted: q is nondecreasing per user
    j = np.arange(k)
    free = j + np.searchsorted(key, np.arange(len(users))[:, None] * span + j, side="right") - start[:-1, None]
    found = free < len(cand)                                    # else fewer than k songs are left to list
    ids = np.full(free.shape, -1, dtype=np.int64)
    ids[found] = cand[free[found]]
    out_sc = np.where(ids >= 0, scores[np.maximum(ids, 0)], np.nan)
    return ids, out_sc
