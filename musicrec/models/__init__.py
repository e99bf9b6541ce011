"""Model families behind one interface (musicrec.models.base.Model), made from the config."""
from __future__ import annotations

from pathlib import Path

from musicrec.models.als import ALSModel
from musicrec.models.base import FeatureSet, Model, load_feature_set
from musicrec.models.lgbm import LightGBMModel
from musicrec.models.prior import PriorModel
from musicrec.models.sklearn_models import ForestModel, LogisticModel, NaiveBayesModel

FAMILIES: dict[str, type[Model]] = {
    "prior": PriorModel, "nb": NaiveBayesModel, "lr": LogisticModel, "rf": ForestModel,
    "lgbm": LightGBMModel, "als": ALSModel,
}


def make_model(name: str, tcfg: dict, random_state: int) -> Model:
    """A fresh, unfitted model of one family configured from the `train` config section."""
    threads = tcfg["threads"]
    if name == "prior":
        return PriorModel()
    params = dict(tcfg[name])
    if name == "nb":
        return NaiveBayesModel(random_state=random_state, **params)
    if name == "lr":
        return LogisticModel(random_state=random_state, **params)
    if name == "rf":
        return ForestModel(n_jobs=threads, random_state=random_state, **params)
    if name == "lgbm":
        return LightGBMModel(n_jobs=threads, random_state=random_state, **params)
    if name == "als":
        return ALSModel(n_jobs=threads, random_state=random_state, **params)
    raise ValueError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")


def load_model(name: str, folder: Path) -> Model:
    return FAMILIES[name].load(Path(folder))


__all__ = ["FAMILIES", "FeatureSet", "Model", "load_feature_set", "load_model", "make_model"]
