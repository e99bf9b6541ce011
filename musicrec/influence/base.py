"""The shape every influence estimator has.

An estimator is built from a fitted model, its train split and the test split. `loo()` gives, for
every training row i, the estimated change of the test metrics when the model is trained without
i: (metric without i) - (metric with i), so a positive log-loss value means the row helps.
`exact(rows)` evaluates the estimator's own model of the removal without any linearisation (every
test row re-scored), and `refit(rows)` obtains the same quantity through the library itself
(a closed-form refit, or the library's model with recomputed leaves / factors); validation checks
that the two agree to ~1e-9, which proves the bookkeeping, and compares both with full retraining.
"""
from __future__ import annotations

import numpy as np

from musicrec.influence.common import metric_changes, test_directions
from musicrec.models.base import FeatureSet


class Estimator:
    name = "model"
    #: how the estimate relates to the retrained model, for reports
    method = ""

    def __init__(self, model, train: FeatureSet, test: FeatureSet):
        self.model, self.train, self.test = model, train, test
        self.y_test = test.y.astype(np.float64)
        self.f_test = self.test_logits()
        self.directions = test_directions(self.y_test, self.f_test)

    def test_logits(self) -> np.ndarray:
        raise NotImplementedError

    def loo(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def logit_changes(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), n_test) change of every test logit when each row is removed."""
        raise NotImplementedError

    def exact(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return metric_changes(self.y_test, self.f_test, self.logit_changes(np.asarray(rows)))

    def refit_logits(self, row: int) -> np.ndarray:
        """Test logits of the library model refitted without `row` in the estimator's sense."""
        raise NotImplementedError

    def refit(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        delta = np.stack([self.refit_logits(int(r)) - self.f_test for r in rows])
        return metric_changes(self.y_test, self.f_test, delta)
