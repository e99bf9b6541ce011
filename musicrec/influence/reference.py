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
from musicrec.models.sklearn_models import fit_without_rows

LIBRARY = {"nb": "scikit-learn GaussianNB refit without the row (same float64 design)",
           "lr": "scikit-learn LogisticRegression refit without the row (newton-cholesky, tol 1e-10, "
                 "the analysed model's C, L2 penalty, unpenalised intercept, same design, warm start)",
           "rf": "full retraining of the forest with the saved model's arguments",
           "lgbm": "full retraining of LightGBM with the saved model's arguments and number of trees",
           "als": "full retraining of implicit ALS and its calibration with the saved model's arguments"}


def gaussian_nb(est, keep: np.ndarray) -> GaussianNB:
    """GaussianNB on the estimator's design rows `keep` (swapped out of a view, not copied)."""
    return fit_without_rows(GaussianNB(var_smoothing=est.vs).fit, est.Z, est.y, np.flatnonzero(~keep))


def nb_logits(nb: GaussianNB, Z: np.ndarray) -> np.ndarray:
    jll = nb.predict_joint_log_proba(Z)
    return jll[:, 1] - jll[:, 0]


def nb_logit_change(base: GaussianNB, new: GaussianNB, Z: np.ndarray) -> np.ndarray:
    """Log-odds of `new` minus those of `base`, from the two fits' parameters (means, variances,
    class counts) without subtracting their joint log-likelihoods: those are ~10 in size, so their
    difference carries ~1e-15 of rounding in a change of ~1e-6, which alone is ~1e-9 relative.
    Per class, (x - theta')^2 / v' - (x - theta)^2 / v is written in the parameter changes."""
    out = np.zeros(len(Z))
    n, n_new = base.class_count_.sum(), new.class_count_.sum()
    for c, sign in ((1, 1.0), (0, -1.0)):
        theta, v = base.theta_[c], base.var_[c]
        d_theta, d_v = new.theta_[c] - theta, new.var_[c] - v
        a = Z - theta
        quad = (d_theta * v * (d_theta - 2 * a) - a * a * d_v) / (v * (v + d_v))
        d_prior = (np.log1p((new.class_count_[c] - base.class_count_[c]) / base.class_count_[c])
                   - np.log1p((n_new - n) / n))
        out += sign * (d_prior - 0.5 * np.log1p(d_v / v).sum() - 0.5 * quad.sum(axis=1))
    return out


def logistic(est, X: np.ndarray, weights: np.ndarray | None = None,
             warm: np.ndarray | None = None) -> LogisticRegression:
    """scikit-learn's fit of the estimator's objective on its design X (without the intercept column)."""
    lr = LogisticRegression(C=est.C, fit_intercept=True, **LR_EXACT)
    if warm is not None:
        lr.set_params(warm_start=True)
        lr.coef_, lr.intercept_ = warm[None, :-1].copy(), warm[-1:].copy()
    with threadpool_limits(1, "blas"):
        return lr.fit(X, est.y, sample_weight=weights)


def library_design(est) -> np.ndarray | None:
    """lr's design without its intercept column, contiguous, made once for all of library_loo's
    fits (scikit-learn would copy the strided view on every fit: a design's worth of memory and
    seconds at millions of rows); nb fits the estimator's own design."""
    return np.ascontiguousarray(est.X[:, :-1]) if est.name == "lr" else None


def lr_theta(lr: LogisticRegression) -> np.ndarray:
    return np.concatenate([lr.coef_.ravel(), lr.intercept_])


def library_fit(est, row: int | None = None, X: np.ndarray | None = None):
    """The library's model fitted without `row` (None: on all rows): a GaussianNB, or the
    LogisticRegression's parameter vector (coefficients, then intercept) on X (library_design)."""
    if est.name == "nb":
        keep = np.ones(est.n, dtype=bool)
        if row is not None:
            keep[row] = False
        return gaussian_nb(est, keep)
    if est.name == "lr":
        w = np.ones(len(est.X))
        if row is not None:
            w[row] = 0.0
        return lr_theta(logistic(est, library_design(est) if X is None else X, w, warm=est.theta))
    raise ValueError(f"no closed library refit for {est.name}; retrain it with the Retrainer")


def library_logits(est, fit, X: np.ndarray) -> np.ndarray:
    return nb_logits(fit, X) if est.name == "nb" else X @ fit


def library_change(est, base, fit, X: np.ndarray) -> np.ndarray:
    """Logits of `fit` minus those of `base` on design rows X, from the parameters' change."""
    return nb_logit_change(base, fit, X) if est.name == "nb" else X @ (fit - base)


def _design(est) -> tuple[np.ndarray, np.ndarray]:
    """The estimator's (train, test) design matrices, as the library is fitted on them."""
    return (est.Z, est.Zt) if est.name == "nb" else (est.X, est.Xt)


def library_loo(est, rows: np.ndarray, parts: dict[str, np.ndarray], progress=None) -> dict:
    """Exact leave-one-out of each row by the library refit, against the library's own all-rows
    fit: per test part the log-loss and AUROC change (arrays over rows), "self" (the row's own
    log-loss change) and "own_loss" (its log-loss without it)."""
    X, Xt = _design(est)
    X_fit = library_design(est)
    base = library_fit(est, X=X_fit)
    f_test, f_own = library_logits(est, base, Xt), library_logits(est, base, X[rows])
    dF, d_own = np.empty((len(rows), len(Xt))), np.empty(len(rows))
    for k, r in enumerate(rows):
        fit = library_fit(est, int(r), X_fit)
        dF[k], d_own[k] = library_change(est, base, fit, Xt), library_change(est, base, fit, X[r:r + 1])[0]
        if progress is not None:
            progress.update()
    del X_fit
    out = {p: metric_changes(est.y_test[j], f_test[j], dF[:, j]) for p, j in parts.items()}
    y = est.train.y[rows].astype(np.float64)
    out["self"] = loss_change(y, f_own, d_own)
    out["own_loss"] = row_losses(y, f_own) + out["self"]
    return out
