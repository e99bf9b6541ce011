"""Implicit ALS as a model of its own, calibrated to a replay probability.

The play matrix holds +1 for replayed and -1 for not-replayed train rows; implicit reads a negative
entry as "preference 0 with confidence alpha", a positive one as "preference 1 with confidence
alpha", and every unobserved cell as preference 0 with confidence 1. After implicit's alternating
fit, the user factors are recomputed by one exact (Cholesky, float64) least-squares half-step
against the final item factors, so a user's vector is exactly the solution that influence analysis
downdates. Rows of users or songs unseen in train fall back to song popularity; a 3-feature
logistic calibration fitted on the validation split turns (score, known, popularity) into P(replay).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from implicit.als import AlternatingLeastSquares
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from musicrec.models.base import FeatureSet, Model, two_columns
from musicrec.parallel import thread_map


def signed_label_matrix(user: np.ndarray, song: np.ndarray, y: np.ndarray, shape: tuple[int, int],
                sample_weight: np.ndarray | None = None) -> sp.csr_matrix:
    """+w for replays, -w for non-replays; rows of weight 0 are left out."""
    value = np.where(y == 1, 1.0, -1.0)
    if sample_weight is not None:
        value = value * sample_weight
    keep = value != 0
    m = sp.csr_matrix((value[keep], (user[keep], song[keep])), shape=shape, dtype=np.float64)
    m.sum_duplicates()
    return m


WEIGHTINGS = ("signed", "log", "bm25", "tfidf")
CALIBRATION_TOL = 1e-10  # a warm-started calibration's Newton steps stop here (2-3 steps)
SCORE_CHUNK = 65_536  # pairs scored at a time (5M pairs at once took 13 s, in chunks 1.8 s)


def confidence_matrix(user: np.ndarray, song: np.ndarray, plays: np.ndarray, shape: tuple[int, int],
                      weighting: str, bm25_k1: float = 100.0, bm25_b: float = 0.8,
                      sample_weight: np.ndarray | None = None) -> sp.csr_matrix:
    """Play counts per (user, song) weighted as implicit provides it; implicit then uses 1 + alpha * value.

    log: log(1 + plays); bm25: implicit's bm25_weight(K1, B); tfidf: implicit's tfidf_weight.
    """
    from implicit.nearest_neighbours import bm25_weight, tfidf_weight

    value = plays.astype(np.float64) * (1.0 if sample_weight is None else np.asarray(sample_weight, np.float64))
    keep = value > 0
    m = sp.csr_matrix((value[keep], (user[keep], song[keep])), shape=shape, dtype=np.float64)
    m.sum_duplicates()
    if weighting == "log":
        m.data = np.log1p(m.data)
        return m
    if weighting == "bm25":
        return bm25_weight(m, K1=bm25_k1, B=bm25_b).tocsr()
    if weighting == "tfidf":
        return tfidf_weight(m).tocsr()
    raise ValueError(f"ALS weighting must be one of {', '.join(WEIGHTINGS)}")


class ALSModel(Model):
    """weighting "signed" (default): +1 replayed, -1 not replayed, the classification view that stage
    06's exact influence downdates. "log" / "bm25" / "tfidf": the ranking view of the seed projects,
    plays per (user, song) = 1 + replay target (or the play count where the source has one), weighted."""

    name = "als"

    def __init__(self, factors=64, iterations=15, regularization=0.1, alpha=2.0, weighting="signed",
                 bm25_k1=100.0, bm25_b=0.8, n_jobs=2, random_state=0):
        self.factors, self.iterations, self.regularization = factors, iterations, regularization
        self.alpha, self.n_jobs, self.random_state = alpha, n_jobs, random_state
        self.weighting, self.bm25_k1, self.bm25_b = weighting, bm25_k1, bm25_b

    # -- fitting -------------------------------------------------------------------------------
    def fit_prepared(self, prepared, sample_weight=None, init=None) -> "ALSModel":
        """`init`, a fitted ALSModel of the same shape, warm-starts implicit's sweeps from its
        factors (iterations 0: only the exact user solve, the item factors kept)."""
        train, valid = prepared
        user, song = self._ids(train)
        self.shape_ = (int(user.max()) + 1, int(song.max()) + 1)
        R = self.play_matrix(user, song, self.entry_plays(train), sample_weight)
        with threadpool_limits(1, "blas"):
            model = self.implicit_model()
            if init is not None:   # warm start: implicit fits on from the factors it finds set
                model.user_factors = init.user_factors_.astype(np.float32)
                model.item_factors = init.item_factors_.astype(np.float32)
            if self.iterations > 0:
                model.fit(R.astype(np.float32), show_progress=False)
            self.item_factors_ = model.item_factors.astype(np.float64)
            self.user_factors_ = self.solve_users(R)
        return self.fit_calibration(user, song, sample_weight, valid if valid is not None else train, init)

    def implicit_model(self, **kw) -> AlternatingLeastSquares:
        """implicit's model with this one's arguments (its solver is the sweep the set model repeats)."""
        return AlternatingLeastSquares(**{"factors": self.factors, "regularization": self.regularization,
                                          "alpha": self.alpha, "iterations": self.iterations,
                                          "random_state": self.random_state, "use_gpu": False,
                                          "num_threads": self.n_jobs, **kw})

    def play_matrix(self, user: np.ndarray, song: np.ndarray, entries: np.ndarray,
                    sample_weight: np.ndarray | None = None) -> sp.csr_matrix:
        """The (user, song) matrix implicit fits, under this model's weighting (rows of weight 0 left out)."""
        if self.weighting == "signed":
            return signed_label_matrix(user, song, entries, self.shape_, sample_weight)
        return confidence_matrix(user, song, entries, self.shape_, self.weighting, self.bm25_k1, self.bm25_b,
                                 sample_weight)

    def set_counts(self, user: np.ndarray, song: np.ndarray, sample_weight=None) -> "ALSModel":
        """The play counts of the rows kept (weight > 0): who is known and which songs may be listed."""
        w = np.ones(len(user)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        self.song_count_ = np.bincount(song, weights=(w > 0).astype(np.float64), minlength=self.shape_[1])
        self.user_count_ = np.bincount(user, weights=(w > 0).astype(np.float64), minlength=self.shape_[0])
        return self

    def fit_calibration(self, user: np.ndarray, song: np.ndarray, sample_weight, calib: FeatureSet,
                        init: "ALSModel | None" = None) -> "ALSModel":
        """The play counts of the rows kept and the 3-feature logistic calibration on `calib`. Warm-started
        from `init`'s, Newton steps to a tight tolerance: lbfgs at its default tolerance takes no step from
        a start that close, which would leave the calibration fixed."""
        self.set_counts(user, song, sample_weight)
        # untimed play counts: every row a positive, nothing to calibrate (min/max: np.unique would sort the split)
        if not len(calib.y) or calib.y.min() == calib.y.max():
            self.calibration_coef_, self.calibration_intercept_ = np.array([1.0, 0.0, 0.0]), 0.0
            return self
        lr = LogisticRegression(C=1e4, max_iter=1000)
        if init is not None:
            lr.set_params(warm_start=True, solver="newton-cholesky", tol=CALIBRATION_TOL)
            lr.coef_, lr.intercept_ = init.calibration_coef_[None, :].copy(), np.array([init.calibration_intercept_])
        lr.fit(self.calibration_features(calib), calib.y)
        self.calibration_coef_, self.calibration_intercept_ = lr.coef_.ravel().copy(), float(lr.intercept_[0])
        return self

    def entry_plays(self, data: FeatureSet) -> np.ndarray:
        """What each row puts in the matrix before weighting: the target under `signed` (+1 / -1),
        else the play count where the source has one, else 1 + the replay target."""
        if self.weighting == "signed":
            return data.y.astype(np.float64)
        return (data.keys["plays"].to_numpy() if "plays" in data.keys.columns else 1 + data.y).astype(np.float64)

    def solve_users(self, R: sp.csr_matrix) -> np.ndarray:
        """Exact float64 least-squares user factors against the current item factors (implicit's Cholesky)."""
        with threadpool_limits(1, "blas"):  # implicit checks (and warns) in its constructor
            solver = self.implicit_model(dtype=np.float64)
            solver.item_factors = self.item_factors_
            return solver.recalculate_user(np.arange(R.shape[0]), R)

    # -- prediction ----------------------------------------------------------------------------
    def _ids(self, data: FeatureSet) -> tuple[np.ndarray, np.ndarray]:
        return data.keys["user"].to_numpy().astype(np.int64), data.keys["song"].to_numpy().astype(np.int64)

    def known(self, user: np.ndarray, song: np.ndarray) -> np.ndarray:
        ok = (user < self.shape_[0]) & (song < self.shape_[1])
        ok[ok] &= (self.user_count_[user[ok]] > 0) & (self.song_count_[song[ok]] > 0)
        return ok

    def scores(self, user: np.ndarray, song: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """user·song score (0 where user or song is unseen) and the known mask."""
        known = self.known(user, song)
        score = np.zeros(len(user))
        rows = np.flatnonzero(known)

        def chunk(start: int) -> None:   # gathered factors of millions of pairs: GBs at once
            r = rows[start:start + SCORE_CHUNK]
            score[r] = np.einsum("ij,ij->i", self.user_factors_[user[r]], self.item_factors_[song[r]])

        # numpy's gathers and einsum release the GIL: the chunks on the model's threads
        thread_map(chunk, range(0, len(rows), SCORE_CHUNK), max(1, int(self.n_jobs)))
        return score, known

    def calibration_features(self, data: FeatureSet) -> np.ndarray:
        return self.pair_features(*self._ids(data))

    def pair_features(self, user: np.ndarray, song: np.ndarray) -> np.ndarray:
        """score, known, log(1 + song plays): what the calibration sees of each (user, song)."""
        score, known = self.scores(user, song)
        pop = np.zeros(len(song))
        inside = song < self.shape_[1]
        pop[inside] = np.log1p(self.song_count_[song[inside]])
        return np.column_stack([score, known.astype(np.float64), pop])

    def predict_logit(self, data: FeatureSet) -> np.ndarray:
        return self.calibration_features(data) @ self.calibration_coef_ + self.calibration_intercept_

    def predict_proba(self, data: FeatureSet) -> np.ndarray:
        return two_columns(1.0 / (1.0 + np.exp(-self.predict_logit(data))))

    # -- ranking -------------------------------------------------------------------------------
    def recommend(self, users: np.ndarray, k: int, plays: sp.csr_matrix, n_threads: int = 2):
        """(songs, scores) of the k best songs per user, each (len(users), k); see als.recommend."""
        from musicrec.families.als.recommend import recommend

        return recommend(self, users, k, plays, n_threads)

    def similar(self, songs: np.ndarray, k: int, n_threads: int = 2):
        """(songs, cosines) of the k songs most similar to each of `songs`; see als.recommend."""
        from musicrec.families.als.recommend import similar_songs

        return similar_songs(self, songs, k, n_threads)

    # -- persistence ---------------------------------------------------------------------------
    def save(self, folder: Path) -> list[str]:
        # uncompressed: float64 factors hardly compress (65 of 115 MB at KKBOX size) and zlib took 11 s of 04
        np.savez(folder / "als.npz", user_factors=self.user_factors_, item_factors=self.item_factors_,
                            user_count=self.user_count_, song_count=self.song_count_,
                            calibration_coef=self.calibration_coef_,
                            calibration_intercept=np.array([self.calibration_intercept_]))
        (folder / "als.json").write_text(json.dumps(self.init_args(), indent=2) + "\n")
        return ["als.npz", "als.json"]

    @classmethod
    def load(cls, folder: Path) -> "ALSModel":
        m = cls(**json.loads((folder / "als.json").read_text()))
        z = np.load(folder / "als.npz")
        m.user_factors_, m.item_factors_ = z["user_factors"], z["item_factors"]
        m.user_count_, m.song_count_ = z["user_count"], z["song_count"]
        m.shape_ = (m.user_factors_.shape[0], m.item_factors_.shape[0])
        m.calibration_coef_, m.calibration_intercept_ = z["calibration_coef"], float(z["calibration_intercept"][0])
        return m

    def info(self) -> dict:
        return {"users": self.shape_[0], "songs": self.shape_[1], "calibration": {
            "coef": self.calibration_coef_.tolist(), "intercept": self.calibration_intercept_}}
