"""Logistic regression: one Newton step with leverage, checked against scikit-learn's refit."""
from __future__ import annotations

import numpy as np

from musicrec.families import register
from musicrec.families.base import Family
from musicrec.families.lr.influence import LogisticInfluence
from musicrec.families.lr.model import LogisticModel
from musicrec.families.lr.reference import LR_EXACT, LogisticReference


@register
class LogisticFamily(Family):
    name = "lr"
    model = LogisticModel
    estimator = LogisticInfluence
    reference = LogisticReference
    deterministic = True
    stream = 2
    library = ("scikit-learn LogisticRegression refit without the row (newton-cholesky, tol 1e-10, the analysed "
               "model's C, L2 penalty, unpenalised intercept, same design, warm start)")
    removal_check = "newton_step"
    retrain_warm = True
    group_predictor = "one Newton step with the Hessian downdated by the group"

    def retrain_model(self, model, seed):
        """float64, like the estimator's polished optimum and scikit-learn's reference refit."""
        fresh = super().retrain_model(model, seed)
        fresh.dtype = np.float64
        return fresh

    def retrain_arguments(self, model, seed=None) -> dict:
        """Retrained to the exact optimum, like the estimator's own polished fit: lbfgs stopped at
        its tolerance would add its own stopping noise to every retrained metric."""
        return {**super().retrain_arguments(model, seed), **LR_EXACT}
