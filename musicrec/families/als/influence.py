"""ALS: exact downdate of the user's least-squares solve (Sherman-Morrison), item factors fixed.

User u's vector solves A_u x = b_u with A_u = Y'Y + lambda I + sum_i (c - 1) y_i y_i' and
b_u = sum over replayed i of c y_i (c = alpha). Removing interaction (u, i) is a rank-one change:
with q = A_u^-1 y_i and s = y_i' q, x' - x = kappa q,
kappa = -c p + (c - 1) (y_i' x - c p s) / (1 - (c - 1) s), p = 1 if the row was a replay.
The user's test rows move by a * kappa q' y_j (a = the calibration weight of the score); the song
loses one play, which moves the popularity feature of every test row of that song. Both effects
are computed exactly (every affected test row re-scored), per user, with the item factors and the
calibration held fixed. The loop runs over users (entities), each step is dense linear algebra.
"""
from __future__ import annotations

import numpy as np
from implicit.als import AlternatingLeastSquares
from scipy.linalg import cho_factor, cho_solve
from threadpoolctl import threadpool_limits

from musicrec.influence.base import Estimator, model_threads
from musicrec.parallel import thread_map
from musicrec.influence.losses import loss_change
from musicrec.config import ConfigError
from musicrec.families.als.model import signed_label_matrix
from musicrec.families.als.sets import WarmSweeps


def _groups(keys: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row order sorted by key and the start offset of every key value 0..n."""
    order = np.argsort(keys, kind="stable")
    return order, np.searchsorted(keys[order], np.arange(n + 1))


class ALSInfluence(Estimator):
    name = "als"
    method = "exact Sherman-Morrison downdate of the user's solve (item factors, calibration fixed)"

    def __init__(self, model, train, test):
        self.u = train.keys["user"].to_numpy().astype(np.int64)
        self.i = train.keys["song"].to_numpy().astype(np.int64)
        self.p = train.y.astype(np.float64)
        self.test_user = test.keys["user"].to_numpy().astype(np.int64)
        self.test_song = test.keys["song"].to_numpy().astype(np.int64)
        pairs = self.u * (int(self.i.max()) + 1) + self.i
        repeated = len(pairs) - len(np.unique(pairs))
        if repeated:
            raise ValueError(f"ALS influence needs each (user, song) pair once in train (as in KKBOX); "
                             f"{repeated} rows repeat a pair")
        if getattr(model, "weighting", "signed") != "signed":
            raise ConfigError(f"ALS influence needs train.als.weighting: signed (the model was fitted with "
                             f"{model.weighting}); leave als out of influence.models")
        self.c = float(model.alpha)
        self.threads = model_threads(model)
        self.Y = model.item_factors_
        self.a_score, self.a_known, self.a_pop = model.calibration_coef_
        super().__init__(model, train, test)
        n_users = max(model.shape_[0], int(self.test_user.max()) + 1)
        n_songs = max(model.shape_[1], int(self.test_song.max()) + 1)
        self.score, self.known = model.scores(self.test_user, self.test_song)
        self.user_rows = _groups(self.u, n_users)
        self.user_tests = _groups(np.minimum(self.test_user, n_users - 1), n_users)
        self.song_tests = _groups(np.minimum(self.test_song, n_songs - 1), n_songs)
        self.YtY = self.Y.T @ self.Y + model.regularization * np.eye(self.Y.shape[1])
        self.song_part = self._song_effects()

    def _calibrated(self, F: np.ndarray) -> np.ndarray:
        """Logits from the model's calibration features (score, known, popularity)."""
        return F @ self.model.calibration_coef_ + self.model.calibration_intercept_

    def test_logits(self) -> np.ndarray:
        return self._calibrated(self.model.calibration_features(self.test))

    # -- the song side: one play fewer ------------------------------------------------------------
    def _song_delta(self, song: int, j: np.ndarray) -> np.ndarray:
        """Logit change of test rows j (all of song `song`) when the song loses one train play."""
        n = self.model.song_count_[song] if song < len(self.model.song_count_) else 0.0
        if n >= 2:
            return np.full(len(j), self.a_pop * (np.log1p(n - 1) - np.log1p(n)))
        # the song's last play: it becomes unseen (score 0, known 0, popularity 0)
        return -(self.a_score * self.score[j] + self.a_known * self.known[j] + self.a_pop * np.log1p(n))

    def _song_effects(self) -> dict[str, np.ndarray]:
        """Per song with train plays: total exact log-loss change and first-order AUC change."""
        order, start = self.song_tests
        n = len(self.model.song_count_)
        out = {"logloss": np.zeros(n), "auc": np.zeros(n)}
        for song in np.flatnonzero(self.model.song_count_ > 0):
            if song + 1 >= len(start):
                continue
            j = order[start[song]:start[song + 1]]
            j = j[self.test_song[j] == song]
            if len(j) == 0:
                continue
            d = self._song_delta(int(song), j)
            out["logloss"][song] = (loss_change(self.y_test[j], self.f_test[j], d)
                                    * self.test_weights[j]).sum() / len(self.f_test)
            out["auc"][song] = self.directions["auc"][j] @ d
        return out

    # -- the user side: Sherman-Morrison ----------------------------------------------------------
    def _user(self, user: int):
        """Train rows r of the user, the Cholesky factor of A_u, and Q = A_u^-1 Y_r'."""
        order, start = self.user_rows
        r = order[start[user]:start[user + 1]]
        Yr = self.Y[self.i[r]]
        A = self.YtY + (self.c - 1.0) * (Yr.T @ Yr)
        cho = cho_factor(A)
        return r, Yr, cho_solve(cho, Yr.T)

    def _user_tests(self, user: int) -> np.ndarray:
        order, start = self.user_tests
        if user + 1 >= len(start):
            return np.zeros(0, dtype=np.int64)
        j = order[start[user]:start[user + 1]]
        return j[self.test_user[j] == user]

    def _same_song(self, r: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) index pairs where removed row r[a] and test row j[b] are the same song (rare)."""
        return np.nonzero(self.test_song[j][None, :] == self.i[r][:, None])

    def _user_deltas(self, user: int, r: np.ndarray, Yr: np.ndarray, Q: np.ndarray, j: np.ndarray,
                     kappa: np.ndarray | None = None, same=None) -> np.ndarray:
        """(len(r), len(j)) logit changes of the user's test rows j when each row r is removed."""
        if len(r) == 1:  # the user's only play: the user becomes unseen
            delta = -(self.a_score * self.score[j] + self.a_known * self.known[j])[None, :]
        else:
            if kappa is None:
                kappa = self._kappa(user, r, Yr, Q)[0]
            delta = self.a_score * kappa[:, None] * (Q.T @ self.Y[np.minimum(self.test_song[j], len(self.Y) - 1)].T)
            delta *= self.known[j][None, :]
        # a test row of the removed row's own song also loses that song's play
        for a, b in zip(*(self._same_song(r, j) if same is None else same)):
            delta[a, b] += self._song_delta(int(self.i[r[a]]), j[b:b + 1])[0]
        return delta

    def _overlap_correction(self, r: np.ndarray, j: np.ndarray, metric: str, same) -> np.ndarray:
        """Song-side totals count the user's own test rows of that song; remove them (rare)."""
        out = np.zeros(len(r))
        for a, b in zip(*same):
            jj = j[b:b + 1]
            d = self._song_delta(int(self.i[r[a]]), jj)
            out[a] -= ((loss_change(self.y_test[jj], self.f_test[jj], d) * self.test_weights[jj]).sum() / len(self.f_test)
                       if metric == "logloss" else self.directions["auc"][jj] @ d)
        return out

    def train_logits(self, rows: np.ndarray) -> np.ndarray:
        return self._calibrated(self.model.pair_features(self.u[rows], self.i[rows]))

    def _kappa(self, user: int, r: np.ndarray, Yr: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """kappa of every row r of the user (x' - x = kappa q) and s = y_i' A_u^-1 y_i."""
        x = self.model.user_factors_[user]
        s = np.einsum("rf,fr->r", Yr, Q)
        cp = self.c * self.p[r]
        return -cp + (self.c - 1.0) * (Yr @ x - cp * s) / (1.0 - (self.c - 1.0) * s), s

    def _own_changes(self, r: np.ndarray, kappa: np.ndarray, s: np.ndarray, pair: np.ndarray) -> np.ndarray:
        """Logit change of the removed rows themselves: the user's solve and the song's play count.
        pair: the rows' calibrated score and known terms, all of which go when the user's only play
        or the song's only play is removed (the pair becomes unseen)."""
        n = self.model.song_count_[self.i[r]]
        gone = (len(r) == 1) | (n <= 1)
        return np.where(gone, -pair, self.a_score * kappa * s) + self.a_pop * (np.log1p(n - 1) - np.log1p(n))

    def _user_loo(self, user: int, pair: np.ndarray):
        """(rows, log-loss part, AUC part, own logit change) of one user's rows."""
        r, Yr, Q = self._user(user)
        kappa, s = self._kappa(user, r, Yr, Q)
        own = self._own_changes(r, kappa, s, pair[r])
        j = self._user_tests(user)
        if len(j) == 0:
            return r, 0.0, 0.0, own
        same = self._same_song(r, j)
        delta = np.broadcast_to(self._user_deltas(user, r, Yr, Q, j, kappa, same), (len(r), len(j)))
        ll = (loss_change(self.y_test[j], self.f_test[j], delta) @ self.test_weights[j]) / len(self.f_test)
        auc = delta @ self.directions["auc"][j]
        return (r, ll + self._overlap_correction(r, j, "logloss", same),
                auc + self._overlap_correction(r, j, "auc", same), own)

    def loo(self) -> dict[str, np.ndarray]:
        # the song side depends on the test weights (loo_on): computed afresh unless all are 1
        song_part = self.song_part if (self.test_weights == 1).all() else self._song_effects()
        out = {k: v[self.i].copy() for k, v in song_part.items()}
        F = self.model.pair_features(self.u, self.i)      # score, known, popularity of every train row
        pair = self.a_score * F[:, 0] + self.a_known * F[:, 1]
        own = np.zeros(len(self.u))
        users = np.flatnonzero(np.diff(self.user_rows[1]) > 0)
        with threadpool_limits(1, "blas"):   # users on the model's threads; each row belongs to one user
            for r, ll, auc, mine in thread_map(lambda u: self._user_loo(int(u), pair), users, self.threads):
                out["logloss"][r] += ll
                out["auc"][r] += auc
                own[r] = mine
        out.update(self.own_terms(self._calibrated(F), own))
        return out

    # -- removing a set of rows: warm-started sweeps --------------------------------------------
    sweeps = 1          # influence.groups.als_sweeps
    valid = None        # the calibration's split (prepare_sets)
    _sets = None        # (WarmSweeps, its test logits with nothing removed), built at the first set

    def prepare_sets(self, valid, gcfg: dict) -> None:
        self.valid, self.sweeps, self._sets = valid, gcfg["als_sweeps"], None

    def group_logits_many(self, groups: list[np.ndarray]):
        """Test logits without each group: the set model (WarmSweeps: the affected users' exact solves,
        `sweeps` sweeps of items and users from the trained factors, the calibration refitted). The
        same refit with nothing removed is subtracted (its sweeps move the factors too), so an empty
        group returns the trained model's logits exactly. Both are built once per estimator."""
        if self._sets is None:
            sweeper = WarmSweeps(self.model, self.model.prepare(self.train, self.valid), self.sweeps)
            self._sets = sweeper, sweeper(np.ones(len(self.u))).predict_logit(self.test)
        sweeper, base = self._sets
        for rows in groups:
            w = np.ones(len(self.u))
            w[np.asarray(rows, dtype=np.int64)] = 0.0
            yield self.f_test + (sweeper(w).predict_logit(self.test) - base)

    def group_logits(self, rows: np.ndarray) -> np.ndarray:
        return next(self.group_logits_many([rows]))

    def logit_changes(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        delta = np.zeros((len(rows), len(self.f_test)))
        order, start = self.song_tests
        for k, row in enumerate(rows):
            song = int(self.i[row])
            if song + 1 < len(start):
                js = order[start[song]:start[song + 1]]
                js = js[(self.test_song[js] == song) & (self.test_user[js] != self.u[row])]
                delta[k, js] += self._song_delta(song, js)
            user = int(self.u[row])
            j = self._user_tests(user)
            if len(j):
                r, Yr, Q = self._user(user)
                pos = int(np.flatnonzero(r == row)[0])
                delta[k, j] += np.broadcast_to(self._user_deltas(user, r, Yr, Q, j), (len(r), len(j)))[pos]
        return delta

    def refit_logits(self, row: int) -> tuple[np.ndarray, float]:
        """implicit's own exact solve for the user without the row, then the model's calibration."""
        m = self.model
        keep = np.ones(len(self.u), dtype=bool)
        keep[row] = False
        user = int(self.u[row])
        mine = keep & (self.u == user)
        R = signed_label_matrix(np.zeros(mine.sum(), dtype=np.int64), self.i[mine], self.p[mine], (1, m.shape_[1]))
        backup = (m.user_factors_[user].copy(), m.user_count_.copy(), m.song_count_.copy())
        try:
            with threadpool_limits(1, "blas"):  # implicit checks (and warns) in its constructor
                solver = AlternatingLeastSquares(factors=m.factors, regularization=m.regularization, alpha=m.alpha,
                                                 use_gpu=False, num_threads=1, dtype=np.float64)
                solver.item_factors = m.item_factors_
                m.user_factors_[user] = solver.recalculate_user(0, R.tocsr()) if mine.any() else 0.0
            m.user_count_[user] -= 1
            m.song_count_[self.i[row]] -= 1
            F = m.calibration_features(self.test)
            F_own = m.pair_features(self.u[row:row + 1], self.i[row:row + 1])
        finally:
            m.user_factors_[user], m.user_count_[:], m.song_count_[:] = backup
        return self._calibrated(F), float(self._calibrated(F_own)[0])
