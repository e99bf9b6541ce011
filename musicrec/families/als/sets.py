"""ALS's set model: the model refitted without a set of rows, starting where training ended.

A retrain runs `iterations` sweeps from random factors. The set model starts from the trained
factors instead: the users who lost rows get their exact least-squares solve against the trained
item factors (every other user already holds exactly that solve, ALSModel.solve_users), then
`sweeps` sweeps re-solve every item and then every user with implicit's own solver (conjugate
gradient, the step of its fit) in float64, and the calibration is refitted. No transposes or
random starts beyond that: a set costs the affected users' solve, `sweeps` sweeps and the
calibration.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from musicrec.parallel import thread_map


class _Layout:
    """Where each training row's entry sits in the (user, song) matrix, sorted as CSR, so that a set's
    matrix is the trained one with the set's rows dropped and its reweighted rows rescaled (no sort per
    set). Signed entries only, one per row: other weightings rescale every entry by global counts."""

    def __init__(self, major: np.ndarray, minor: np.ndarray, sign: np.ndarray, n_major: int, n_minor: int):
        key = major * n_minor + minor
        order = np.argsort(key)
        self.unique = bool(np.all(np.diff(key[order]) > 0))
        self.pos = np.empty_like(order)
        self.pos[order] = np.arange(len(order))
        self.major, self.minor, self.sign = major[order], minor[order].astype(np.int32), sign[order]
        self.counts = np.bincount(self.major, minlength=n_major)
        self.shape = (n_major, n_minor)

    def matrix(self, rows: np.ndarray, w: np.ndarray) -> sp.csr_matrix:
        """The matrix with rows `rows` of the training split weighted `w` (0: left out), the others 1."""
        value = self.sign.copy()
        at = self.pos[rows]
        value[at] *= w
        dropped = at[w == 0]
        counts = self.counts - np.bincount(self.major[dropped], minlength=self.shape[0])
        indices = self.minor
        if len(dropped):
            keep = np.ones(len(value), dtype=bool)
            keep[dropped] = False
            value, indices = value[keep], indices[keep]
        indptr = np.zeros(self.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return sp.csr_matrix((value, indices, indptr), shape=self.shape)


class _UserSystems:
    """Every user's normal equations A_u x = b_u against the trained item factors, as implicit forms
    them (A_u = Y'Y + lambda I + sum over the user's entries of (c - 1) y y', b_u = sum over positive
    entries of c y, c = alpha |entry|), built once: a set's affected users are then solved exactly
    from A_u and b_u changed by the set's own entries, at a cost that grows with the set, not with
    the users' histories."""

    def __init__(self, layout: _Layout, Y: np.ndarray, alpha: float, regularization: float, threads: int):
        self.layout, self.Y, self.alpha = layout, Y, alpha
        n_users, k = layout.shape[0], Y.shape[1]
        start = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(layout.counts, out=start[1:])
        conf = alpha * np.abs(layout.sign)
        self.A = np.broadcast_to(Y.T @ Y + regularization * np.eye(k), (n_users, k, k)).copy()
        self.b = np.zeros((n_users, k))

        def users(span: range) -> None:   # BLAS products release the GIL: spans of users on threads
            for u in span:
                a, e = start[u], start[u + 1]
                if e > a:
                    Yr = Y[layout.minor[a:e]]
                    self.A[u] += (Yr * (conf[a:e] - 1.0)[:, None]).T @ Yr
                    self.b[u] = (conf[a:e] * (layout.sign[a:e] > 0)) @ Yr

        step = -(-n_users // max(1, threads))
        thread_map(users, [range(i, min(i + step, n_users)) for i in range(0, n_users, step)], threads)

    def solve(self, rows: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(users, their factors): the users owning training rows `rows`, solved with those rows
        weighted `w` (0: left out)."""
        L = self.layout
        if not len(rows):
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.Y.shape[1]))
        at = L.pos[rows]
        order = np.argsort(at, kind="stable")   # entries of one user together
        at, w = at[order], w[order]
        conf = self.alpha * np.abs(L.sign[at])
        new = conf * np.abs(w)
        dA = np.where(w != 0, new - 1.0, 0.0) - (conf - 1.0)
        db = (new - conf) * (L.sign[at] > 0)
        owner = L.major[at]
        first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        users = owner[first]
        A, b = self.A[users], self.b[users]
        bounds = np.r_[first, len(at)]
        for j in range(len(users)):
            a, e = bounds[j], bounds[j + 1]
            Yr = self.Y[L.minor[at[a:e]]]
            A[j] += (Yr * dA[a:e, None]).T @ Yr
            b[j] += db[a:e] @ Yr
        return users, np.linalg.solve(A, b[..., None])[..., 0]


class WarmSweeps:
    """Set models of one trained ALSModel: `sweeper(weights)` is the model refitted on those row weights
    (`calibrate=False`: without refitting its replay calibration, which no top-k list reads)."""

    def __init__(self, model, prepared, sweeps: int, calibrate: bool = True):
        train, valid = prepared
        self.model, self.sweeps, self.calibrate = model, int(sweeps), calibrate
        self.calib = valid if valid is not None else train
        self.user, self.song = model._ids(train)
        self.entries = model.entry_plays(train)
        self.layouts, self.systems = None, None
        if model.weighting == "signed":
            n_users, n_songs = model.shape_
            sign = np.where(self.entries == 1, 1.0, -1.0)
            by_user = _Layout(self.user, self.song, sign, n_users, n_songs)
            if by_user.unique:
                self.layouts = (by_user, _Layout(self.song, self.user, sign, n_songs, n_users))

    def matrices(self, w: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """The play matrix implicit fits (users x songs, ALSModel.play_matrix) and its transpose."""
        if self.layouts is not None:
            rows = np.flatnonzero(w != 1.0)
            # numpy's gathers and compactions release the GIL: one layout per thread
            return tuple(thread_map(lambda layout: layout.matrix(rows, w[rows]), self.layouts, 2))
        R = self.model.play_matrix(self.user, self.song, self.entries, w)
        return R, R.T.tocsr()

    def affected_users(self, w: np.ndarray, R: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(users, factors): the exact least-squares factors, against the trained item factors, of the
        users whose rows `w` reweights (R: the reweighted matrix, for weightings without a layout)."""
        m = self.model
        rows = np.flatnonzero(w != 1.0)
        if self.layouts is not None:
            if self.systems is None:
                self.systems = _UserSystems(self.layouts[0], m.item_factors_, m.alpha, m.regularization, m.n_jobs)
            return self.systems.solve(rows, w[rows])
        moved = np.unique(self.user[rows])
        if not len(moved):
            return moved, np.zeros((0, m.factors))
        solver = m.implicit_model(dtype=np.float64)
        solver.item_factors = m.item_factors_
        R = m.play_matrix(self.user, self.song, self.entries, w) if R is None else R
        return moved, solver.recalculate_user(moved, R[moved])

    def __call__(self, weights: np.ndarray):
        m = self.model
        w = np.asarray(weights, dtype=np.float64)
        new = type(m)(**m.init_args())
        new.shape_ = m.shape_
        R, Rt = self.matrices(w)
        X, Y = m.user_factors_.copy(), m.item_factors_.copy()
        with threadpool_limits(1, "blas"):  # implicit checks (and warns) in its constructor
            solver = m.implicit_model(dtype=np.float64)
            moved, x = self.affected_users(w, R)
            X[moved] = x
            if self.sweeps:
                # what implicit's fit hands its solver: float32 confidences, alpha applied
                Cui, Ciu = ((m.alpha * M).astype(np.float32) for M in (R, Rt))
                for _ in range(self.sweeps):
                    solver.solver(Ciu, Y, X, m.regularization, num_threads=m.n_jobs)
                    solver.solver(Cui, X, Y, m.regularization, num_threads=m.n_jobs)
        new.user_factors_, new.item_factors_ = X, Y
        if not self.calibrate:    # lists need the factors and the counts, not the replay calibration
            return new.set_counts(self.user, self.song, w)
        return new.fit_calibration(self.user, self.song, w, self.calib, init=m)
