"""Stage 04's files: models.json (what was trained, by which family, in which files) and metrics.json."""
from __future__ import annotations

from dataclasses import dataclass, field

from musicrec.outputs.base import Record


@dataclass
class TrainedModel(Record):
    """One fitted model: stages 05 and 06 load it through its family from these files."""

    family: str
    origin: str                  # the module or file that registered the family
    files: list[str]
    params: dict                 # the model's constructor arguments (get_params)
    info: dict = field(default_factory=dict)   # fitted facts: trees, iterations, factors, ...
    fit_seconds: float | None = None           # what one fit took: stage 06 sizes its retraining by it


@dataclass
class ModelsManifest(Record):
    """models.json: the registry of trained models that stages 05 and 06 read."""

    models: dict[str, TrainedModel]
    features: int


@dataclass
class Classification(Record):
    """Replay-prediction quality of probabilities (musicrec.metrics.classification_metrics)."""

    auc: float | None
    logloss: float
    accuracy: float
    brier: float
    auc_ci95: list[float] | None = None        # Hanley & McNeil (stage 05)
    accuracy_ci95: list[float] | None = None   # Wilson (stage 05)


@dataclass
class FitMetrics(Record):
    """One model in 04's metrics.json: train (subsample) and valid quality, and its fit time."""

    fit_seconds: float
    train: Classification | None = None
    valid: Classification | None = None


@dataclass
class TrainRows(Record):
    train: int
    valid: int
    train_scored: int


@dataclass
class TrainMetrics(Record):
    """04's metrics.json."""

    rows: TrainRows
    features: int
    models: dict[str, FitMetrics]
