"""LightGBM: fixed-structure leave-one-out (leaf values recomputed without the row)."""
from __future__ import annotations

from musicrec.families import register
from musicrec.families.base import Family
from musicrec.families.lgbm.influence import BoostingInfluence
from musicrec.families.lgbm.model import LightGBMModel


@register
class BoostingFamily(Family):
    name = "lgbm"
    model = LightGBMModel
    estimator = BoostingInfluence
    retrain_reproduces = True
    group_curve = True
    stream = 4
    library = "full retraining of LightGBM with the saved model's arguments and number of trees"
    group_predictor = ("the boosting sequence replayed with the structure fixed: every leaf recomputed by LightGBM's "
                       "formula from the remaining rows at the replayed scores of the earlier trees")

    def retrain_arguments(self, model, seed=None) -> dict:
        """The number of trees early stopping chose on all rows is kept: retraining without a row
        then differs only by the row, not by where a noisy validation curve stops."""
        return {**super().retrain_arguments(model, seed), "n_estimators": model.booster_.num_trees()}

    def retrain_valid(self, valid):
        return None   # a fixed number of trees: no early stopping on valid
