"""Logistic regression: one Newton step without the row (influence function with leverage).

The objective is sum_i l_i + ||w||^2 / (2C) (scikit-learn's, intercept unpenalised). Removing row
i moves the optimum by approximately H^-1 x_i r_i / (1 - h_i), r_i = p_i - y_i, h_i = p_i (1-p_i)
x_i' H^-1 x_i (the leverage; the exact Sherman-Morrison downdate of the Hessian). The test metric
changes by its gradient times that step: one solve v = H^-1 sum_j d_j x_j, then one dot product
per row. Log-loss adds the second-order term of the test loss in the step. The model is first
polished by Newton iterations to the exact optimum, so the step starts from a true minimum.

The training design is kept without its intercept column, C-contiguous: scikit-learn's reference
refits (reference.py) then fit on this very array, where a column of ones would make them copy
the design (GBs at KKBOX size). Parameters are (coefficients, intercept) throughout.
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from threadpoolctl import threadpool_limits

from musicrec.influence.base import Estimator, map_row_blocks, model_threads
from musicrec.models.design import DesignRows

CHUNK = 100_000
LOO_BLOCK = 8_192
GROUP_BATCH = 16   # groups' test logits per pass over the test design


def with_intercept(x: np.ndarray) -> np.ndarray:
    """Design rows with the intercept's column of ones appended (a small block of rows)."""
    return np.hstack([x, np.ones((len(x), 1))])


def weighted_gram(X: np.ndarray, w: np.ndarray, intercept: bool = False) -> np.ndarray:
    """X' diag(w) X in row chunks (no n x d temporary); w >= 0; `intercept` appends the column
    of ones to X first.

    Written as A'A with A = sqrt(w) X so that numpy hands it to BLAS syrk (half the flops of a
    general product).
    """
    d = X.shape[1] + int(intercept)
    out = np.zeros((d, d))
    root = np.sqrt(w)
    for s in range(0, len(X), CHUNK):
        x = with_intercept(X[s:s + CHUNK]) if intercept else X[s:s + CHUNK]
        a = x * root[s:s + CHUNK, None]
        out += a.T @ a
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class LogisticInfluence(Estimator):
    name = "lr"
    method = "Newton step with leverage correction (influence function), second-order test loss"

    def __init__(self, model, train, test):
        est = model.estimator_
        self.model = model                    # its threads, before Estimator.__init__
        self.C = est.C
        self.X = model.design_.transform(train)                  # no intercept column: see above
        self.Xt = DesignRows(model.design_, test, CHUNK, model_threads(model))   # made per use: see DesignRows
        self.y = train.y.astype(np.float64)
        self.penalty = np.full(self.X.shape[1] + 1, 1.0 / self.C)
        self.penalty[-1] = 0.0
        self.theta = self.polish(np.concatenate([est.coef_.ravel(), est.intercept_]), self.y)
        self._curvature()
        super().__init__(model, train, test)

    # -- the optimum and its curvature -----------------------------------------------------------
    def logits(self, theta: np.ndarray) -> np.ndarray:
        """Training-row logits of parameters (coefficients, intercept)."""
        return self.X @ theta[:-1] + theta[-1]

    def gradient(self, theta: np.ndarray, w: np.ndarray, p: np.ndarray) -> np.ndarray:
        r = w * (p - self.y)
        return np.append(self.X.T @ r, r.sum()) + self.penalty * theta

    def gradient_hessian(self, theta, w):
        p = _sigmoid(self.logits(theta))
        return (self.gradient(theta, w, p),
                weighted_gram(self.X, w * p * (1 - p), intercept=True) + np.diag(self.penalty))

    def polish(self, theta: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, steps: int = 20) -> np.ndarray:
        """Newton iterations to the exact minimiser (the scikit-learn fit stops at its tolerance).

        Near the optimum Newton's step shrinks quadratically until it meets the rounding of the
        gradient, a sum over every row (at 5M rows steps stall near 1e-11 of a coefficient of 4):
        a small step that is not at least 4 times smaller than the one before is that floor, and
        further iterations only move within it."""
        w = np.ones(len(self.X)) if w is None else w
        last = np.inf
        for _ in range(steps):
            grad, H = self.gradient_hessian(theta, w)
            step = cho_solve(cho_factor(H), grad)
            theta = theta - step
            size, scale = np.abs(step).max(), max(1.0, np.abs(theta).max())
            if size < 1e-13 * scale or (size < 1e-8 * scale and size > last / 4):
                break
            last = size
        return theta

    def _curvature(self) -> None:
        p = _sigmoid(self.logits(self.theta))
        self.r = p - self.y
        self.w = p * (1 - p)
        _, self.H = self.gradient_hessian(self.theta, np.ones(len(self.X)))
        self.H_cho = cho_factor(self.H)
        self.Hinv = cho_solve(self.H_cho, np.eye(len(self.H)))
        self.q = np.empty(len(self.X))        # x_i' H^-1 x_i

        def block(rows: slice) -> None:
            x = with_intercept(self.X[rows])
            self.q[rows] = ((x @ self.Hinv) * x).sum(axis=1)

        self._by_blocks(block)
        self.leverage = self.w * self.q

    def _by_blocks(self, work) -> None:
        """work(rows) over blocks of LOO_BLOCK training rows (temporaries stay in cache) on the model's threads."""
        map_row_blocks(work, len(self.X), LOO_BLOCK, model_threads(self.model))

    def retrain_inputs(self):
        """The design this estimator already holds is the one retraining fits on (Model.prepare)."""
        return self.model.design_, self.X, self.train.y

    def test_logits(self) -> np.ndarray:
        return self.Xt @ self.theta

    def train_logits(self, rows: np.ndarray) -> np.ndarray:
        return with_intercept(self.X[rows]) @ self.theta

    # -- estimates -------------------------------------------------------------------------------
    def steps(self, rows: np.ndarray) -> np.ndarray:
        """Parameter change when each row is removed: H^-1 x_i r_i / (1 - h_i), shape (k, d+1)."""
        scale = self.r[rows] / (1.0 - self.leverage[rows])
        return (with_intercept(self.X[rows]) @ self.Hinv) * scale[:, None]

    def logit_changes(self, rows: np.ndarray) -> np.ndarray:
        return (self.Xt @ self.steps(rows).T).T

    def loo(self) -> dict[str, np.ndarray]:
        g, h = self.weighted_derivatives()
        v = cho_solve(self.H_cho, self.Xt.t_dot(np.column_stack([g, self.directions["auc"]])))
        v_loss, v_auc = v[:, 0], v[:, 1]
        K = self.Hinv @ self.Xt.gram(h) @ self.Hinv
        scale = self.r / (1.0 - self.leverage)
        out = {"logloss": np.empty(len(self.X)), "auc": np.empty(len(self.X))}

        def block(rows: slice) -> None:
            x, sc = with_intercept(self.X[rows]), scale[rows]
            out["logloss"][rows] = (x @ v_loss) * sc + 0.5 * sc ** 2 * ((x @ K) * x).sum(axis=1)
            out["auc"][rows] = (x @ v_auc) * sc

        self._by_blocks(block)
        # the row's own logit moves by x_i' (H^-1 x_i r_i / (1 - h_i))
        out.update(self.own_terms(self.logits(self.theta), self.q * scale))
        return out

    def group_theta(self, rows: np.ndarray) -> np.ndarray:
        """One Newton step without the rows (the group's influence function, with the Hessian
        downdated by all of them): second order in the group, where summing single-row
        estimates is first order and overshoots when many rows pull the same way. The group's
        Hessian and gradient are summed a block of its rows at a time (no copy of a large group),
        each block gathered once and the intercept's row and column written from its sums."""
        d = self.X.shape[1]
        H, g = self.H.copy(), np.zeros(d + 1)
        for s in range(0, len(rows), CHUNK):
            part = rows[s:s + CHUNK]
            x, r, root = self.X[part], self.r[part], np.sqrt(self.w[part])
            g[:d] += x.T @ r
            g[d] += r.sum()
            x *= root[:, None]
            H[:d, :d] -= x.T @ x
            side = x.T @ root
            H[:d, d] -= side
            H[d, :d] -= side
            H[d, d] -= root @ root
        return self.theta + cho_solve(cho_factor(H), g)

    def group_logits_many(self, groups: list[np.ndarray]):
        """Every group's Newton step, then the groups' test logits GROUP_BATCH groups per pass over
        the test design (all of them at once were 600 MB at KKBOX size). One BLAS thread: the same
        sums on any engine, in any chunk of groups."""
        groups = list(groups)
        with threadpool_limits(1, "blas"):
            thetas = [self.group_theta(np.asarray(rows, dtype=np.int64)) for rows in groups]
        for s in range(0, len(groups), GROUP_BATCH):   # DesignRows' products run on one BLAS thread
            logits = np.ascontiguousarray((self.Xt @ np.column_stack(thetas[s:s + GROUP_BATCH])).T)
            for f, rows in zip(logits, groups[s:s + GROUP_BATCH]):
                yield self.f_test.copy() if len(rows) == 0 else f

    def group_logits(self, rows: np.ndarray) -> np.ndarray:
        return next(self.group_logits_many([rows]))

    def refit_logits(self, row: int, steps: int = 50) -> tuple[np.ndarray, float]:
        """Exact retraining without the row, to machine precision.

        The objective without the row is minimised by chord iterations, theta -= H_i^-1 grad(theta),
        with H_i the Hessian at the all-rows optimum minus the row's own term (a rank-one downdate):
        the optimum moves so little that this converges to the exact minimiser in a few gradient
        evaluations (scikit-learn's lbfgs stops at its tolerance, far above a one-row effect).
        """
        w = np.ones(len(self.X))
        w[row] = 0.0
        x = with_intercept(self.X[row:row + 1])[0]
        q = cho_solve(self.H_cho, x)
        denom = 1.0 - self.w[row] * (x @ q)

        def solve(g):  # (H - w_i x x')^-1 g by Sherman-Morrison
            hg = cho_solve(self.H_cho, g)
            return hg + q * (self.w[row] * (x @ hg) / denom)

        theta = self.theta.copy()
        for _ in range(steps):
            step = solve(self.gradient(theta, w, _sigmoid(self.logits(theta))))
            theta -= step
            if np.abs(step).max() < 1e-15 * max(1.0, np.abs(theta).max()):
                break
        return self.Xt @ theta, float(x @ theta)
