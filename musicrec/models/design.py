"""The numeric design matrix of the scikit-learn families: NaN filled, optionally scaled.

Fitted on the train split only. Influence analysis treats this transform as part of the feature
map (fitted once, held fixed when rows are removed), exactly like the stage-03 features.
"""
from __future__ import annotations

import numpy as np
from sklearn.preprocessing import QuantileTransformer

from musicrec.models.base import FeatureSet


class NumericDesign:
    """Median imputation + `standard` | `quantile` | `none` scaling of the chosen columns."""

    def __init__(self, columns: list[str], scale: str = "standard", random_state: int = 0):
        self.columns = list(columns)
        self.scale = scale
        self.random_state = random_state

    def fit(self, data: FeatureSet) -> "NumericDesign":
        X = self._select(data)
        self.median_ = np.nan_to_num(np.nanmedian(X, axis=0), nan=0.0) if len(X) else np.zeros(X.shape[1])
        X = self._impute(X)
        if self.scale == "standard":
            self.mean_ = X.mean(axis=0)
            std = X.std(axis=0)
            self.std_ = np.where(std > 0, std, 1.0)
        elif self.scale == "quantile":
            self.qt_ = QuantileTransformer(n_quantiles=min(1000, len(X)), output_distribution="normal",
                                           subsample=200_000, random_state=self.random_state).fit(X)
        return self

    def transform(self, data: FeatureSet, dtype=np.float64) -> np.ndarray:
        X = self._impute(self._select(data))
        if self.scale == "standard":
            X = (X - self.mean_) / self.std_
        elif self.scale == "quantile":
            X = self.qt_.transform(X)
        return np.ascontiguousarray(X, dtype=dtype)

    def _select(self, data: FeatureSet) -> np.ndarray:
        idx = [data.names.index(c) for c in self.columns]
        return data.X[:, idx].astype(np.float64)

    def _impute(self, X: np.ndarray) -> np.ndarray:
        nan = np.isnan(X)
        if nan.any():
            X = np.where(nan, self.median_, X)
        return X
