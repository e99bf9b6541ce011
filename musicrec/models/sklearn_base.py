"""What the scikit-learn families share: a NumericDesign (imputation/scaling fitted on train)
followed by the estimator, both saved together with joblib, scikit-learn's own persistence.
"""
from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
from threadpoolctl import threadpool_limits

from musicrec.models.base import FeatureSet, Model
from musicrec.models.design import NumericDesign


def varying(data: FeatureSet, chunk: int = 16_384) -> set[str]:
    """The features with more than one value (NaN counting as one) over the rows, read in row
    chunks: X is row-major, so a column at a time would stream the whole matrix per column. The
    chunks' temporaries stay below the allocator's mmap threshold, so they reuse the heap's pages.
    Kept in data.memo: every scikit-learn family asks."""
    if "varying" in data.memo:
        return data.memo["varying"]
    d = len(data.names)
    lo, hi = np.full(d, np.inf), np.full(d, -np.inf)
    some_nan = np.zeros(d, bool)
    for start in range(0, len(data), chunk):
        block = data.X[start:start + chunk]
        missing = np.isnan(block)
        some_nan |= missing.any(axis=0)
        lo = np.minimum(lo, np.where(missing, np.inf, block).min(axis=0, initial=np.inf))
        hi = np.maximum(hi, np.where(missing, -np.inf, block).max(axis=0, initial=-np.inf))
    present = lo <= hi                                   # at least one value that is not NaN
    data.memo["varying"] = {name for j, name in enumerate(data.names) if present[j] and (some_nan[j] or lo[j] < hi[j])}
    return data.memo["varying"]


def fit_without_rows(fit, X: np.ndarray, y: np.ndarray, gone: np.ndarray):
    """fit(X', y') on all rows but `gone`, without a copy of X: the gone rows trade places with
    kept rows at the end, fit sees the leading view, and the swap is undone (also on error).

    For a multi-GB design a copy per refit cost seconds and a design's worth of memory; row order
    only reorders the fit's sums (GaussianNB's means and variances)."""
    gone = np.unique(gone)
    n_keep = len(X) - len(gone)
    a = gone[gone < n_keep]                                   # gone rows in the kept part
    b = np.setdiff1d(np.arange(n_keep, len(X)), gone)         # kept rows in the tail
    y = np.array(y, copy=True)
    y[a], y[b] = y[b], y[a]
    X[a], X[b] = X[b], X[a]     # fancy indexing on the right copies: this swaps
    try:
        return fit(X[:n_keep], y[:n_keep])
    finally:
        X[a], X[b] = X[b], X[a]


class SklearnModel(Model):
    """Shared fit/predict/save for a design + scikit-learn estimator pair."""

    scale = "standard"
    dtype = np.float64

    def design_columns(self, data: FeatureSet) -> list[str]:
        return data.numeric

    def make_estimator(self):
        raise NotImplementedError

    def prepare(self, train: FeatureSet, valid=None):
        """The design (fitted on every train row, whatever the weights) and the design matrix.

        Columns with one value on every train row are left out: they move no prediction of these
        families, yet cost every pass over millions of rows (stage 03 keeps the raw KKBOX columns
        even where a source lacks them)."""
        keep = varying(train)
        columns = [c for c in self.design_columns(train) if c in keep]
        key = ("design", tuple(columns), self.scale, self.random_state if self.scale == "quantile" else None)
        if key not in train.memo:   # nb and lr fit the same design on the same rows: once
            train.memo[key] = NumericDesign(columns, self.scale, self.random_state).fit(train)
        design = train.memo[key]
        return design, design.transform(train, self.dtype), train.y

    def fit_prepared(self, prepared, sample_weight=None, init=None) -> "SklearnModel":
        self.design_, X, y = prepared
        self.estimator_ = self.make_estimator()
        self.warm_start(init)
        # one BLAS thread: lbfgs's matrix-vector products gain little from more, and a busy
        # OpenBLAS pool beside LightGBM's OpenMP threads can slow a small fit down 50-fold
        with threadpool_limits(1, "blas"):
            self.estimator_.fit(X, y, sample_weight=sample_weight)
        return self

    def warm_start(self, init) -> None:
        """Start from a fitted model's parameters where the estimator can (logistic regression)."""

    def predict_proba(self, data: FeatureSet) -> np.ndarray:
        return self.estimator_.predict_proba(self.design_.transform(data, self.dtype))

    def save(self, folder: Path) -> list[str]:
        name = f"{self.name}.joblib"
        joblib.dump(self, folder / name, compress=3)
        return [name]

    @classmethod
    def load(cls, folder: Path) -> "SklearnModel":
        path = folder / f"{cls.name}.joblib"
        try:
            return joblib.load(path)
        except (ModuleNotFoundError, AttributeError) as exc:   # pickled by another version of musicrec
            from musicrec.manifest import StaleError

            raise StaleError(f"{path} was saved by another version of musicrec ({exc}): run ./run.sh 04") from None
