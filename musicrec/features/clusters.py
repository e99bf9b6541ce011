"""Taste clusters: a mixture model of who plays what, fitted on the pool's user x song play counts.

Each song belongs (softly) to one of K clusters; each user plays cluster c with probability
theta_u[c], and within a cluster a song in proportion to its plays. EM alternates
theta = smoothed user x cluster play shares and the song posteriors
log R_s[c] = sum over the song's players of log theta_u[c] - n_s log N_c + log pi_c.
It starts from k-means on the ALS user factors (when ALS ran), else from random posteriors.
Plays only, never labels, so the clusters may see valid/test interactions like ALS does.

Label-free features: the user's share of plays in the song's cluster (with and without the pair
itself) and the song's share of its cluster's plays since it first appeared. Label features
(out-of-fold like every target statistic): per song cluster, a ridge regression of the replay label
on the user's cluster shares, which learns how a taste for one cluster carries to another.
"""
from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.cluster import KMeans

from musicrec.features.pool import by_chunks, nan_unless, pool_play_matrix, seen, span, unit_rows
from musicrec.parallel import RowBlocks


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, in place."""
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def user_shares(matrix: sp.csr_matrix | RowBlocks, post: np.ndarray, smoothing: float) -> np.ndarray:
    """theta: each user's smoothed share of plays per cluster (rows sum to 1)."""
    k = post.shape[1]
    nuc = matrix @ post
    return (nuc + smoothing) / (nuc.sum(axis=1, keepdims=True) + k * smoothing)


def song_posteriors(matrix_t: RowBlocks, theta: np.ndarray, post: np.ndarray, plays: np.ndarray) -> np.ndarray:
    """The E-step: every song's cluster posteriors given the users' shares, a block of songs per core."""
    cluster_plays = plays @ post
    log_nc = np.log(cluster_plays + 1e-9)
    prior = np.log(cluster_plays / max(cluster_plays.sum(), 1e-9) + 1e-12)
    log_theta = np.log(theta)
    out = np.empty_like(post)

    def block(songs: sp.csr_matrix, rows: slice) -> None:
        logits = songs @ log_theta
        logits -= plays[rows, None] * log_nc[None, :]
        logits += prior[None, :]
        out[rows] = softmax_rows(logits)

    matrix_t.each(block)
    return out


def initial_posteriors(matrix: sp.csr_matrix, matrix_t: RowBlocks, k: int, rng: np.random.Generator,
                       user_factors: np.ndarray | None) -> np.ndarray:
    """Song posteriors to start EM from: the songs' players grouped by k-means on ALS user factors."""
    n_users, n_songs = matrix.shape
    played = np.asarray(matrix.sum(axis=1)).ravel() > 0
    if user_factors is None or played.sum() < k:
        return rng.dirichlet(np.ones(k), size=n_songs)
    km = KMeans(k, n_init=1, random_state=int(rng.integers(2**31 - 1))).fit(unit_rows(user_factors[played]))
    theta = np.full((n_users, k), 0.02)
    theta[np.flatnonzero(played), km.labels_] = 1.0
    theta /= theta.sum(axis=1, keepdims=True)
    return softmax_rows(matrix_t @ np.log(theta))


def fit_clusters(matrix: sp.csr_matrix, ccfg: dict, rng: np.random.Generator,
                 user_factors: np.ndarray | None = None) -> np.ndarray:
    """Soft song clusters R (songs x K) by EM."""
    plays = np.asarray(matrix.sum(axis=0)).ravel()
    users, songs = RowBlocks(matrix), RowBlocks(matrix.T.tocsr())
    post = initial_posteriors(matrix, songs, ccfg["k"], rng, user_factors)
    for _ in range(ccfg["iterations"]):
        post = song_posteriors(songs, user_shares(users, post, ccfg["smoothing"]), post, plays)
    return post


class Taste:
    """The fitted clusters and what the row features need of them."""

    def __init__(self, work: pl.DataFrame, ccfg: dict, rng: np.random.Generator,
                 user_factors: np.ndarray | None = None):
        self.in_pool = work["in_pool"].to_numpy().astype(bool)
        self.user = work["user"].to_numpy().astype(np.int64)
        self.song = work["song"].to_numpy().astype(np.int64)
        self.t = work["time_order"].to_numpy().astype(np.int64)
        self.smoothing, self.k = ccfg["smoothing"], ccfg["k"]
        shape = (int(self.user.max()) + 1, int(self.song.max()) + 1)
        self.matrix = pool_play_matrix(self.user[self.in_pool], self.song[self.in_pool], shape)
        self.post = fit_clusters(self.matrix, ccfg, rng, user_factors)
        self.user_plays = self.matrix @ self.post                      # users x K, soft play counts
        self.theta = user_shares(self.matrix, self.post, self.smoothing)
        self.song_cluster = self.post.argmax(axis=1)[self.song].astype(np.int32)   # per row
        self.user_cluster = self.user_plays.argmax(axis=1)[self.user].astype(np.int32)
        self.known = seen(self.user, self.in_pool) & seen(self.song, self.in_pool)

    def label_free(self) -> tuple[pl.DataFrame, list[dict]]:
        n, k, a = len(self.user), self.k, self.smoothing
        own = np.asarray(self.matrix[self.user, self.song]).ravel()
        with_pair = np.empty(n, np.float32)
        without_pair = np.empty(n, np.float32)
        top = np.empty(n, np.float32)

        def fill(rows: slice) -> None:
            u, s, o = self.user[rows], self.song[rows], own[rows]
            r = self.post[s]
            with_pair[rows] = (r * self.theta[u]).sum(axis=1)
            rest = self.user_plays[u] - o[:, None] * r                 # the user's plays but this pair
            th = (rest + a) / (rest.sum(axis=1, keepdims=True) + k * a)
            without_pair[rows] = (r * th).sum(axis=1)
            top[rows] = th[np.arange(len(s)), r.argmax(axis=1)]

        by_chunks(n, fill)
        cols = {"taste_match": with_pair, "taste_match_other": without_pair, "taste_top_share": top,
                "song_cluster_share": self.cluster_share()}
        cols = {name: nan_unless(v, self.known) for name, v in cols.items()}
        docs = [{"name": "taste_match", "description": "user's share of pool plays in the song's taste cluster "
                 "(soft: sum over clusters of the song's membership x the user's share); NaN when the user or "
                 "song has no pool row"},
                {"name": "taste_match_other", "description": "taste_match from the user's other pool plays "
                 "(this pair left out); NaN when the user or song has no pool row"},
                {"name": "taste_top_share", "description": "user's share (this pair left out) of the song's "
                 "most likely cluster; NaN when the user or song has no pool row"},
                {"name": "song_cluster_share", "description": "song's pool plays / pool plays of its cluster since "
                 "the song's first pool play (popularity within its niche); NaN when the user or song has no "
                 "pool row"}]
        for d in docs:
            d["nan"] = not bool(self.in_pool.all())
        return pl.DataFrame(cols), docs

    def cluster_share(self) -> np.ndarray:
        """Song's pool plays over its cluster's pool plays since the song's first pool play."""
        pool = self.in_pool
        n_songs = self.matrix.shape[1]
        first, _, plays = span(self.song, n_songs, self.t, pool)   # songs without pool plays: NaN later
        m = int(self.t.max()) + 1
        cl = self.song_cluster.astype(np.int64)
        comp = np.sort(cl[pool] * m + self.t[pool])
        song_cl = np.zeros(n_songs, np.int64)
        song_cl[self.song] = cl
        start = song_cl * m + first
        since = np.searchsorted(comp, song_cl * m + m) - np.searchsorted(comp, start)
        return (plays / np.maximum(since, 1))[self.song]

    def regression(self, work: pl.DataFrame, k_folds: int, lam: float) -> tuple[pl.DataFrame, list[dict]]:
        """Out-of-fold ridge of y on [theta_u, 1] per song cluster (fold K = non-train rows: all train)."""
        y = work["y"].to_numpy().astype(np.float64)
        w = work["labelled"].to_numpy().astype(np.float64)
        fold = work["fold"].to_numpy().astype(np.int64)
        k, d1 = self.k, self.k + 1
        group = self.song_cluster.astype(np.int64) * (k_folds + 1) + fold
        a_mat = np.zeros((k * (k_folds + 1), d1, d1))
        b_vec = np.zeros((k * (k_folds + 1), d1))
        rows = np.flatnonzero(w > 0)
        order = rows[np.argsort(group[rows], kind="stable")]
        bounds = np.flatnonzero(np.diff(group[order])) + 1
        for idx in np.split(order, bounds):   # one block per (cluster, fold): K x (folds + 1) at most
            if not len(idx):
                continue
            x = np.hstack([self.theta[self.user[idx]], np.ones((len(idx), 1))])
            a_mat[group[idx[0]]] = (x * w[idx, None]).T @ x
            b_vec[group[idx[0]]] = (x * w[idx, None]).T @ y[idx]
        a_mat = a_mat.reshape(k, k_folds + 1, d1, d1)
        b_vec = b_vec.reshape(k, k_folds + 1, d1)
        reg = lam * np.eye(d1)
        reg[-1, -1] = 1e-6
        coef = np.linalg.solve(a_mat.sum(axis=1, keepdims=True) - a_mat + reg,
                               (b_vec.sum(axis=1, keepdims=True) - b_vec)[..., None])[..., 0]
        out = np.empty(len(y), np.float32)

        def fill(rows: slice) -> None:
            c = coef[self.song_cluster[rows], fold[rows]]
            out[rows] = np.einsum("ij,ij->i", self.theta[self.user[rows]], c[:, :-1]) + c[:, -1]

        by_chunks(len(y), fill)
        doc = {"name": "te_taste_regression", "nan": False,
               "description": f"replay rate predicted from the user's cluster shares by a ridge regression "
                              f"(lambda={lam:g}) per song cluster; out-of-fold on train, full train elsewhere"}
        return pl.DataFrame({"te_taste_regression": out}), [doc]
