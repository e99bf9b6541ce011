"""Intervals from musicrec.stats against simulation: each must cover what it claims to."""
import numpy as np
import pytest
from scipy.stats import rankdata

from musicrec.stats import Z95, bootstrap_interval, hanley_mcneil_interval


def test_auc_interval_has_the_spread_of_simulated_aucs():
    """Hanley & McNeil's SE is exact for exponential scores: compare with the spread of simulated AUCs."""
    rng = np.random.default_rng(0)
    n_pos, n_neg, reps = 40, 60, 4000
    neg = rng.exponential(1.0, (reps, n_neg))
    pos = rng.exponential(4.0, (reps, n_pos))  # P(pos > neg) = 4 / (1 + 4) = 0.8
    ranks = rankdata(np.hstack([pos, neg]), axis=1)
    aucs = (ranks[:, :n_pos].sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    lo, hi = hanley_mcneil_interval(0.8, n_pos, n_neg)
    assert (hi - lo) / (2 * Z95) == pytest.approx(aucs.std(), rel=0.05)
    assert np.mean((aucs >= lo) & (aucs <= hi)) == pytest.approx(0.95, abs=0.015)


def test_paired_bootstrap_interval_covers_a_difference_of_means():
    """Paired resampling of two correlated samples: the interval of the mean difference covers the
    true difference in ~95% of draws, and is narrower than resampling the two sides apart."""
    rng = np.random.default_rng(3)
    covered, widths = 0, []
    for _ in range(150):
        a = rng.normal(size=80)
        b = a + rng.normal(0.2, 0.3, size=80)       # true difference of means 0.2
        ci = bootstrap_interval((b, a), lambda x, y, axis: (x - y).mean(axis=axis), rng, draws=400, paired=True)
        covered += ci[0] <= 0.2 <= ci[1]
        widths.append(ci[1] - ci[0])
    assert 0.88 <= covered / 150 <= 0.99
    assert np.mean(widths) < 2 * Z95 * np.sqrt(2 / 80) / 2     # far below the unpaired width (sd 1 each side)
