"""Figures that several output files share: an estimate with its n and 95% interval."""
from __future__ import annotations

from dataclasses import dataclass

from musicrec.outputs.base import Record


@dataclass
class Interval(Record):
    """A value measured on n units (rows, users, pairs) and its 95% interval (None: not measurable)."""

    value: float | None
    n: int
    ci95: list[float] | None = None


@dataclass
class Correlation(Record):
    """Pearson or Spearman correlation of n pairs; `interval` says how ci95 was made."""

    value: float | None
    n: int
    method: str
    ci95: list[float] | None = None
    interval: str | None = None     # "bootstrap" (percentile, over the pairs) or "fisher_z"
    draws: int | None = None


@dataclass
class Comparison(Record):
    """How well an estimate reproduces reference values over the same n rows."""

    spearman: Correlation
    pearson: Correlation
    max_abs_err: float | None
    max_rel_err: float | None
    top10_overlap: float
    n: int


@dataclass
class Lift(Record):
    """Share of flipped rows among the `top` share ranked most suspect, over the overall share."""

    top: float
    rows: int
    flipped_in_top: int
    value: float | None
    ci95: list[float] | None


@dataclass
class Detector(Record):
    """A ranking of rows scored as a detector of flipped labels."""

    lift_5pct: Lift
    lift_10pct: Lift
    pr_auc: float | None
    n: int
    ranking: str | None = None      # what the ranking is, where it is not a column of loo.parquet
