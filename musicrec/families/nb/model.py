"""Gaussian naive Bayes on the numeric (non-categorical) features, scikit-learn's GaussianNB."""
from __future__ import annotations

import numpy as np
from sklearn.naive_bayes import GaussianNB

from musicrec.models.sklearn_base import SklearnModel, fit_without_rows


class NaiveBayesModel(SklearnModel):
    """GaussianNB on the numeric (non-categorical) features."""

    name = "nb"
    dtype = np.float32  # half the memory of the design at KKBOX scale; the influence stage refits in float64
    block_fit = False   # stage 06's retrains: GaussianNB column block by column block in float64 (ColumnBlockNB)

    def __init__(self, var_smoothing: float = 1e-9, scale: str = "standard", random_state: int = 0):
        self.var_smoothing, self.scale, self.random_state = var_smoothing, scale, random_state

    def make_estimator(self):
        return GaussianNB(var_smoothing=self.var_smoothing)

    def fit_prepared(self, prepared, sample_weight=None, init=None) -> "NaiveBayesModel":
        """0/1 weights delete the zero-weight rows: GaussianNB takes its var_smoothing epsilon from
        the variance of every row it is given, whatever its weight, so weight 0 is not removal.

        The deleted rows are swapped out of a view (fit_without_rows), not copied away."""
        if self.block_fit:
            return self._fit_blocks(prepared, sample_weight)
        if sample_weight is None or not np.isin(sample_weight, (0.0, 1.0)).all():
            return super().fit_prepared(prepared, sample_weight, init)
        design, X, y = prepared
        return fit_without_rows(lambda Xk, yk: super(NaiveBayesModel, self).fit_prepared((design, Xk, yk), None, init),
                                X, y, np.flatnonzero(np.asarray(sample_weight) == 0))

    def _fit_blocks(self, prepared, sample_weight) -> "NaiveBayesModel":
        """GaussianNB's fit in float64 a block of columns at a time (no design-sized temporary),
        rows of weight 0 deleted; other weights are not supported here."""
        from musicrec.families.nb.reference import ColumnBlockNB
        from musicrec.parallel import cores

        self.design_, X, y = prepared
        gone = np.empty(0, dtype=np.int64)
        if sample_weight is not None:
            if not np.isin(sample_weight, (0.0, 1.0)).all():
                raise ValueError("a column-block naive Bayes fit takes 0/1 row weights only")
            gone = np.flatnonzero(np.asarray(sample_weight) == 0)
        self.estimator_ = fit_without_rows(ColumnBlockNB(self.var_smoothing, threads=cores()).fit, X, y, gone)
        return self

    def predict_logit(self, data) -> np.ndarray:
        """GaussianNB's joint log-likelihood difference, in row blocks (its temporaries are row copies)."""
        X = self.design_.transform(data, self.dtype)
        out = np.empty(len(X))
        for s in range(0, len(X), 100_000):
            jll = self.estimator_.predict_joint_log_proba(X[s:s + 100_000])
            out[s:s + 100_000] = jll[:, 1] - jll[:, 0]
        return out
