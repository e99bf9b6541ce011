"""Implicit ALS: a replay classifier (calibrated) and the ranking model; exact user downdates."""
from __future__ import annotations

from musicrec.families import register
from musicrec.families.als.influence import ALSInfluence
from musicrec.families.als.model import ALSModel
from musicrec.families.base import Family


@register
class ALSFamily(Family):
    name = "als"
    model = ALSModel
    estimator = ALSInfluence
    ranker = True
    retrain_reproduces = True
    stream = 5
    library = "full retraining of implicit ALS and its calibration with the saved model's arguments"
    group_predictor = ("the affected users' factors solved exactly, then ALS sweeps of items and users warm-started from "
                       "the trained factors (influence.groups.als_sweeps), and the calibration refitted")
