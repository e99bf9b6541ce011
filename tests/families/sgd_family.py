"""A sixth model family defined only here, to prove that one file and the config add a family.

scikit-learn's SGDClassifier(loss="log_loss") on the standardised design, without shuffling and
with a fixed number of epochs, so a fit on the same rows is the same model (deterministic). Its
leave-one-out estimator refits without each row: exact by definition, and affordable on a tiny
training set. Name it in the config: `train.families: [tests/families/sgd_family.py]`,
`train.models: [..., sgd]`, `influence.models: [..., sgd]`.
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import SGDClassifier

from musicrec.config import Float, Int
from musicrec.families import register
from musicrec.families.base import Family
from musicrec.influence.base import Estimator
from musicrec.influence.losses import loss_change
from musicrec.models.sklearn_base import SklearnModel


class SGDModel(SklearnModel):
    name = "sgd"

    def __init__(self, alpha: float = 1e-3, epochs: int = 5, random_state: int = 0):
        self.alpha, self.epochs, self.random_state = alpha, epochs, random_state

    def make_estimator(self):
        return SGDClassifier(loss="log_loss", alpha=self.alpha, max_iter=self.epochs, tol=None, shuffle=False,
                             random_state=self.random_state)

    def fit_prepared(self, prepared, sample_weight=None, init=None) -> "SGDModel":
        """0/1 weights delete the zero-weight rows, keeping the others in order (SGD's step schedule
        counts every row it sees, and without shuffling the order is part of the model)."""
        if sample_weight is None or not np.isin(sample_weight, (0.0, 1.0)).all():
            return super().fit_prepared(prepared, sample_weight, init)
        design, X, y = prepared
        keep = np.asarray(sample_weight) == 1
        return super().fit_prepared((design, X[keep], y[keep]), None, init)


class RefitInfluence(Estimator):
    name = "sgd"
    method = "exact: SGDClassifier refitted without each row"

    def __init__(self, model, train, test):
        self.X = model.design_.transform(train)
        self.Xt = model.design_.transform(test)
        self.y = train.y
        super().__init__(model, train, test)

    def test_logits(self) -> np.ndarray:
        return self.model.estimator_.decision_function(self.Xt)

    def train_logits(self, rows) -> np.ndarray:
        return self.model.estimator_.decision_function(self.X[np.asarray(rows)])

    def refit_logits(self, row: int) -> tuple[np.ndarray, float]:
        keep = np.ones(len(self.X), dtype=bool)
        keep[row] = False
        fit = self.model.make_estimator().fit(self.X[keep], self.y[keep])
        return fit.decision_function(self.Xt), float(fit.decision_function(self.X[row:row + 1])[0])

    def logit_changes(self, rows) -> np.ndarray:
        return np.stack([self._refit(int(r))[0] - self.f_test for r in rows])

    def loo(self) -> dict[str, np.ndarray]:
        rows = np.arange(len(self.X))
        delta = self.logit_changes(rows)
        g_auc = self.directions["auc"]
        own = np.array([self._refit(int(r))[1] for r in rows]) - self.train_logits(rows)
        out = {"logloss": (loss_change(self.y_test, self.f_test, delta) * self.test_weights).mean(axis=1),
               "auc": delta @ g_auc}
        f_train = self.train_logits(rows)
        out.update(self.own_terms(f_train, own))
        return out


@register
class SGDFamily(Family):
    name = "sgd"
    model = SGDModel
    estimator = RefitInfluence
    deterministic = True
    library = "scikit-learn SGDClassifier retrained without the row (the Retrainer, same saved arguments)"
    removal_check = "refit"
    params = {"alpha": Float(1e-3, 0.0, open_lo=True), "epochs": Int(5, 1, 1000)}
    validate_rows = 8
