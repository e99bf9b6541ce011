"""Exact leave-one-out by the library's own refit: what every estimate is checked against.

Naive Bayes: scikit-learn's GaussianNB fitted on the same float64 design without the row.
Logistic regression: scikit-learn's LogisticRegression with the analysed model's C, L2 penalty and
unpenalised intercept on the same design, newton-cholesky to tol 1e-10, warm-started from the
all-rows optimum, the row given weight 0 (scikit-learn's objective is a weighted mean, so this is
the optimum without the row). The randomised families (rf, lgbm, als) are retrained in full by
the Retrainer with the saved model's arguments. The estimators' own refits stay as a fast path
and as a check of their bookkeeping, but the reported agreement is against these.
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from threadpoolctl import threadpool_limits

from musicrec.influence.losses import loss_change, metric_changes, row_losses
from musicrec.influence.retrain import LR_EXACT

LIBRARY = {"nb": "scikit-learn GaussianNB refit without the row (same float64 design)",
           "lr": "scikit-learn LogisticRegression refit without the row (newton-cholesky, tol 1e-10, "
                 "the analysed model's C, L2 penalty, unpenalised intercept, same design, warm start)",
           "rf": "full retraining of the forest with the saved model's arguments",
           "lgbm": "full retraining of LightGBM with the saved model's arguments and number of trees",
           "als": "full retraining of implicit ALS and its calibration with the saved model's arguments"}


def gaussian_nb(est, keep: np.ndarray) -> GaussianNB:
    return GaussianNB(var_smoothing=est.vs).fit(est.Z[keep], est.y[keep])


def nb_logits(nb: GaussianNB, Z: np.ndarray) -> np.ndarray:
    jll = nb.predict_joint_log_proba(Z)
    return jll[:, 1] - jll[:, 0]


def logistic(est, weights: np.ndarray | None = None, warm: np.ndarray | None = None) -> LogisticRegression:
    """scikit-learn's fit of the estimator's objective on its design (last column: the intercept)."""
    lr = LogisticRegression(C=est.C, fit_intercept=True, **LR_EXACT)
    if warm is not None:
        lr.set_params(warm_start=True)
        lr.coef_, lr.intercept_ = warm[None, :-1].copy(), warm[-1:].copy()
    with threadpool_limits(1, "blas"):
        return lr.fit(est.X[:, :-1], est.y, sample_weight=weights)


def lr_theta(lr: LogisticRegression) -> np.ndarray:
    return np.concatenate([lr.coef_.ravel(), lr.intercept_])


def library_fit(est, row: int | None = None):
    """The library's model fitted without `row` (None: on all rows) and a function giving its
    logits of design rows."""
    if est.name == "nb":
        keep = np.ones(est.n, dtype=bool)
        if row is not None:
            keep[row] = False
        nb = gaussian_nb(est, keep)
        return lambda Z: nb_logits(nb, Z)
    if est.name == "lr":
        w = np.ones(len(est.X))
        if row is not None:
            w[row] = 0.0
        theta = lr_theta(logistic(est, w, warm=est.theta))
        return lambda X: X @ theta
    raise ValueError(f"no closed library refit for {est.name}; retrain it with the Retrainer")


def _design(est) -> tuple[np.ndarray, np.ndarray]:
    """The estimator's (train, test) design matrices, as the library is fitted on them."""
    return (est.Z, est.Zt) if est.name == "nb" else (est.X, est.Xt)


def library_loo(est, rows: np.ndarray, parts: dict[str, np.ndarray], progress=None) -> dict:
    """Exact leave-one-out of each row by the library refit, against the library's own all-rows
    fit: per test part the log-loss and AUROC change (arrays over rows), "self" (the row's own
    log-loss change) and "own_loss" (its log-loss without it)."""
    X, Xt = _design(est)
    base = library_fit(est)
    f_test, f_own = base(Xt), base(X[rows])
    F, own = np.empty((len(rows), len(Xt))), np.empty(len(rows))
    for k, r in enumerate(rows):
        fit = library_fit(est, int(r))
        F[k], own[k] = fit(Xt), fit(X[r:r + 1])[0]
        if progress is not None:
            progress.update()
    out = {p: metric_changes(est.y_test[j], f_test[j], F[:, j] - f_test[j]) for p, j in parts.items()}
    y = est.train.y[rows].astype(np.float64)
    out["self"] = loss_change(y, f_own, own - f_own)
    out["own_loss"] = row_losses(y, f_own) + out["self"]
    return out
