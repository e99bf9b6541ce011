"""scikit-learn's LogisticRegression refitted without a row: the reference of lr's estimates.

The analysed model's C, L2 penalty and unpenalised intercept on the same design, newton-cholesky
to tol 1e-10, warm-started from the all-rows optimum, the row given weight 0 (scikit-learn's
objective is a weighted mean, so this is the optimum without the row).
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from musicrec.families.lr.influence import with_intercept
from musicrec.influence.reference import LibraryReference

LR_EXACT = {"solver": "newton-cholesky", "tol": 1e-10, "max_iter": 100}


def logistic(est, X: np.ndarray, weights: np.ndarray | None = None,
             warm: np.ndarray | None = None) -> LogisticRegression:
    """scikit-learn's fit of the estimator's objective on its design X (without the intercept column)."""
    lr = LogisticRegression(C=est.C, fit_intercept=True, **LR_EXACT)
    if warm is not None:
        lr.set_params(warm_start=True)
        lr.coef_, lr.intercept_ = warm[None, :-1].copy(), warm[-1:].copy()
    with threadpool_limits(1, "blas"):
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
