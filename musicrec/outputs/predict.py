"""Stage 05's metrics.json: every model on the held-out test split, and the rankings."""
from __future__ import annotations

from dataclasses import dataclass

from musicrec.outputs.base import Record
from musicrec.outputs.common import Interval
from musicrec.outputs.train import Classification


@dataclass
class Ranking(Record):
    """One ranking model's top-k lists scored against the songs each test user replayed.

    Means over the `users` with a relevant item (musicrec.metrics.ranking_metrics defines each);
    intervals are percentile bootstraps over those users; `minus_popularity` the paired per-user
    difference from the popularity baseline."""

    k: int
    users: int
    precision: float | None
    recall: float | None
    ndcg: float | None
    map: float | None
    hit_rate: float | None
    f1: float | None
    coverage: float | None
    novelty: float | None
    genre_diversity: float | None
    artist_diversity: float | None
    ils_genre: float | None
    ils_artist: float | None
    catalogue_songs: int
    precision_ci95: list[float] | None = None
    ndcg_ci95: list[float] | None = None
    minus_popularity: dict[str, Interval] | None = None


@dataclass
class Submission(Record):
    model: str
    rows: int
    auc_vs_hidden_truth: float | None = None    # generated data: the submission's AUC on test.csv's labels
    oracle_auc: float | None = None             # generated data: the true probabilities' AUC on them


@dataclass
class PredictMetrics(Record):
    """05's metrics.json."""

    rows: int
    models: dict[str, Classification]
    ranking: dict[str, Ranking]
    oracle: Classification | None = None
    segments: dict[str, dict] | None = None     # model -> segment -> value -> {auc, rows, target_mean}
    submission: Submission | None = None
    note: str | None = None
