"""Intervals every stage reports, taken from scipy where scipy has them.

One normal quantile (Z95) for every closed-form interval; Wilson intervals of rates from
`scipy.stats.binomtest`; bootstrap intervals from `scipy.stats.bootstrap`.
"""
from __future__ import annotations

from scipy.stats import binomtest, norm

Z95 = float(norm.ppf(0.975))   # the two-sided 95% normal quantile, 1.959964...


def wilson_interval(k: int, n: int) -> list[float] | None:
    """95% Wilson score interval of the rate k / n (None when n = 0)."""
    if n == 0:
        return None
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return [float(ci.low), float(ci.high)]
