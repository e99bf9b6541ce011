"""Figures with their sample size and a 95% interval: correlations, lifts, ratios.

Every correlation stage 06 reports goes through `correlation`, so none is printed without its n
and interval; a ceiling whose interval reaches below CEILING_FLOOR is "not measurable" and never
divided by. Bootstrap draws come from a generator the caller derives from the config seed.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score

from musicrec.stats import BOOTSTRAP, Z95, bootstrap_interval

MAX_DRAWN = 10_000_000   # bootstrap draws x pairs at most
MIN_DRAWS = 50           # above MAX_DRAWN / MIN_DRAWS pairs the interval is Fisher's z instead
CEILING_FLOOR = 0.2
NOT_MEASURABLE = "not measurable"


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of every row pair of a and b (B, n); NaN where a row is constant."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


def correlation(a, b, rng: np.random.Generator, method: str = "spearman", draws: int = BOOTSTRAP) -> dict:
    """{value, n, ci95, method, interval} of the Pearson or Spearman correlation of a and b; the
    interval a percentile bootstrap over the pairs (scipy.stats.bootstrap, paired, at most
    MAX_DRAWN pairs in memory at a time), or Fisher's z above MAX_DRAWN / MIN_DRAWS pairs; value
    None when fewer than 3 pairs or a constant side."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n = int(len(a))
    out = {"value": None, "n": n, "ci95": None, "method": method}
    if n < 3 or np.std(a) == 0 or np.std(b) == 0:
        return out
    prep = (lambda x: rankdata(x, axis=-1)) if method == "spearman" else (lambda x: x)
    out["value"] = float(_pearson_rows(prep(a)[None], prep(b)[None])[0])
    if n > MAX_DRAWN // MIN_DRAWS:
        # millions of pairs (every training row at KKBOX size): 50 resamples would hold ~10 GB and take
        # minutes for an interval a thousandth wide; Fisher's z with Fieller's variance for Spearman
        out.update(interval="fisher_z", ci95=fisher_interval(out["value"], n, method))
        return out
    draws = max(MIN_DRAWS, min(draws, MAX_DRAWN // n))

    def statistic(x, y, axis=-1):
        x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
        return _pearson_rows(prep(np.atleast_2d(x)), prep(np.atleast_2d(y))).reshape(x.shape[:-1])

    out.update(interval="bootstrap", draws=draws,
               ci95=bootstrap_interval((a, b), statistic, rng, draws, paired=True, batch=max(1, MAX_DRAWN // n // 4)))
    return out


def fisher_interval(r: float, n: int, method: str) -> list[float]:
    """95% interval of a correlation from Fisher's z; Spearman's variance 1.06 / (n - 3) (Fieller,
    Hartley and Pearson 1957), Pearson's 1 / (n - 3)."""
    se = np.sqrt((1.06 if method == "spearman" else 1.0) / (n - 3))
    z = np.arctanh(np.clip(r, -0.999999, 0.999999))
    return [float(np.tanh(z - Z95 * se)), float(np.tanh(z + Z95 * se))]


def ceiling(a, b, rng: np.random.Generator) -> dict:
    """Noise ceiling: Spearman of exact leave-one-out under two seeds; "not measurable" when its
    interval reaches below CEILING_FLOOR (then no share of it is reported)."""
    c = correlation(a, b, rng)
    c["measurable"] = bool(c["ci95"] is not None and c["ci95"][0] >= CEILING_FLOOR)
    if not c["measurable"]:
        c["note"] = (f"{NOT_MEASURABLE}: the 95% interval reaches below {CEILING_FLOOR} (one row's effect "
                     "is not larger than the seed's), so no share of it is reported")
    return c


def seed_ceiling(predicted, first, second, rng: np.random.Generator) -> dict:
    """The ceiling of retrained changes under two seeds, with the predictions' Spearman against the
    mean of both retrainings: a reference with less of the seed's noise than either."""
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    out = ceiling(first, second, rng)
    out["predicted_vs_mean_of_seeds"] = correlation(predicted, (first + second) / 2, rng)
    return out


def share_of_ceiling(estimate: dict, ceil: dict) -> float | str | None:
    """The estimate's Spearman as a share of the ceiling, only where the ceiling is measurable."""
    if not ceil.get("measurable"):
        return NOT_MEASURABLE
    return None if estimate.get("value") is None else estimate["value"] / ceil["value"]


def lift(order: np.ndarray, flipped: np.ndarray, top: float, rng: np.random.Generator,
         draws: int = BOOTSTRAP) -> dict:
    """Share of flipped rows among the first `top` of `order`, over the share among all rows, with
    a parametric bootstrap 95% interval: binomial resampling of both counts (the top set is fixed by
    the ranking; its flipped count and the overall rate are what sampling varies). scipy.stats.bootstrap
    resamples data, not a ratio of two binomial counts, so the draws are made here."""
    n = len(order)
    k = max(1, int(round(top * n)))
    hits = int(flipped[order[:k]].sum())
    rate = float(flipped.mean())
    out = {"top": top, "rows": k, "flipped_in_top": hits, "value": None, "ci95": None}
    if rate == 0:
        return out
    out["value"] = (hits / k) / rate
    top_b = rng.binomial(k, hits / k, draws) / k
    all_b = rng.binomial(n, rate, draws) / n
    out["ci95"] = [float(x) for x in np.quantile(top_b / np.maximum(all_b, 1.0 / n), [0.025, 0.975])]
    return out


def detector(scores: np.ndarray, flipped: np.ndarray, rng: np.random.Generator, tops=(0.05, 0.10)) -> dict:
    """A ranking as a detector of flipped labels: larger score = more suspect. Lift at each top
    share (with interval) and the precision-recall AUC (average precision; a random ranking scores
    the flipped share)."""
    scores = np.where(np.isfinite(scores), scores, -np.inf)
    order = np.argsort(-scores, kind="stable")
    out = {f"lift_{int(round(t * 100))}pct": lift(order, flipped, t, rng) for t in tops}
    finite = np.isfinite(scores)
    out["pr_auc"] = float(average_precision_score(flipped[finite], scores[finite])) if flipped[finite].any() else None
    out["n"] = int(len(scores))
    return out
