#!/usr/bin/env python3
"""How far each model's test AUC is from the oracle's, with a 95% interval.

    .venv/bin/python bench/oracle_gap.py <paths.data of a synthetic run> [--draws 300] [--models lgbm lr]

Reads 05's predictions.parquet (the true probability `p_true` comes with generated data) and
resamples the test users with replacement (a cluster bootstrap: a user's rows move together, as they
are not independent), each draw weighting every row by how often its user was drawn; the oracle's
and the model's AUC are computed on the same draw, so the interval is that of the paired gap.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score


def gaps(pred: pl.DataFrame, models: list[str], draws: int, seed: int) -> dict:
    y = pred["target"].to_numpy()
    _, user = np.unique(pred["user"].to_numpy(), return_inverse=True)
    n_users = int(user.max()) + 1
    scores = {"oracle": pred["p_true"].to_numpy(), **{m: pred[f"p_{m}"].to_numpy() for m in models}}
    rng = np.random.default_rng(seed)
    drawn = {name: np.empty(draws) for name in scores}
    for b in range(draws):
        w = np.bincount(rng.integers(0, n_users, n_users), minlength=n_users)[user]
        for name, p in scores.items():
            drawn[name][b] = roc_auc_score(y, p, sample_weight=w)
    out = {"rows": len(y), "users": n_users, "draws": draws,
           "auc": {name: {"value": float(roc_auc_score(y, p)),
                          "ci95": [float(x) for x in np.percentile(drawn[name], [2.5, 97.5])]}
                   for name, p in scores.items()}}
    out["gap"] = {m: {"value": out["auc"]["oracle"]["value"] - out["auc"][m]["value"],
                      "ci95": [float(x) for x in np.percentile(drawn["oracle"] - drawn[m], [2.5, 97.5])]}
                  for m in models}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="paths.data of the run")
    ap.add_argument("--models", nargs="+", default=["lgbm", "lr"])
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    pred = pl.read_parquet(args.data / "05_predict" / "predictions.parquet")
    if "p_true" not in pred.columns:
        raise SystemExit(f"oracle_gap: {args.data / '05_predict' / 'predictions.parquet'} has no p_true column: "
                         "only generated data has a truth")
    print(json.dumps(gaps(pred, args.models, args.draws, args.seed), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
