"""Ranking influence: what each training interaction does to its own user's held-out top-k list.

With the item factors Y fixed, user u's factor solves A_u x = b_u, A_u = Y'Y + lambda I +
sum_i (|v_i| - 1) y_i y_i', b_u = sum over positive v_i of v_i y_i, where v = alpha x (the weighted
entry), rounded to float32 as implicit rounds it (implicit's own solve, recalculate_user). Removing
interaction k is a rank-one downdate (Sherman-Morrison) under a weighting whose entries do not
depend on each other (signed, log, tfidf: x' = x + kappa q, q = A^-1 y_k); under bm25 every entry
of the user's row moves with its length (and the average length), so the row is reweighted once per
distinct play count of the user and entry k then downdated from that. The user's new scores give
the change of two held-out measures (new - old): NDCG@k of the top-k list (no song played in train,
none unseen in train; items the user's removal frees enter) and a smooth loss, the mean log-sigmoid
of each held-out item's score against `negatives` unplayed items drawn per user (a sampled BPR
log-likelihood). The top-k after a removal is searched among the user's best `candidates` songs
and the freed one, and re-ranked over the songs a bound on the score change cannot rule out. The
log-likelihood's change is its Taylor series in the score changes (to order TAYLOR_ORDER, by matrix
products) where the series' remainder bound is below TAYLOR_ERROR, the exact mean elsewhere.
"""
from __future__ import annotations

import time
from math import comb, factorial

import numpy as np
import scipy.sparse as sp
from numpy.polynomial import polynomial
from scipy.special import expit

from musicrec.parallel import thread_map

CANDIDATES = 200      # best songs per user searched for a new top-k (with a bound: exact)
BATCH = 64            # bm25: distinct play counts of a user reweighted at a time
LOGLIK_ROWS = 256     # removals whose (held-out x sampled) score differences are held at a time
TAYLOR_ORDER = 6      # the log-likelihood change's series, where its remainder is below TAYLOR_ERROR
TAYLOR_ERROR = 1e-12  # per removal: the bound on |series - exact mean change|


def _log_sigmoid_derivatives(order: int) -> list[np.ndarray]:
    """Coefficients, in s = sigmoid(z), of the n-th derivative of log sigmoid(z), n = 1 .. order + 1
    (d/dz of a polynomial p(s) is p'(s) s (1 - s))."""
    p, out = np.array([1.0, -1.0]), []
    for _ in range(order + 1):
        out.append(p)
        p = polynomial.polymul(polynomial.polyder(p), [0.0, 1.0, -1.0])
    return out


_DERIVATIVES = _log_sigmoid_derivatives(TAYLOR_ORDER)
_GRID = np.linspace(0.0, 1.0, 100_001)
# the series to order n holds to TAYLOR_ERROR while every score difference moves by at most
# RADII[n - 1] (Lagrange's remainder: sup |f^(n+1)| / (n+1)! |delta|^(n+1), the sup taken on a fine
# grid of s with 1% to spare); beyond the last, the exact mean
RADII = np.array([(TAYLOR_ERROR * factorial(n + 1) / (1.01 * np.abs(polynomial.polyval(_GRID, _DERIVATIVES[n])).max()))
                  ** (1.0 / (n + 1)) for n in range(1, TAYLOR_ORDER + 1)])
TAYLOR_RADIUS = float(RADII.max())


def _exact_loglik(X: np.ndarray, T: np.ndarray, S: np.ndarray) -> np.ndarray:
    return np.concatenate([
        (-np.logaddexp(0.0, -(X[b] @ T.T)[:, :, None] + (X[b] @ S.T)[:, None, :])).mean(axis=(1, 2))
        for b in (slice(s, s + LOGLIK_ROWS) for s in range(0, len(X), LOGLIK_ROWS))])


def sampled_loglik(X: np.ndarray, T: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Per factor row x of X, the mean over held-out items t (rows of T) and sampled items s (rows of
    S) of log sigmoid(x.t - x.s); row 0 is the reference the other rows are near.

    A row whose score differences all move by at most TAYLOR_RADIUS from row 0's gets row 0's mean
    plus the Taylor series of the change: sum over n of mean_ts f^(n)(z_ts) (da_t - db_s)^n / n!, each
    term a few matrix products of powers of da and db (the score changes) with the derivatives, to
    the lowest order that holds it within TAYLOR_ERROR of the exact mean; the others the exact mean.
    The exact mean is one logaddexp per (row, held-out, sampled) triple: millions per user."""
    out = np.empty(len(X))
    out[0] = _exact_loglik(X[:1], T, S)[0]
    if len(X) == 1:
        return out
    z0 = (X[0] @ T.T)[:, None] - (X[0] @ S.T)[None, :]
    s0 = expit(z0)
    terms = [polynomial.polyval(s0, d) / factorial(n + 1) for n, d in enumerate(_DERIVATIVES[:-1])]
    for start in range(1, len(X), LOGLIK_ROWS):
        rows = np.arange(start, min(len(X), start + LOGLIK_ROWS))
        D = X[rows] - X[0]
        da, db = D @ T.T, D @ S.T
        reach = np.maximum(da.max(axis=1) - db.min(axis=1), db.max(axis=1) - da.min(axis=1))
        fits = reach[:, None] <= RADII[None, :]
        near = fits.any(axis=1)
        if near.any():
            need = fits[near].argmax(axis=1) + 1        # the lowest order whose radius holds the row
            by_need = np.argsort(-need, kind="stable")  # rows needing order n or more: a prefix
            need, at = need[by_need], np.flatnonzero(near)[by_need]
            a, b = da[at], db[at]
            pa, pb, series = [np.ones_like(a)], [np.ones_like(b)], np.zeros(len(at))
            for n in range(1, int(need[0]) + 1):
                m = int(np.count_nonzero(need >= n))
                pa.append(pa[-1][:m] * a[:m])
                pb.append(pb[-1][:m] * b[:m])
                for k in range(n + 1):    # (da - db)^n = sum_k C(n, k) da^k (-db)^(n-k)
                    series[:m] += comb(n, k) * (-1.0) ** (n - k) * np.einsum(
                        "ij,ij->i", pa[k][:m] @ terms[n - 1], pb[n - k][:m])
            out[rows[at]] = out[0] + series / z0.size
        if (~near).any():
            out[rows[~near]] = _exact_loglik(X[rows[~near]], T, S)
    return out


class RankingInfluence:
    """Every training interaction's influence on its own user's held-out ranking (item factors fixed)."""

    def __init__(self, model, user: np.ndarray, song: np.ndarray, plays: np.ndarray, relevant: dict,
                 k: int = 10, negatives: int = 100, rng: np.random.Generator | None = None, threads: int = 1):
        """relevant: user -> array of held-out relevant songs; plays: the train rows' play counts
        (the target for the signed weighting)."""
        self.model, self.k, self.threads = model, k, threads
        self.user, self.song = np.asarray(user, np.int64), np.asarray(song, np.int64)
        self.plays = np.asarray(plays, np.float64)
        self.Y = model.item_factors_
        self.n_items = self.Y.shape[0]
        self.YtY = self.Y.T @ self.Y + model.regularization * np.eye(self.Y.shape[1])
        self.item_norm = np.sqrt((self.Y ** 2).sum(axis=1))
        self.y_norm = self.item_norm.max()
        self.relevant = relevant
        self.count = model.song_count_.astype(np.float64)
        self.alive = self.count[:self.n_items] > 0     # songs a list may hold (played in train)
        order = np.argsort(self.user, kind="stable")
        self.order, self.start = order, np.searchsorted(self.user[order], np.arange(model.shape_[0] + 1))
        self.v = self._values(np.ones(len(self.user), dtype=bool))
        if self.weighting == "bm25":   # what reweighting a row needs: its length, the average, the idf
            self.row_len = np.bincount(self.user, self.plays, minlength=model.shape_[0])
            self.total = self.row_len.sum()
            self.idf = (np.log(float(model.shape_[0]))
                        - np.log1p(np.bincount(self.song, minlength=model.shape_[1]).astype(np.float64)))
        rng = rng or np.random.default_rng(0)
        self.neg = {u: self._negatives(u, negatives, rng) for u in sorted(relevant)}

    @property
    def weighting(self) -> str:
        return self.model.weighting

    # -- the weighted entries, as implicit sees them ------------------------------------------------
    def _alpha_round(self, w: np.ndarray) -> np.ndarray:
        return (self.model.alpha * w).astype(np.float32).astype(np.float64)

    def _values(self, keep: np.ndarray) -> np.ndarray:
        from musicrec.families.als.model import confidence_matrix

        m = self.model
        if self.weighting == "signed":
            return self._alpha_round(np.where(self.plays > 0, 1.0, -1.0))
        R = confidence_matrix(self.user[keep], self.song[keep], self.plays[keep], m.shape_, self.weighting,
                              m.bm25_k1, m.bm25_b).tocsr()
        out = np.full(len(self.user), np.nan)
        out[keep] = np.asarray(R[self.user[keep], self.song[keep]]).ravel()
        return self._alpha_round(out)

    def _bm25_row(self, u_rows: np.ndarray, removed_plays: float) -> np.ndarray:
        """The user's entries reweighted by implicit's bm25 with one entry of `removed_plays` gone
        from the row and from the total length."""
        m = self.model
        n_users = float(m.shape_[0])
        u = self.user[u_rows[0]]
        length = self.row_len[u] - removed_plays
        avg = (self.total - removed_plays) / n_users
        norm = (1.0 - m.bm25_b) + m.bm25_b * length / avg
        x = self.plays[u_rows]
        w = x * (m.bm25_k1 + 1.0) / (m.bm25_k1 * norm + x) * self.idf[self.song[u_rows]]
        return self._alpha_round(w)

    # -- one user --------------------------------------------------------------------------------
    def user_rows(self, u: int) -> np.ndarray:
        """The user's train rows (none for a user unseen in train)."""
        return self.order[self.start[u]:self.start[u + 1]] if u + 1 < len(self.start) else self.order[:0]

    def _negatives(self, u: int, n: int, rng) -> np.ndarray:
        rows = self.user_rows(u)
        banned = np.zeros(self.n_items, dtype=bool)
        banned[self.song[rows]] = True
        banned[self.relevant[u][self.relevant[u] < self.n_items]] = True
        banned |= self.count[:self.n_items] <= 0
        pool = np.flatnonzero(~banned)
        return rng.choice(pool, min(n, len(pool)), replace=False) if len(pool) else pool

    def _solve(self, items: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A and x of a user with entries v on `items`."""
        Yu = self.Y[items]
        A = self.YtY + Yu.T @ ((np.abs(v) - 1.0)[:, None] * Yu)
        return A, np.linalg.solve(A, Yu.T @ np.maximum(v, 0.0))

    def factors_without(self, u: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The user's train rows, its factor x, and its factor without each of those rows (m, f)."""
        rows = self.user_rows(u)
        items = self.song[rows]
        A, x = self._solve(items, self.v[rows])
        if self.weighting != "bm25":
            return rows, x, self._downdate(A, x, items, self.v[rows], np.arange(len(rows)))
        out = np.empty((len(rows), len(x)))
        counts, which = np.unique(self.plays[rows], return_inverse=True)
        Yu = self.Y[items]
        for s in range(0, len(counts), BATCH):   # one reweighting per distinct play count, a batch at a time
            cs = counts[s:s + BATCH]
            V = np.stack([self._bm25_row(rows, r) for r in cs])                     # (batch, m)
            A_r = self.YtY[None] + np.einsum("rm,mf,mg->rfg", np.abs(V) - 1.0, Yu, Yu, optimize=True)
            x_r = np.linalg.solve(A_r, (np.maximum(V, 0.0) @ Yu)[..., None])[..., 0]  # (batch, f)
            mine = np.flatnonzero((which >= s) & (which < s + len(cs)))
            g = which[mine] - s                                   # each entry's reweighted row in the batch
            Yk = Yu[mine]
            Q = np.linalg.solve(A_r[g], Yk[..., None])[..., 0]   # (entries, f): A_g^-1 y_k
            v = V[g, mine]
            c, vp = np.abs(v) - 1.0, np.maximum(v, 0.0)
            sk = np.einsum("kf,kf->k", Yk, Q)
            kappa = -vp + c * (np.einsum("kf,kf->k", Yk, x_r[g]) - vp * sk) / (1.0 - c * sk)
            out[mine] = x_r[g] + Q * kappa[:, None]
        return rows, x, out

    def _downdate(self, A, x, items, v, which) -> np.ndarray:
        """x without each entry `which` of the row (Sherman-Morrison on A)."""
        Yk = self.Y[items[which]]
        Q = np.linalg.solve(A, Yk.T)                       # (f, len(which))
        s = np.einsum("kf,fk->k", Yk, Q)
        c, vp = np.abs(v[which]) - 1.0, np.maximum(v[which], 0.0)
        kappa = -vp + c * (Yk @ x - vp * s) / (1.0 - c * s)
        return x[None, :] + (Q * kappa).T

    # -- the held-out measures -------------------------------------------------------------------
    def _allowed(self, u: int, rows: np.ndarray) -> np.ndarray:
        ok = self.alive.copy()
        ok[self.song[rows]] = False
        return ok

    def _reachable(self, base: np.ndarray, moved: float, kth: np.ndarray) -> np.ndarray:
        """Songs that could enter the top-k of factor rows that moved by at most `moved` from row 0: a
        song's score moves by at most |y| |x' - x| (Cauchy-Schwarz), so one whose all-rows score plus
        that bound stays below every row's k-th best candidate score `kth` cannot (a small slack covers
        rounding). base: all-rows scores, -inf where not allowed."""
        reach = base + self.item_norm * moved
        floor = float(kth.min())
        if np.isfinite(floor):
            floor -= 1e-9 * (1.0 + abs(floor))
        return np.flatnonzero(reach >= floor)

    def measures(self, u: int, X: np.ndarray, rows: np.ndarray, freed: np.ndarray | None = None,
                 scores: np.ndarray | None = None) -> dict:
        """NDCG@k, precision@k and the sampled log-likelihood of user u for each factor row of X;
        freed[j]: the song row j's removal lets back into u's list (-1: none). Row 0 of X is the
        user's factor with every row (its list decides the candidates); `scores`, its score of every
        song where the caller has it."""
        rel = self.relevant[u]
        rel_set = np.zeros(self.n_items + 1, dtype=bool)
        rel_set[rel[rel < self.n_items]] = True
        allowed = self._allowed(u, rows)
        n_allowed = int(allowed.sum())
        base = np.where(allowed, self.Y @ X[0] if scores is None else scores, -np.inf)
        c = min(CANDIDATES, n_allowed)
        if c < n_allowed:      # the best c allowed songs, and the best score of any other
            part = np.argpartition(-base, c)[:c + 1]
            top = part[np.argsort(-base[part], kind="stable")]
            cand, outside = top[:c], base[top[c]]
        else:
            cand, outside = np.argsort(-base, kind="stable")[:c], -np.inf
        freed = np.full(len(X), -1) if freed is None else np.asarray(freed)
        back = (freed >= 0) & ~allowed[np.maximum(freed, 0)] & (self.count[np.maximum(freed, 0)] - 1 > 0)
        sc = np.hstack([X @ self.Y[cand].T, np.where(back, np.einsum("nf,nf->n", X, self.Y[np.maximum(freed, 0)]),
                                                      -np.inf)[:, None]])
        ids = np.hstack([np.broadcast_to(cand, (len(X), len(cand))), np.where(back, freed, self.n_items)[:, None]])
        k = min(self.k, sc.shape[1])
        part = np.argpartition(-sc, k - 1, axis=1)[:, :k] if k < sc.shape[1] else np.argsort(-sc, axis=1)
        order = np.take_along_axis(part, np.argsort(-np.take_along_axis(sc, part, 1), axis=1, kind="stable"), 1)
        best, best_sc = np.take_along_axis(ids, order, 1), np.take_along_axis(sc, order, 1)
        moved = np.linalg.norm(X - X[0], axis=1)
        unsure = ~np.isfinite(best_sc[:, -1]) | (best_sc[:, -1] < outside + 2 * self.y_norm * moved) | (k < self.k)
        rows_unsure = np.flatnonzero(unsure)
        if len(rows_unsure):
            pool = self._reachable(base, float(moved[rows_unsure].max()), best_sc[rows_unsure, -1])
            ok, Y_pool, cols = allowed[pool], self.Y[pool], np.append(pool, -1)
        for s in range(0, len(rows_unsure), LOGLIK_ROWS):   # an outsider could enter: every song that could, scored
            js = rows_unsure[s:s + LOGLIK_ROWS]
            full = np.where(ok[None, :], X[js] @ Y_pool.T, -np.inf)
            ret = np.where(back[js], np.einsum("nf,nf->n", X[js], self.Y[np.maximum(freed[js], 0)]), -np.inf)
            full = np.hstack([full, ret[:, None]])
            kk = min(self.k, full.shape[1])
            part = np.argpartition(-full, kk - 1, axis=1)[:, :kk]
            take = np.take_along_axis(part, np.argsort(-np.take_along_axis(full, part, 1), axis=1, kind="stable"), 1)
            song = np.where(take == len(pool), freed[js][:, None], cols[take])
            take = np.where(np.isfinite(np.take_along_axis(full, take, 1)), song, self.n_items)
            best[js, :] = self.n_items
            best[js, :kk] = take
        hits = rel_set[best[:, :self.k]].astype(np.float64)
        ideal = np.sum(1.0 / np.log2(np.arange(2, min(len(rel), self.k) + 2)))
        out = {"ndcg": (hits / np.log2(np.arange(2, hits.shape[1] + 2))).sum(axis=1) / ideal if ideal > 0
               else np.full(len(X), np.nan),
               "precision": hits.sum(axis=1) / self.k}
        known = rel[rel < self.n_items]
        if len(known) and len(self.neg[u]):
            out["loglik"] = sampled_loglik(X, self.Y[known], self.Y[self.neg[u]])
        else:
            out["loglik"] = np.full(len(X), np.nan)
        return out

    def user_influence(self, u: int, solved: tuple | None = None, scores: np.ndarray | None = None):
        """(rows, {measure: change per row}) of one user: its measures without each row minus with all.
        solved: factors_without(u), scores: its factor's score of every song, where the caller has them."""
        rows, x, without = self.factors_without(u) if solved is None else solved
        if len(rows) == 1:       # the user's only row: the user becomes unseen (popularity's list)
            without[:] = 0.0
        X = np.vstack([x[None, :], without])
        m = self.measures(u, X, rows, np.concatenate([[-1], self.song[rows]]), scores)
        return rows, {k: v[1:] - v[0] for k, v in m.items()}

    def loo(self, seconds: float | None = None, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """Per train row: change of its user's held-out NDCG@k, precision@k and sampled log-likelihood
        when the row is removed (NaN where the user has no held-out relevant song).

        `seconds`: users are taken in a seeded random order, a batch at a time (at least one), until
        the time is spent (the other users' rows NaN; self.coverage says how many); None: every user."""
        out = {k: np.full(len(self.user), np.nan) for k in ("ndcg", "precision", "loglik")}
        users = np.array([u for u in sorted(self.relevant) if len(self.user_rows(u))], dtype=np.int64)
        if seconds is not None:
            users = (rng or np.random.default_rng(0)).permutation(users)
        t0, done, batch = time.perf_counter(), 0, max(1, 8 * self.threads)
        while done < len(users) and (seconds is None or done == 0 or time.perf_counter() - t0 < seconds):
            chunk = users[done:done + batch]
            solved = thread_map(self.factors_without, chunk, self.threads)
            # every song's score for the chunk's users at once: one pass over the item factors, not one per user
            scores = np.stack([x for _, x, _ in solved]) @ self.Y.T
            for rows, changes in thread_map(lambda j: self.user_influence(int(chunk[j]), solved[j], scores[j]),
                                            range(len(chunk)), self.threads):
                for k, v in changes.items():
                    out[k][rows] = v
            done += min(batch, len(users) - done)
        covered = users[:done]
        self.coverage = {"users": int(done), "of_users": int(len(users)),
                         "rows": int(sum(len(self.user_rows(u)) for u in covered)),
                         "of_rows": int(sum(len(self.user_rows(u)) for u in users)),
                         "seconds_budget": seconds}
        return out

    def refit_factor(self, row: int) -> np.ndarray:
        """implicit's own solve of the user without the row (its weighting recomputed on the whole
        matrix without it): what the downdate is checked against."""
        from implicit.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        from musicrec.families.als.model import confidence_matrix, signed_label_matrix

        m, u = self.model, int(self.user[row])
        keep = np.ones(len(self.user), dtype=bool)
        keep[row] = False
        if self.weighting == "signed":
            R = signed_label_matrix(self.user[keep], self.song[keep], self.plays[keep], m.shape_)
        else:
            R = confidence_matrix(self.user[keep], self.song[keep], self.plays[keep], m.shape_, self.weighting,
                                  m.bm25_k1, m.bm25_b)
        with threadpool_limits(1, "blas"):
            solver = AlternatingLeastSquares(factors=m.factors, regularization=m.regularization, alpha=m.alpha,
                                             use_gpu=False, num_threads=1, dtype=np.float64)
            solver.item_factors = self.Y
            return solver.recalculate_user(u, sp.csr_matrix(R.tocsr()[u]))
