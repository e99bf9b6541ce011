"""Data influence: leave-one-out estimators per model family, validation, group retraining."""
from musicrec.influence.als import ALSInfluence
from musicrec.influence.lgbm import BoostingInfluence
from musicrec.influence.lr import LogisticInfluence
from musicrec.influence.nb import NaiveBayesInfluence
from musicrec.influence.rf import ForestInfluence

ESTIMATORS = {"nb": NaiveBayesInfluence, "lr": LogisticInfluence, "rf": ForestInfluence,
              "lgbm": BoostingInfluence, "als": ALSInfluence}

__all__ = ["ESTIMATORS"]
