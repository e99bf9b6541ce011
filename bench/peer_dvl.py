#!/usr/bin/env python3
"""pyDVL's data values of one design, run inside the peer's own environment (bench/requirements-peer.txt).

    <peer-venv>/bin/python bench/peer_dvl.py design.npz values.npz --trees 100 --seed 42

Reads X, y (training rows, labels as the model saw them), X_test, y_test and `knn_rows` (the
training rows KNN-Shapley values, a seeded subsample chosen by bench/peer.py); writes each
method's values (in training-row order; KNN-Shapley: NaN outside `knn_rows`) and its seconds.
Only numpy, scikit-learn and pyDVL are imported: this file is the peer's side of the comparison
and runs in its environment, not musicrec's.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from pydvl.valuation.dataset import Dataset
from pydvl.valuation.methods.data_oob import DataOOBValuation
from pydvl.valuation.methods.knn_shapley import KNNShapleyValuation
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import KNeighborsClassifier


def in_row_order(result, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    out[np.asarray(result.indices, dtype=np.int64)] = result.values
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("design")
    ap.add_argument("out")
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--neighbors", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    d = np.load(a.design)
    x, y, xt, yt = d["X"], d["y"].astype(np.int64), d["X_test"], d["y_test"].astype(np.int64)
    out: dict[str, np.ndarray] = {}

    t0 = time.perf_counter()  # Data-OOB: the forest's fit is part of its cost
    forest = RandomForestClassifier(n_estimators=a.trees, random_state=a.seed, n_jobs=2).fit(x, y)
    oob = DataOOBValuation(forest)
    oob.fit(Dataset(x, y))
    out["data_oob"] = in_row_order(oob.result, len(y))
    out["data_oob_seconds"] = np.array(time.perf_counter() - t0)

    rows = d["knn_rows"]
    t0 = time.perf_counter()
    knn = KNNShapleyValuation(KNeighborsClassifier(n_neighbors=a.neighbors), Dataset(xt, yt), progress=False)
    knn.fit(Dataset(x[rows], y[rows]))
    values = np.full(len(y), np.nan)
    values[rows] = in_row_order(knn.result, len(rows))
    out["knn_shapley"] = values
    out["knn_shapley_seconds"] = np.array(time.perf_counter() - t0)
    np.savez(a.out, **out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
