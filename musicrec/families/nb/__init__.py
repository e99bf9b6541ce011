"""Gaussian naive Bayes: exact leave-one-out in closed form, checked against GaussianNB's refit."""
from __future__ import annotations

from musicrec.families import register
from musicrec.families.base import Family
from musicrec.families.nb.influence import NaiveBayesInfluence
from musicrec.families.nb.model import NaiveBayesModel
from musicrec.families.nb.reference import NaiveBayesReference


@register
class NaiveBayesFamily(Family):
    name = "nb"
    model = NaiveBayesModel
    estimator = NaiveBayesInfluence
    reference = NaiveBayesReference
    deterministic = True
    stream = 1
    library = "scikit-learn GaussianNB refit without the row (same float64 design)"
    removal_check = "closed_form"
    group_predictor = "exact: naive Bayes refitted without the group (equal to retraining up to rounding)"
    group_exact = True

    def retrain_model(self, model, seed):
        """Fitted in float64 a column block at a time, like the estimator and GaussianNB's reference
        refit: float32 sums round by ~1e-7 of a logit, more than many small groups' effect."""
        fresh = super().retrain_model(model, seed)
        fresh.block_fit = True
        return fresh
