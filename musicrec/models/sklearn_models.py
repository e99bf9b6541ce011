"""The three scikit-learn families: Gaussian naive Bayes, logistic regression, random forest.

Each is a NumericDesign (imputation/scaling fitted on train) followed by the estimator; both are
saved together with joblib, scikit-learn's own persistence.
"""
from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits

from joblib import Parallel, delayed

from musicrec.models.base import FeatureSet, Model, two_columns
from musicrec.models.design import NumericDesign


def varying(data: FeatureSet, chunk: int = 262_144) -> set[str]:
    """The features with more than one value (NaN counting as one) over the rows, read in row
    chunks: X is row-major, so a column at a time would stream the whole matrix per column."""
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
    return {name for j, name in enumerate(data.names) if present[j] and (some_nan[j] or lo[j] < hi[j])}


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
        design = NumericDesign(columns, self.scale, self.random_state).fit(train)
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
        return joblib.load(folder / f"{cls.name}.joblib")


class NaiveBayesModel(SklearnModel):
    """GaussianNB on the numeric (non-categorical) features."""

    name = "nb"
    dtype = np.float32  # half the memory of the design at KKBOX scale; the influence stage refits in float64

    def __init__(self, var_smoothing: float = 1e-9, scale: str = "standard", random_state: int = 0):
        self.var_smoothing, self.scale, self.random_state = var_smoothing, scale, random_state

    def make_estimator(self):
        return GaussianNB(var_smoothing=self.var_smoothing)

    def fit_prepared(self, prepared, sample_weight=None, init=None) -> "NaiveBayesModel":
        """0/1 weights delete the zero-weight rows: GaussianNB takes its var_smoothing epsilon from
        the variance of every row it is given, whatever its weight, so weight 0 is not removal.

        The deleted rows are swapped out of a view (fit_without_rows), not copied away."""
        if sample_weight is None or not np.isin(sample_weight, (0.0, 1.0)).all():
            return super().fit_prepared(prepared, sample_weight, init)
        design, X, y = prepared
        return fit_without_rows(lambda Xk, yk: super(NaiveBayesModel, self).fit_prepared((design, Xk, yk), None, init),
                                X, y, np.flatnonzero(np.asarray(sample_weight) == 0))


class LogisticModel(SklearnModel):
    """L2 logistic regression. On millions of rows x tens of dense columns newton-cholesky (the
    config's default) converges in a few steps, where lbfgs ran out of its 100 iterations at 5M
    rows; stage 06 polishes to the exact optimum with it too."""

    name = "lr"
    solver = "lbfgs"  # models saved before the solver was a parameter

    def __init__(self, C: float = 1.0, max_iter: int = 300, tol: float = 1e-6, solver: str = "lbfgs",
                 random_state: int = 0):
        self.C, self.max_iter, self.tol, self.solver, self.random_state = C, max_iter, tol, solver, random_state

    def make_estimator(self):
        return LogisticRegression(C=self.C, solver=self.solver, max_iter=self.max_iter, tol=self.tol,
                                  random_state=self.random_state)

    def warm_start(self, init) -> None:
        if init is not None:
            self.estimator_.set_params(warm_start=True)
            self.estimator_.coef_ = init.estimator_.coef_.copy()
            self.estimator_.intercept_ = init.estimator_.intercept_.copy()

    def info(self) -> dict:
        return {"iterations": int(np.max(self.estimator_.n_iter_))}


class ForestModel(SklearnModel):
    """Random forest: scikit-learn decision trees, each fitted on its own bootstrap draw.

    This is RandomForestClassifier's algorithm (a draw of `max_samples` rows with replacement per
    tree, passed to the tree as per-row counts) with the draws made here, from one seed per tree.
    scikit-learn 1.9 draws weighted bootstraps with `choice(p=sample_weight)` when weights are
    given, so setting one row's weight to 0 would redraw every tree; with our own draws a
    removed row simply loses its count and every other row keeps its own, which keeps retraining
    without a row coupled to the original forest.
    """

    name = "rf"
    scale = "none"
    dtype = np.float32

    def __init__(self, n_estimators=100, max_samples=0.1, min_samples_leaf=50, max_depth=None, max_features=0.3,
                 n_jobs=2, random_state=0):
        self.n_estimators, self.max_samples, self.min_samples_leaf = n_estimators, max_samples, min_samples_leaf
        self.max_depth, self.max_features, self.n_jobs, self.random_state = max_depth, max_features, n_jobs, random_state

    def design_columns(self, data: FeatureSet) -> list[str]:
        return data.names

    def bootstrap_counts(self, tree: int, n_rows: int) -> np.ndarray:
        """How many times each row was drawn for one tree (regenerated from the tree's seed)."""
        rng = np.random.default_rng([self.random_state, tree])
        m = max(1, int(self.max_samples * n_rows))
        return np.bincount(rng.integers(0, n_rows, m), minlength=n_rows).astype(np.float64)

    def _fit_tree(self, t: int, X: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> DecisionTreeClassifier:
        counts = self.bootstrap_counts(t, len(X))
        if w is not None:
            counts *= w
        tree = DecisionTreeClassifier(min_samples_leaf=self.min_samples_leaf, max_depth=self.max_depth,
                                      max_features=self.max_features, random_state=int(self.tree_seeds_[t]))
        return tree.fit(X, y, sample_weight=counts)

    def fit_prepared(self, prepared, sample_weight=None, init=None) -> "ForestModel":
        self.design_, X, y = prepared
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        self.tree_seeds_ = np.random.default_rng(self.random_state).integers(0, 2**31 - 1, self.n_estimators)
        self.n_train_ = len(X)
        self.trees_ = Parallel(n_jobs=self.n_jobs, prefer="threads")(
            delayed(self._fit_tree)(t, X, y, w) for t in range(self.n_estimators))
        return self

    def _mean_proba(self, X: np.ndarray) -> np.ndarray:
        total = np.zeros(len(X))
        for tree in self.trees_:  # fixed order: the same bytes every run
            total += tree.predict_proba(X)[:, -1] if tree.n_classes_ == 2 else float(tree.classes_[0] == 1)
        return total / len(self.trees_)

    def predict_proba(self, data: FeatureSet) -> np.ndarray:
        X = self.design_.transform(data, self.dtype)
        chunks = np.array_split(np.arange(len(X)), max(1, min(self.n_jobs * 4, len(X) // 10_000)))
        parts = Parallel(n_jobs=self.n_jobs, prefer="threads")(delayed(self._mean_proba)(X[c]) for c in chunks)
        return two_columns(np.concatenate(parts) if parts else np.zeros(0))

    def info(self) -> dict:
        leaves = [int(t.tree_.n_leaves) for t in self.trees_]
        return {"trees": len(leaves), "mean_leaves": float(np.mean(leaves))}
