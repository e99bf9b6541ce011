"""Retraining a model family without some rows: the ground truth every estimate is checked against.

Rows are removed by giving them sample weight 0, which for every family here is the same as
deleting them while keeping the random draws coupled (the forest's bootstrap draws, LightGBM's
feature sampling and bins, ALS's initialisation all stay as they were). The design transform
(imputation, scaling) is fitted on all rows and held fixed, like the stage-03 features.
"""
from __future__ import annotations

import numpy as np

from musicrec.influence.common import logit, metric_changes
from musicrec.models import make_model
from musicrec.models.base import FeatureSet


class Retrainer:
    def __init__(self, name: str, tcfg: dict, train: FeatureSet, valid: FeatureSet, test: FeatureSet):
        self.name, self.tcfg = name, tcfg
        self.train, self.valid, self.test = train, valid, test
        self.y_test = test.y.astype(np.float64)
        self.fits = 0

    def logits(self, seed: int, weights: np.ndarray | None = None) -> np.ndarray:
        """Test logits of the family retrained with these row weights (None = all rows, weight 1)."""
        w = np.ones(len(self.train)) if weights is None else weights
        model = make_model(self.name, self.tcfg, seed).fit(self.train, self.valid, sample_weight=w)
        self.fits += 1
        return logit(model.predict_proba(self.test)[:, 1])

    def without(self, seed: int, removed: np.ndarray, base: np.ndarray) -> dict[str, float]:
        """Change of test log-loss and AUROC when `removed` rows are left out (vs logits `base`)."""
        w = np.ones(len(self.train))
        w[removed] = 0.0
        out = metric_changes(self.y_test, base, self.logits(seed, w) - base)
        return {k: float(v[0]) for k, v in out.items()}
