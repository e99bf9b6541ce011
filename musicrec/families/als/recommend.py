"""ALS's top-k lists and similar songs, through implicit's own recommend and similar_items."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from musicrec.recommend import pad_lists, top_k_by_factors


def recommend(model, users: np.ndarray, k: int, plays: sp.csr_matrix,
              n_threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(songs, scores), each (len(users), k), best first.

    Known users get the songs with the highest ALS score among songs seen in train that they have
    not played in train; users unseen in train get the most played train songs.
    """
    users = np.asarray(users, dtype=np.int64)
    n_songs = model.shape_[1]
    songs_out = np.full((len(users), k), -1, dtype=np.int64)
    scores_out = np.full((len(users), k), np.nan, dtype=np.float64)
    known = (users < model.shape_[0])
    known[known] &= model.user_count_[users[known]] > 0

    if known.any():
        rows = users[known]
        unseen_songs = np.flatnonzero(model.song_count_ == 0).astype(np.int32)
        ids, sc = top_k_by_factors(model.user_factors_[rows], model.item_factors_, k, plays[rows].tocsr(),
                                    unseen_songs, n_threads)
        songs_out[known], scores_out[known] = pad_lists(ids, sc, k, n_songs)

    if (~known).any():
        order = np.argsort(-model.song_count_, kind="stable")[:k]
        share = model.song_count_[order] / max(model.song_count_.sum(), 1.0)
        songs_out[~known, :len(order)], scores_out[~known, :len(order)] = order, share
    bad = (songs_out < 0) | (songs_out >= n_songs) | ~np.isfinite(scores_out)
    songs_out[bad], scores_out[bad] = -1, np.nan  # fewer than k candidates
    return songs_out, scores_out


def similar_songs(model, songs: np.ndarray, k: int, n_threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The k songs most similar to each of `songs` by cosine of the ALS item factors (implicit's
    similar_items; the song itself and songs unseen in train left out): (ids, cosines), each (len(songs), k)."""
    unseen = np.flatnonzero(model.song_count_ == 0)
    with threadpool_limits(1, "blas"):
        als = AlternatingLeastSquares(factors=model.item_factors_.shape[1], num_threads=n_threads)
        als.item_factors = np.ascontiguousarray(model.item_factors_, dtype=np.float32)
        als.user_factors = np.zeros((1, model.item_factors_.shape[1]), dtype=np.float32)
        ids, sc = als.similar_items(np.asarray(songs, dtype=np.int64), N=k + 1,
                                    filter_items=unseen if len(unseen) else None)
    ids, sc = np.atleast_2d(ids).astype(np.int64), np.atleast_2d(sc).astype(np.float64)
    not_self = ids != np.asarray(songs)[:, None]
    order = np.argsort(~not_self, axis=1, kind="stable")[:, :k]  # drop the song itself, keep rank order
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(sc, order, axis=1)
