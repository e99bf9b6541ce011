"""The baseline every model must beat: the train replay rate of the row's source_system_tab."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from musicrec.families import register
from musicrec.families.base import Family
from musicrec.models.base import FeatureSet, Model, two_columns, write_json


class PriorModel(Model):
    name = "prior"

    def __init__(self, column: str = "source_system_tab"):
        self.column = column

    def fit_prepared(self, prepared, sample_weight=None, init=None) -> "PriorModel":
        train, _ = prepared
        codes = train.column(self.column).astype(np.int64)
        w = np.ones(len(train)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        sums = np.bincount(codes, weights=w * train.y)
        counts = np.bincount(codes, weights=w)
        self.global_ = float((w * train.y).sum() / w.sum())
        self.rates_ = np.where(counts > 0, sums / np.maximum(counts, 1e-300), self.global_)
        return self

    def predict_proba(self, data: FeatureSet) -> np.ndarray:
        codes = data.column(self.column).astype(np.int64)
        known = (codes >= 0) & (codes < len(self.rates_))
        return two_columns(np.where(known, self.rates_[np.clip(codes, 0, len(self.rates_) - 1)], self.global_))

    def save(self, folder: Path) -> list[str]:
        write_json(folder / "prior.json", {"column": self.column, "global": self.global_,
                                           "rates": self.rates_.tolist()})
        return ["prior.json"]

    @classmethod
    def load(cls, folder: Path) -> "PriorModel":
        d = json.loads((folder / "prior.json").read_text())
        m = cls(d["column"])
        m.global_, m.rates_ = d["global"], np.array(d["rates"])
        return m


@register
class PriorFamily(Family):
    name = "prior"
    model = PriorModel
    stream = 0
