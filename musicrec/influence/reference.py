"""Exact leave-one-out by the library's own refit: what every estimate is checked against.

A family with a closed library refit (naive Bayes: GaussianNB; logistic regression: scikit-learn's
LogisticRegression) declares a LibraryReference; the randomised families are retrained in full by
the Retrainer with the saved model's arguments. The estimators' own refits stay as a fast path and
as a check of their bookkeeping, but the reported agreement is against these.
"""
from __future__ import annotations

import numpy as np

from musicrec.influence.losses import loss_change, metric_changes, row_losses


class LibraryReference:
    """The library's model of an estimator's family fitted without one row.

    `test_design`: the test rows as the library's parameters apply to them; `fit(row)` (None: all
    rows) the library's fit; `logits(fit, X)` its log-odds on design rows; `change(base, fit, X)`
    the log-odds of `fit` minus those of `base`, from the parameters' change (no cancellation);
    `train_rows(rows)` training design rows as the parameters apply to them."""

    test_design: np.ndarray

    def __init__(self, est):
        self.est = est

    def fit(self, row: int | None = None):
        raise NotImplementedError

    def logits(self, fit, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def change(self, base, fit, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def train_rows(self, rows) -> np.ndarray:
        raise NotImplementedError


class LibraryLOO:
    """Exact leave-one-out of rows by the library refit, one row at a time (so a time budget can
    decide how many), against the library's own all-rows fit."""

    def __init__(self, ref: LibraryReference):
        self.ref, self.est = ref, ref.est
        self.base = ref.fit()
        self.rows, self.dF, self.d_own = [], [], []

    def add(self, row: int) -> None:
        fit = self.ref.fit(int(row))
        self.rows.append(int(row))
        self.dF.append(self.ref.change(self.base, fit, self.ref.test_design))
        self.d_own.append(self.ref.change(self.base, fit, self.ref.train_rows([row]))[0])

    def result(self, parts: dict[str, np.ndarray]) -> dict:
        """Per test part the log-loss and AUROC change (arrays over the rows added), "self" (the
        row's own log-loss change) and "own_loss" (its log-loss without it)."""
        est, ref, rows = self.est, self.ref, np.array(self.rows, dtype=np.int64)
        f_test, f_own = ref.logits(self.base, ref.test_design), ref.logits(self.base, ref.train_rows(rows))
        dF = np.array(self.dF).reshape(len(rows), len(f_test))
        out = {p: metric_changes(est.y_test[j], f_test[j], dF[:, j]) for p, j in parts.items()}
        y = est.train.y[rows].astype(np.float64)
        out["self"] = loss_change(y, f_own, np.array(self.d_own))
        out["own_loss"] = row_losses(y, f_own) + out["self"]
        return out


def library_loo(ref: LibraryReference, rows: np.ndarray, parts: dict[str, np.ndarray], progress=None) -> dict:
    """Exact leave-one-out of each of `rows` by the library refit (LibraryLOO.result)."""
    loo = LibraryLOO(ref)
    for r in rows:
        loo.add(int(r))
        if progress is not None:
            progress.update()
    return loo.result(parts)
