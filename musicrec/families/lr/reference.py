"""scikit-learn's LogisticRegression refitted without a row: the reference of lr's estimates.

The analysed model's C, L2 penalty and unpenalised intercept on the same design, newton-cholesky
to tol 1e-10, warm-started from the all-rows optimum, the row given weight 0 (scikit-learn's
objective is a weighted mean, so this is the optimum without the row).

newton-cholesky forms its Hessian X' diag(W) X as X.T @ (W[:, None] * X) (sklearn.linear_model.
_linear_loss.sandwich_dot): a temporary as large as the float64 design, 5 GB at KKBOX size. While
the reference fits, that one product is summed over row blocks instead (chunked_hessian): the
same solver, loss, line search and stopping rule, the Hessian's sums in another order (a relative
difference of ~1e-16, tested).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from musicrec.families.lr.influence import with_intercept
from musicrec.influence.base import model_threads
from musicrec.influence.reference import LibraryReference

LR_EXACT = {"solver": "newton-cholesky", "tol": 1e-10, "max_iter": 100}
HESSIAN_ROWS = 65_536   # rows per block of the Hessian's sum


@contextmanager
def chunked_hessian(rows: int = HESSIAN_ROWS):
    """scikit-learn's Hessian product summed over row blocks of `rows` while the block runs (see the
    module docstring); scikit-learn's own where it has no sandwich_dot to replace."""
    from sklearn.linear_model import _linear_loss

    original = getattr(_linear_loss, "sandwich_dot", None)
    if original is None:
        yield
        return

    def blocked(X, W):
        if sparse.issparse(X) or X.shape[0] <= rows:
            return original(X, W)
        out = np.zeros((X.shape[1], X.shape[1]), dtype=X.dtype)
        for s in range(0, X.shape[0], rows):
            x = X[s:s + rows]
            out += x.T @ (W[s:s + rows, None] * x)
        return out

    _linear_loss.sandwich_dot = blocked
    try:
        yield
    finally:
        _linear_loss.sandwich_dot = original


def logistic(est, X: np.ndarray, weights: np.ndarray | None = None,
             warm: np.ndarray | None = None) -> LogisticRegression:
    """scikit-learn's fit of the estimator's objective on its design X (without the intercept column)."""
    lr = LogisticRegression(C=est.C, fit_intercept=True, **LR_EXACT)
    if warm is not None:
        lr.set_params(warm_start=True)
        lr.coef_, lr.intercept_ = warm[None, :-1].copy(), warm[-1:].copy()
    with threadpool_limits(model_threads(est.model), "blas"), chunked_hessian():
        return lr.fit(X, est.y, sample_weight=weights)


def lr_theta(lr: LogisticRegression) -> np.ndarray:
    return np.concatenate([lr.coef_.ravel(), lr.intercept_])


class LogisticReference(LibraryReference):
    """The parameter vector (coefficients, then intercept) scikit-learn fits on the estimator's own
    design (C-contiguous, no intercept column: no copy), without each row."""

    def __init__(self, est):
        super().__init__(est)
        self.test_design = est.Xt

    def fit(self, row: int | None = None) -> np.ndarray:
        w = np.ones(len(self.est.X))
        if row is not None:
            w[row] = 0.0
        return lr_theta(logistic(self.est, self.est.X, w, warm=self.est.theta))

    def logits(self, fit: np.ndarray, X: np.ndarray) -> np.ndarray:
        return X @ fit

    def change(self, base: np.ndarray, fit: np.ndarray, X: np.ndarray) -> np.ndarray:
        return X @ (fit - base)

    def train_rows(self, rows) -> np.ndarray:
        return with_intercept(self.est.X[rows])
