"""What every model family shares: the data a model is given (FeatureSet) and its interface (Model).

The families themselves (their models, estimators and references) live in musicrec.families.
"""
from musicrec.models.base import FeatureSet, Model, load_feature_set

__all__ = ["FeatureSet", "Model", "load_feature_set"]
