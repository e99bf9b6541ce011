"""Random forest: fixed-structure leave-one-out (the row's bootstrap count out of its leaves)."""
from __future__ import annotations

from musicrec.families import register
from musicrec.families.base import Family
from musicrec.families.rf.influence import ForestInfluence
from musicrec.families.rf.model import ForestModel


@register
class ForestFamily(Family):
    name = "rf"
    model = ForestModel
    estimator = ForestInfluence
    retrain_reproduces = True
    group_curve = True
    stream = 3
    library = "full retraining of the forest with the saved model's arguments"
    group_predictor = "every tree's leaf shares recomputed without the group's bootstrap counts, the trees held fixed"
