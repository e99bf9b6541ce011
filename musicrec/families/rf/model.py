"""Random forest of scikit-learn decision trees on bootstrap draws made here, from one seed per tree."""
from __future__ import annotations

import numpy as np
from joblib import Parallel, delayed
from sklearn.tree import DecisionTreeClassifier

from musicrec.models.base import FeatureSet, two_columns
from musicrec.models.sklearn_base import SklearnModel


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
