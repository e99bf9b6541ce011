"""Retraining a model family without some rows: the ground truth every estimate is checked against.

LightGBM keeps the number of trees of the all-rows model (no early stopping when retraining);
logistic regression is retrained to the exact optimum (newton-cholesky), not lbfgs's tolerance.
Rows are removed by giving them sample weight 0, which for every family here is the same as
deleting them while keeping the random draws coupled (the forest's bootstrap draws, LightGBM's
feature sampling and bins, ALS's initialisation all stay as they were). The design transform
(imputation, scaling) is fitted on all rows and held fixed, like the stage-03 features.
"""
from __future__ import annotations

import copy

import numpy as np

from musicrec.influence.losses import logit, loss_change, metric_changes
from musicrec.models import make_model
from musicrec.models.base import FeatureSet


class Retrainer:
    """Retrains one family many times: the training inputs are prepared once (design matrix,
    LightGBM bins), logistic regression warm-starts from the all-rows fit, and the all-rows test
    logits are kept per seed."""

    def __init__(self, name: str, tcfg: dict, train: FeatureSet, valid: FeatureSet, test: FeatureSet,
                 trees: int | None = None):
        self.name, self.tcfg = name, copy.deepcopy(tcfg)
        self.train, self.valid, self.test = train, valid, test
        if name == "lgbm" and trees is not None:
            # the number of trees early stopping chose on all rows is kept: retraining without a
            # row then differs only by the row, not by where a noisy validation curve stops
            self.tcfg["lgbm"]["n_estimators"] = trees
            self.valid = None
        if name == "lr":
            # the exact optimum, like the estimator's own polished fit: lbfgs stopped at its
            # tolerance would add its own stopping noise to every retrained metric
            self.tcfg["lr"].update(solver="newton-cholesky", tol=1e-10, max_iter=100)
        self.y_test = test.y.astype(np.float64)
        self.fits = 0
        self._prepared = None
        self._base: dict[int, tuple] = {}

    def _fit(self, seed: int, weights: np.ndarray, init=None):
        model = make_model(self.name, self.tcfg, seed)
        if self._prepared is None:
            self._prepared = model.prepare(self.train, self.valid)
        self.fits += 1
        return model.fit_prepared(self._prepared, weights, init=init)

    def _all_rows(self, seed: int) -> tuple:
        """The family trained on all rows with this seed, and its test logits (fitted once)."""
        if seed not in self._base:
            model = self._fit(seed, np.ones(len(self.train)))
            self._base[seed] = (model, logit(model.predict_proba(self.test)[:, 1]))
        return self._base[seed]

    def logits(self, seed: int) -> np.ndarray:
        """Test logits of the family trained on all rows with this seed."""
        return self._all_rows(seed)[1]

    def base_model(self, seed: int):
        """The family trained on all rows with this seed."""
        return self._all_rows(seed)[0]

    def fit_without(self, seed: int, removed: np.ndarray, base: np.ndarray) -> tuple:
        """The model retrained without `removed` (indices or a mask) and its test metric changes."""
        w = np.ones(len(self.train))
        w[removed] = 0.0
        model = self._fit(seed, w, init=self.base_model(seed))
        out = metric_changes(self.y_test, base, logit(model.predict_proba(self.test)[:, 1]) - base)
        return model, {k: float(v[0]) for k, v in out.items()}

    def without(self, seed: int, removed: np.ndarray, base: np.ndarray, own: bool = False) -> dict[str, float]:
        """Change of test log-loss and AUROC when `removed` rows are left out (vs logits `base`);
        own=True adds "self", the mean change of the removed rows' own log-loss."""
        model, out = self.fit_without(seed, removed, base)
        if own:
            rows = self.train.take(np.asarray(removed))
            f = logit(self.base_model(seed).predict_proba(rows)[:, 1])
            out["self"] = float(loss_change(rows.y, f, logit(model.predict_proba(rows)[:, 1]) - f).mean())
        return out
