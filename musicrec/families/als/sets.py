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


class WarmSweeps:
    """Set models of one trained ALSModel: `sweeper(weights)` is the model refitted on those row weights."""

    def __init__(self, model, prepared, sweeps: int):
        train, valid = prepared
        self.model, self.sweeps = model, int(sweeps)
        self.calib = valid if valid is not None else train
        self.user, self.song = model._ids(train)
        self.entries = model.entry_plays(train)
        self.layouts = None
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

    def __call__(self, weights: np.ndarray):
        m = self.model
        w = np.asarray(weights, dtype=np.float64)
        new = type(m)(**m.init_args())
        new.shape_ = m.shape_
        R, Rt = self.matrices(w)
        X, Y = m.user_factors_.copy(), m.item_factors_.copy()
        moved = np.unique(self.user[w != 1.0])
        with threadpool_limits(1, "blas"):  # implicit checks (and warns) in its constructor
            solver = m.implicit_model(dtype=np.float64)
            if len(moved):
                solver.item_factors = Y
                X[moved] = solver.recalculate_user(moved, R[moved])
            if self.sweeps:
                # what implicit's fit hands its solver: float32 confidences, alpha applied
                Cui, Ciu = ((m.alpha * M).astype(np.float32) for M in (R, Rt))
                for _ in range(self.sweeps):
                    solver.solver(Ciu, Y, X, m.regularization, num_threads=m.n_jobs)
                    solver.solver(Cui, X, Y, m.regularization, num_threads=m.n_jobs)
        new.user_factors_, new.item_factors_ = X, Y
        return new.fit_calibration(self.user, self.song, w, self.calib, init=m)
