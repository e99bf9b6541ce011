"""What every model family shares: the data it is given and the small interface it implements."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from sklearn.base import BaseEstimator


BATCH_ROWS = 32_768   # rows per parquet batch: its buffers (~17 MB) stay below the allocator's mmap
                      # threshold, so every batch reuses the same heap pages


@dataclass
class FeatureSet:
    """One split as models see it: the feature matrix plus the keys some families need.

    `X` holds every feature of features.json in that order (categorical codes as floats, NaN where a
    feature is undefined); `keys` holds user, song and time_order for the collaborative and prior models.
    """

    X: np.ndarray
    y: np.ndarray | None
    keys: pl.DataFrame
    names: list[str]
    categorical: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    #: what several families compute from X alone (the varying columns, a fitted design), once
    memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return self.X.shape[0]

    def row_batches(self, rows: int = BATCH_ROWS):
        """(first row, block) of consecutive rows of X."""
        for s in range(0, len(self), rows):
            yield s, self.X[s:s + rows]

    def release(self) -> None:
        """Forget what can be read again (a StoredFeatureSet's matrix); nothing for a matrix in memory."""

    def column(self, name: str) -> np.ndarray:
        return self.X[:, self.names.index(name)]

    def take(self, rows: np.ndarray) -> "FeatureSet":
        """The same split restricted to some rows (indices or a boolean mask)."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return FeatureSet(self.X[rows], None if self.y is None else self.y[rows], self.keys[rows],
                          self.names, self.categorical, self.sources)

    @property
    def numeric(self) -> list[str]:
        return [n for n in self.names if n not in self.categorical]


def matrix_batches(parquet, names: list[str], dtype, batch_rows: int = BATCH_ROWS):
    """(first row, block) of a features parquet's columns `names`, batch by batch (a column-major
    view: one contiguous column per feature); nulls as NaN."""
    start = 0
    if not names:
        return
    for batch in pq.ParquetFile(parquet).iter_batches(batch_size=batch_rows, columns=names):
        block = np.empty((len(names), batch.num_rows), dtype=dtype)   # a column per row: contiguous writes
        for j, column in enumerate(batch.columns):
            block[j] = column.to_numpy(zero_copy_only=False)
        yield start, block.T
        start += batch.num_rows


def load_feature_set(parquet, spec: dict, dtype=np.float32, stored: bool = False) -> FeatureSet:
    """Read one features_*.parquet written by stage 03 into a FeatureSet.

    The feature matrix is filled batch by batch into one C-ordered array of `dtype` (a polars frame,
    its numpy copy and a C-ordered copy were three matrices at once: 8 GB for a 2.7 GB matrix at
    KKBOX size). `stored`: the matrix stays in the file until it is needed whole (StoredFeatureSet)."""
    names = [f["name"] for f in spec["features"]]
    categorical = [f["name"] for f in spec["features"] if f["categorical"]]
    sources = {f["name"]: f["source"] for f in spec["features"]}
    file = pq.ParquetFile(parquet)
    present = set(file.schema_arrow.names)
    target = spec.get("target", "target")
    if hasattr(parquet, "seek"):
        parquet.seek(0)
    frame = pl.read_parquet(parquet, columns=[c for c in (target, *spec["keys"], "id") if c in present])
    y = frame[target].to_numpy().astype(np.int8) if target in present else None
    keys = frame.select([c for c in (*spec["keys"], "id") if c in present])
    if stored:
        return StoredFeatureSet(parquet, dtype, file.metadata.num_rows, y, keys, names, categorical, sources)
    return FeatureSet(read_matrix(parquet, names, dtype, file.metadata.num_rows), y, keys, names, categorical, sources)


def read_matrix(parquet, names: list[str], dtype, n_rows: int) -> np.ndarray:
    X = np.empty((n_rows, len(names)), dtype=dtype)
    for start, block in matrix_batches(parquet, names, dtype):
        X[start:start + len(block)] = block
    return X


class StoredFeatureSet(FeatureSet):
    """A split whose feature matrix stays in its parquet file until a family needs it whole.

    Stage 06 at KKBOX size: the matrix is 2.7 GB, and the designs that nb, lr and rf build from it
    (2.5 to 5 GB each) are read from the file batch by batch (row_batches) instead of from a copy
    held beside them. `X` reads the whole matrix on first use; `release` lets it go again."""

    def __init__(self, parquet, dtype, n_rows: int, y, keys, names, categorical, sources):
        self.parquet, self.dtype, self.n_rows, self._X = parquet, dtype, n_rows, None
        self.y, self.keys, self.names, self.categorical, self.sources = y, keys, names, categorical, sources
        self.memo = {}

    @property
    def X(self) -> np.ndarray:
        if self._X is None:
            self._X = read_matrix(self.parquet, self.names, self.dtype, self.n_rows)
        return self._X

    @X.setter
    def X(self, value: np.ndarray) -> None:
        self._X = value

    def __len__(self) -> int:
        return self.n_rows

    def row_batches(self, rows: int = BATCH_ROWS):
        if self._X is not None:
            yield from super().row_batches(rows)
        else:
            yield from matrix_batches(self.parquet, self.names, self.dtype, rows)

    def take(self, rows: np.ndarray) -> FeatureSet:
        """Some rows in memory, read from the file in one pass when the whole matrix is not held."""
        if self._X is not None:
            return super().take(rows)
        rows = np.asarray(rows)
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        order = np.argsort(rows, kind="stable")
        ranked = rows[order]
        X = np.empty((len(rows), len(self.names)), dtype=self.dtype)
        for start, block in self.row_batches():
            lo, hi = np.searchsorted(ranked, [start, start + len(block)])
            if hi > lo:
                X[order[lo:hi]] = block[ranked[lo:hi] - start]
        return FeatureSet(X, None if self.y is None else self.y[rows], self.keys[rows], self.names, self.categorical,
                          self.sources)

    def release(self) -> None:
        """Forget the whole matrix (the file still holds it; the memo's designs go too)."""
        self._X = None
        self.memo.clear()


class Model(BaseEstimator):
    """The interface of a model family: fit on train (valid for early stopping/calibration),
    predict_proba like scikit-learn, save/load in the family's own format.

    Fitting is split in two so that retraining many times on the same rows (influence analysis)
    pays once for what does not depend on the row weights: `prepare` builds the family's training
    inputs (design matrix, LightGBM Dataset, ...), `fit_prepared` fits with given row weights;
    `init` may hand over a fitted model of the same family to warm-start from. Constructor
    arguments follow scikit-learn's convention (stored under their own names), so `get_params` and
    `set_params` come from BaseEstimator.
    """

    name = "model"

    def prepare(self, train: FeatureSet, valid: FeatureSet | None = None):
        return train, valid

    def fit_prepared(self, prepared, sample_weight=None, init: "Model | None" = None) -> "Model":
        raise NotImplementedError

    def fit(self, train: FeatureSet, valid: FeatureSet | None = None, sample_weight=None) -> "Model":
        return self.fit_prepared(self.prepare(train, valid), sample_weight)

    def init_args(self) -> dict:
        """`get_params()` made JSON-ready, saved beside a model so that `load` restores them."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.get_params(deep=False).items()}

    def predict_proba(self, data: FeatureSet) -> np.ndarray:
        raise NotImplementedError

    def predict_logit(self, data: FeatureSet) -> np.ndarray:
        """The log-odds of a replay, as precise as the family can give them (probabilities round
        to 1.0 long before a log-odds of 37: naive Bayes's reach hundreds). Influence compares
        retrained models on these."""
        p = np.clip(self.predict_proba(data)[:, 1], 1e-15, 1 - 1e-15)
        return np.log(p) - np.log1p(-p)

    def save(self, folder: Path) -> list[str]:
        """Write the model in its library's own format into `folder`; the names of the files written."""
        raise NotImplementedError

    @classmethod
    def load(cls, folder: Path) -> "Model":
        raise NotImplementedError

    def info(self) -> dict:
        """Fitted facts worth recording in 04's models.json (iterations, trees, ...)."""
        return {}

    def importance(self) -> tuple[list[str], np.ndarray] | None:
        """(feature names, importances) where the library reports them (stage 05 plots them)."""
        return None


def two_columns(p1: np.ndarray) -> np.ndarray:
    """scikit-learn's predict_proba shape: column 0 = P(no replay), column 1 = P(replay)."""
    p1 = np.asarray(p1, dtype=np.float64)
    return np.column_stack([1.0 - p1, p1])


def write_json(path: Path, obj: dict) -> Path:
    path.write_text(json.dumps(obj, indent=2) + "\n")
    return path
