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

    def explains(self, model) -> str | None:
        if model.weighting != "signed":
            return (f"als was trained with train.als.weighting {model.weighting}: its classification influence needs "
                    "signed (+1 / -1 entries); its ranking influence holds for any weighting")
        return None

    def ranking_influence(self, model, train, relevant: dict, rcfg: dict, rng):
        from musicrec.families.als.ranking import RankingInfluence

        return RankingInfluence(model, train.keys["user"].to_numpy(), train.keys["song"].to_numpy(),
                                model.entry_plays(train), relevant, k=rcfg["k"], negatives=rcfg["negatives"],
                                rng=rng, threads=model.n_jobs)

    def ranking_set_models(self, model, train, valid, gcfg: dict):
        from musicrec.families.als.sets import WarmSweeps

        return WarmSweeps(model, model.prepare(train, valid), gcfg["als_sweeps"], calibrate=False)
