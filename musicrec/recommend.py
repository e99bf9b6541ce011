"""Top-k song recommendations from the ALS model, with a popularity list for unseen users."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from musicrec.models.als import ALSModel


def train_plays(user: np.ndarray, song: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Binary user x song matrix of train plays (what not to recommend again)."""
    m = sp.csr_matrix((np.ones(len(user), dtype=np.float32), (user, song)), shape=shape)
    m.data[:] = 1.0
    return m


def implicit_model(model: ALSModel, n_threads: int) -> AlternatingLeastSquares:
    """implicit's own model holding our fitted factors, so that its public `recommend` ranks them."""
    als = AlternatingLeastSquares(factors=model.item_factors_.shape[1], num_threads=n_threads)
    als.user_factors = model.user_factors_.astype(np.float32)
    als.item_factors = model.item_factors_.astype(np.float32)
    return als


def recommend(model: ALSModel, users: np.ndarray, k: int, plays: sp.csr_matrix,
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
        with threadpool_limits(1, "blas"):  # implicit's constructor checks it, so both sit inside
            ids, sc = implicit_model(model, n_threads).recommend(
                rows, plays[rows].tocsr(), N=k, filter_already_liked_items=True,
                filter_items=unseen_songs if len(unseen_songs) else None)
        songs_out[known], scores_out[known] = ids, sc

    if (~known).any():
        order = np.argsort(-model.song_count_, kind="stable")[:k]
        share = model.song_count_[order] / max(model.song_count_.sum(), 1.0)
        songs_out[~known], scores_out[~known] = order, share
    bad = (songs_out < 0) | (songs_out >= n_songs) | ~np.isfinite(scores_out)
    songs_out[bad], scores_out[bad] = -1, np.nan  # fewer than k candidates
    return songs_out, scores_out
