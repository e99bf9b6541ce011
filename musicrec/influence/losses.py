"""Test metrics as functions of the models' test logits, and their gradients.

Every estimator turns "remove training row i" into a change of the test logits; these functions
say how the test log-loss and AUROC respond. Log-loss uses the same clipping as
musicrec.metrics (probabilities in [1e-15, 1 - 1e-15]), so a clipped row has zero gradient.
AUROC is a step function of the scores, so its gradient is that of a Gaussian-smoothed AUROC.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

from musicrec.metrics import PROB_CLIP, rank_auc

LOSS_CAP = -np.log(PROB_CLIP)  # the largest per-row log-loss after clipping (~34.5)
X_CAP = np.log(np.expm1(LOSS_CAP))  # softplus(x) >= LOSS_CAP exactly when x >= X_CAP


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), PROB_CLIP, 1 - PROB_CLIP)
    return np.log(p) - np.log1p(-p)


def row_losses(y: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Per-row log-loss of logits f (numerically stable, clipped like musicrec.metrics)."""
    s = np.where(np.asarray(y) == 1, 1.0, -1.0)
    return np.minimum(np.logaddexp(0.0, -s * f), LOSS_CAP)


def logloss(y: np.ndarray, f: np.ndarray) -> np.ndarray | float:
    """Mean test log-loss; f may be (n,) or (k, n) for k variants of the scores at once."""
    return row_losses(y, f).mean(axis=-1)


def auc(y: np.ndarray, f: np.ndarray) -> float:
    """AUROC of logits f (musicrec.metrics.rank_auc); both classes must be among the scored rows."""
    value = rank_auc(y, f)
    if value is None:
        raise ValueError("AUROC needs both classes among the scored rows")
    return value


def logloss_derivatives(y: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d(mean loss)/df_j and d2/df_j2 per test row; zero where the loss is clipped (flat)."""
    with np.errstate(over="ignore"):
        p = 1.0 / (1.0 + np.exp(-f))
    live = row_losses(y, f) < LOSS_CAP
    n = len(f)
    return np.where(live, p - y, 0.0) / n, np.where(live, p * (1 - p), 0.0) / n


def silverman_bandwidth(f: np.ndarray) -> float:
    sd = float(np.std(f))
    iqr = float(np.subtract(*np.percentile(f, [75, 25]))) / 1.349
    spread = min(sd, iqr) if iqr > 0 else sd
    return 0.9 * max(spread, 1e-6) * len(f) ** -0.2


def _kde(points: np.ndarray, at: np.ndarray, h: float, grid: int = 4096) -> np.ndarray:
    """Gaussian kernel density of `points` evaluated `at`, by linear binning and FFT convolution."""
    lo = min(points.min(), at.min()) - 5 * h
    hi = max(points.max(), at.max()) + 5 * h
    step = (hi - lo) / (grid - 1)
    pos = (points - lo) / step
    i = np.clip(np.floor(pos).astype(np.int64), 0, grid - 2)
    frac = pos - i
    mass = np.bincount(i, 1 - frac, minlength=grid) + np.bincount(i + 1, frac, minlength=grid)
    half = int(np.ceil(5 * h / step))
    x = np.arange(-half, half + 1) * step
    kernel = np.exp(-0.5 * (x / h) ** 2) / (h * np.sqrt(2 * np.pi))
    dens = np.maximum(fftconvolve(mass, kernel, mode="same"), 0.0) / len(points)  # FFT round-off
    return np.interp(at, lo + step * np.arange(grid), dens)


def auc_gradient(y: np.ndarray, f: np.ndarray, bandwidth: float | None = None) -> np.ndarray:
    """d AUC_h / d f_j for AUC_h = mean over (pos a, neg b) pairs of Phi((f_a - f_b) / h).

    For a positive row this is the density of the negatives' scores at f_j divided by the number
    of positives; for a negative row minus the positives' density over the number of negatives.
    h defaults to Silverman's rule on all test scores.
    """
    y = np.asarray(y)
    h = silverman_bandwidth(f) if bandwidth is None else bandwidth
    pos, neg = f[y == 1], f[y == 0]
    g = np.empty(len(f))
    g[y == 1] = _kde(neg, pos, h) / len(pos)
    g[y == 0] = -_kde(pos, neg, h) / len(neg)
    return g


def test_directions(y: np.ndarray, f: np.ndarray) -> dict[str, np.ndarray]:
    """The per-test-row weights that first-order estimates contract with: one per metric."""
    g, _ = logloss_derivatives(y, f)
    return {"logloss": g, "auc": auc_gradient(y, f)}


def loss_change(y: np.ndarray, f: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """row_losses(y, f + delta) - row_losses(y, f) without cancellation (log1p form).

    delta may have a leading axis (k, n) for k removed rows at once.
    """
    y = np.asarray(y)
    s = np.where(y == 1, 1.0, -1.0)
    # loss = softplus(-s f); change = log1p(q * expm1(-s delta)), q = sigmoid(-s f)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):   # such rows are replaced below
        q = 1.0 / (1.0 + np.exp(s * f))
        out = np.expm1(-s * delta)
        out *= q
        out = np.log1p(out, out=out)
    old = row_losses(y, f)
    # clipped losses (the new loss clips where -s (f + delta) >= X_CAP), and moves so large
    # (|delta| > ~700) that the log1p form overflows, where cancellation does not matter: the
    # plain difference, computed for those rows only
    direct = -s * (f + delta) >= X_CAP
    direct |= old >= LOSS_CAP
    direct |= ~np.isfinite(out)
    if direct.any():
        idx = np.nonzero(direct)
        f_b, s_b, old_b = (np.broadcast_to(v, out.shape)[idx] for v in (f, s, old))
        new = np.minimum(np.logaddexp(0.0, -s_b * (f_b + np.broadcast_to(delta, out.shape)[idx])), LOSS_CAP)
        out[idx] = new - old_b
    return out


def metric_changes(y: np.ndarray, f: np.ndarray, delta: np.ndarray) -> dict[str, np.ndarray]:
    """Exact change of mean log-loss and AUROC for each row of delta (k, n)."""
    delta = np.atleast_2d(delta)
    base = auc(y, f)
    return {"logloss": loss_change(y, f, delta).mean(axis=1),
            "auc": np.array([auc(y, f + d) - base for d in delta])}
