"""Stage 06's validation.json: how far every influence estimate holds, each figure with n and interval."""
from __future__ import annotations

from dataclasses import dataclass, field

from musicrec.outputs.base import Record
from musicrec.outputs.common import Comparison, Correlation, Detector


@dataclass
class ExactCheck(Comparison):
    """The estimate of the test log-loss change against the library's exact leave-one-out."""

    rows: str = ""                   # which test rows were scored
    auc: Comparison | None = None    # the same for the test AUROC


@dataclass
class SelfCheck(Record):
    """The rows' own log-loss change (self-influence) against the library's."""

    exact: Comparison


@dataclass
class FixedStructure(Record):
    """The estimator's removal model written into the library's own model (trees, factors)."""

    estimate_vs_refit: Comparison
    exact_path_vs_refit_max_rel_err: float | None
    self_vs_refit: Comparison


@dataclass
class Ceiling(Record):
    """Exact leave-one-out under two seeds correlated: how far any estimate can agree with one run."""

    value: float | None
    n: int | None = None
    method: str | None = None
    ci95: list[float] | None = None
    interval: str | None = None
    draws: int | None = None
    measurable: bool = False
    note: str | None = None
    rows: str | None = None
    seeds: list[int] | None = None


@dataclass
class LabelNoise(Record):
    """One model's rankings of the training rows as detectors of the flipped labels."""

    rows: str
    rankings: dict[str, Detector]


@dataclass
class ModelValidation(Record):
    """Every validation figure of one model (musicrec.influence.validate)."""

    family: str
    method: str
    reference: str
    deterministic: bool
    loo_seconds: float
    exact: ExactCheck | None = None
    self_influence: SelfCheck | None = None
    removal_check: str | None = None                 # which own removal model own_vs_library checks
    own_vs_library: Comparison | None = None         # deterministic families: own removal model vs library
    fixed_structure: FixedStructure | None = None    # randomised families: own removal model vs library model
    noise_ceiling: Ceiling | None = None
    share_of_ceiling: float | str | None = None
    removal: dict | None = None                      # removal curves: fraction -> per-half changes
    seconds: float | None = None
    retrains: int | None = None
    label_noise: LabelNoise | None = None
    extras: dict = field(default_factory=dict)       # family-specific checks (Estimator.extra_validation)


@dataclass
class NoiseReport(Record):
    """The flipped training labels, and the oracle detector where the synthetic truth is known."""

    source: str
    flipped: int
    rows: int
    share: float
    rows_scored: str
    oracle: Detector | None = None


@dataclass
class GroupSummary(Record):
    """Predicted vs retrained change of each test half's log-loss, over the retrained groups."""

    rows: str
    predictor: str
    groups: int                # groups predicted (meaningful groups and random ablations)
    retrained: int             # of them retrained as the check
    predicted: dict            # half -> {spearman, pearson: Correlation, relative_error}; "mean" -> values
    trust: str
    sum_of_loo: dict | None = None
    seconds: dict | None = None   # set_prediction_per_group, retrain_per_group, prediction_share_of_retrain
    learning_curve: dict | None = None   # half -> fractions, residuals (retrained - predicted) of random draws
    noise_ceiling: dict | None = None    # half -> Spearman of the retrained changes under two seeds
    retrain_budget: str | None = None    # why fewer groups were retrained (influence.groups.seconds)


@dataclass
class Validation(Record):
    """06's validation.json."""

    models: dict[str, ModelValidation]
    loo_seconds: dict[str, float]
    rows: int
    test_rows: int
    definition: str
    rows_used: dict[str, str]
    test_halves: dict
    label_noise: NoiseReport | None = None
    groups: dict[str, GroupSummary] | None = None
    ranking: dict | None = None     # ranking family -> loo_seconds, library_check, summary, seconds, users


__all__ = ["Ceiling", "Correlation", "ExactCheck", "FixedStructure", "GroupSummary", "LabelNoise", "ModelValidation",
           "NoiseReport", "SelfCheck", "Validation"]
