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

from musicrec.stats import user_bootstrap_auc_gaps


def gaps(pred: pl.DataFrame, models: list[str], draws: int, seed: int) -> dict:
    scores = {"oracle": pred["p_true"].to_numpy(), **{m: pred[f"p_{m}"].to_numpy() for m in models}}
    return user_bootstrap_auc_gaps(pred["target"].to_numpy(), pred["user"].to_numpy(), scores, "oracle",
                                   np.random.default_rng(seed), draws)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="paths.data of the run")
    ap.add_argument("--models", nargs="+", help="models of predictions.parquet (default: every p_<model> column)")
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    pred = pl.read_parquet(args.data / "05_predict" / "predictions.parquet")
    if "p_true" not in pred.columns:
        raise SystemExit(f"oracle_gap: {args.data / '05_predict' / 'predictions.parquet'} has no p_true column: "
                         "only generated data has a truth")
    models = args.models or [c.removeprefix("p_") for c in pred.columns if c.startswith("p_") and c != "p_true"]
    print(json.dumps(gaps(pred, models, args.draws, args.seed), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
