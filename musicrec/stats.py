"""Intervals every stage reports, taken from scipy where scipy has them.

One normal quantile (Z95) for every closed-form interval; Wilson intervals of rates from
`scipy.stats.binomtest`; bootstrap intervals from `scipy.stats.bootstrap`.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.stats import DegenerateDataWarning, binomtest, bootstrap, norm

Z95 = float(norm.ppf(0.975))   # the two-sided 95% normal quantile, 1.959964...
BOOTSTRAP = 1000               # resamples of every bootstrap interval


def wilson_interval(k: int, n: int) -> list[float] | None:
    """95% Wilson score interval of the rate k / n (None when n = 0)."""
    if n == 0:
        return None
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return [float(ci.low), float(ci.high)]


def hanley_mcneil_interval(auc: float, n_pos: int, n_neg: int) -> list[float] | None:
    """95% interval of an AUC from Hanley & McNeil (1982): its standard error from the AUC and the
    class sizes (scipy has no AUC interval). None when a class is empty."""
    if n_pos < 1 or n_neg < 1:
        return None
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    se = math.sqrt(max(var, 0.0))
    return [max(0.0, auc - Z95 * se), min(1.0, auc + Z95 * se)]


def bootstrap_interval(data: tuple[np.ndarray, ...], statistic, rng: np.random.Generator, draws: int = BOOTSTRAP,
                       paired: bool = False, batch: int | None = None) -> list[float] | None:
    """Percentile bootstrap 95% interval of `statistic` (vectorised: it takes `axis`), resampled by
    scipy.stats.bootstrap; `paired` resamples the arrays' rows together; `batch` resamples at a
    time (bounds memory). Resamples where the statistic is undefined (NaN: a constant side of a
    correlation) are left out; None when they are half or more."""
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)   # a perfect agreement resamples to one value
        res = bootstrap(data, statistic, n_resamples=draws, batch=batch, vectorized=True, paired=paired,
                        method="percentile", rng=rng)
    dist = np.asarray(res.bootstrap_distribution, dtype=np.float64)
    dist = dist[np.isfinite(dist)]
    if len(dist) < max(1, draws // 2):
        return None
    low, high = np.quantile(dist, [0.025, 0.975])
    return [float(low), float(high)]


def user_bootstrap_auc_gaps(y: np.ndarray, user: np.ndarray, scores: dict[str, np.ndarray], reference: str,
                            rng: np.random.Generator, draws: int = 300) -> dict:
    """Each score's AUC, and the reference's AUC minus each other's, with 95% intervals from a
    bootstrap over users (a user's rows move together: they are not independent), every score
    computed on the same resample (so a gap's interval is paired). scipy.stats.bootstrap resamples
    the user indices; the statistic weights every row by how often its user was drawn."""
    from sklearn.metrics import roc_auc_score

    _, user = np.unique(user, return_inverse=True)
    n_users = int(user.max()) + 1
    names = list(scores)
    others = [n for n in names if n != reference]

    def statistic(drawn):
        w = np.bincount(drawn, minlength=n_users)[user]
        auc = {n: roc_auc_score(y, scores[n], sample_weight=w) for n in names}
        return np.array([*(auc[n] for n in names), *(auc[reference] - auc[n] for n in others)])

    res = bootstrap((np.arange(n_users),), statistic, n_resamples=draws, vectorized=False, method="percentile", rng=rng)
    point = statistic(np.arange(n_users))
    lo, hi = res.confidence_interval.low, res.confidence_interval.high
    out = {"rows": int(len(y)), "users": n_users, "draws": draws,
           "auc": {n: {"value": float(point[i]), "ci95": [float(lo[i]), float(hi[i])]} for i, n in enumerate(names)}}
    out["gap"] = {n: {"value": float(point[len(names) + j]), "ci95": [float(lo[len(names) + j]), float(hi[len(names) + j])]}
                  for j, n in enumerate(others)}
    return out


def clustered_mean_interval(values: np.ndarray, clusters: np.ndarray) -> list[float] | None:
    """95% interval of the mean of `values` whose rows come in clusters (non-negative int ids: a
    user's test rows are not independent), from the cluster-robust standard error of the ratio
    of cluster sums. scipy has no clustered interval; a bootstrap over users per group and half
    would cost minutes at KKBOX size. None with fewer than two clusters."""
    s = np.bincount(clusters, weights=values)
    c = np.bincount(clusters).astype(np.float64)
    live = c > 0
    s, c = s[live], c[live]
    g = len(c)
    if g < 2:
        return None
    m = s.sum() / c.sum()
    se = math.sqrt(g / (g - 1) * float(((s - m * c) ** 2).sum())) / c.sum()
    return [float(m - Z95 * se), float(m + Z95 * se)]
