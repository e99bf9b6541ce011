"""What the pipeline knows about one model family, declared in one class.

A family brings its model (fit / predict_proba / save / load, with scikit-learn's conventions and
the library's own save format), its leave-one-out estimator (musicrec.influence.base.Estimator),
its library reference where a closed refit exists, and how it is retrained without rows. To add a
family, subclass Family in one module, decorate it with `musicrec.families.register`, and name the
module in the config's `train.families` (ARCHITECTURE.md, "Adding a model family").
"""
from __future__ import annotations

import inspect
from typing import Any, ClassVar

from musicrec.models.base import FeatureSet, Model


class Family:
    #: registry key, config section `train.<name>`, column prefix in 05's and 06's tables
    name: ClassVar[str] = ""
    #: the model class (a musicrec.models.base.Model)
    model: ClassVar[type[Model]]
    #: the leave-one-out estimator class; None: stage 06 does not explain this family
    estimator: ClassVar[type | None] = None
    #: a closed library refit without one row (musicrec.influence.reference.LibraryReference);
    #: None: the family's reference is full retraining with the saved model's arguments
    reference: ClassVar[type | None] = None
    #: it predicts P(replay) of a (user, song) row: 04's and 05's classification metrics, 06
    classifier: ClassVar[bool] = True
    #: it ranks songs for a user (05's top-k lists; the only models of untimed play counts)
    ranker: ClassVar[bool] = False
    #: retraining on the same rows gives the same model: no noise ceiling to measure
    deterministic: ClassVar[bool] = False
    #: the fixed seed-stream number of the family (musicrec.rng); None: derived from the name
    stream: ClassVar[int | None] = None
    #: what the estimates are checked against, in words (validation.json `reference`)
    library: ClassVar[str] = "full retraining with the saved model's arguments"
    #: the estimator's own removal model that validation checks against the library, in a word
    #: (validation.json `removal_check`: closed_form, newton_step, fixed_structure, ...)
    removal_check: ClassVar[str] = "fixed_structure"
    #: how the removal of a group of rows is predicted, in words (validation.json, the report)
    group_predictor: ClassVar[str] = "the sum of the rows' leave-one-out estimates"
    #: the group predictor is exact (equal to retraining up to rounding)
    group_exact: ClassVar[bool] = False
    #: the set predictor holds the model's structure fixed, so it misses the effect of retraining
    #: on fewer rows: add the family's learning curve (influence.groups.curve_fractions)
    group_curve: ClassVar[bool] = False
    #: retraining on every row with the analysed model's seed gives back the analysed model itself
    #: (then that model is the all-rows reference of every retrained change: no refit)
    retrain_reproduces: ClassVar[bool] = False
    #: retraining warm-starts from the all-rows fit (an exact optimum reached faster: the same model)
    retrain_warm: ClassVar[bool] = False
    #: families from `train.families`: the Specs (musicrec.config) of their `train.<name>` section
    params: ClassVar[dict] = {}
    #: families from `train.families`: the default of `influence.validate.rows.<name>` (None: the time budget)
    validate_rows: ClassVar[int | None] = None

    @property
    def stream_number(self) -> int:
        """The family's seed stream: its fixed number, else a stable hash of its name."""
        from musicrec.rng import name_number

        return self.stream if self.stream is not None else name_number(self.name)

    def make(self, tcfg: dict, random_state: int) -> Model:
        """A fresh, unfitted model from the `train` config section: its `train.<name>` keys, plus
        `threads` as n_jobs and the seed as random_state where the model takes them."""
        kwargs: dict[str, Any] = dict(tcfg.get(self.name) or {})
        takes = inspect.signature(self.model.__init__).parameters
        if "n_jobs" in takes:
            kwargs["n_jobs"] = tcfg["threads"]
        if "random_state" in takes:
            kwargs["random_state"] = random_state
        return self.model(**kwargs)

    def explains(self, model: Model) -> str | None:
        """Why stage 06 cannot explain this fitted model's classification influence (None: it can)."""
        return None if self.estimator is not None else f"{self.name} has no influence estimator"

    def influence(self, model: Model, train: FeatureSet, test: FeatureSet):
        """The leave-one-out estimator of a fitted model on its train split, scored on `test`."""
        if self.estimator is None:
            raise ValueError(f"model family {self.name!r} has no influence estimator")
        return self.estimator(model, train, test)

    def ranking_influence(self, model: Model, train: FeatureSet, relevant: dict, rcfg: dict, rng):
        """A ranking family's estimator of each training row's influence on its own user's held-out
        top-k list (musicrec.influence.ranking); families that do not rank have none."""
        raise ValueError(f"model family {self.name!r} does not rank songs")

    def ranking_set_models(self, model: Model, train: FeatureSet, valid: FeatureSet | None, gcfg: dict):
        """A ranking family's set predictor: a callable giving, for row weights, the model without the
        rows of weight 0."""
        raise ValueError(f"model family {self.name!r} does not rank songs")

    # -- retraining without rows (musicrec.influence.retrain) -----------------------------------
    def retrain_arguments(self, model: Model, seed: int | None = None) -> dict:
        """The analysed model's constructor arguments (never the current config) for retraining."""
        args = model.init_args()
        if seed is not None:
            args["random_state"] = seed
        return args

    def retrain_model(self, model: Model, seed: int) -> Model:
        """An unfitted model to retrain, with the analysed model's arguments and this seed."""
        return type(model)(**self.retrain_arguments(model, seed))

    def retrain_valid(self, valid: FeatureSet | None) -> FeatureSet | None:
        """The validation split a retrain may use (early stopping, calibration)."""
        return valid
