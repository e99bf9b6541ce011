"""Group influence: retrain without groups of rows and compare with the sum of their LOO estimates.

Two kinds of groups. Random ablations follow the original study's protocol (remove 5%, 10%, ...
55% of the training rows at random, R repeats each). Meaningful groups are the ones a user asks
about: power users, each source tab, top genres, each language, users and songs by activity
decile, members by age band. For each, the retrained change of test log-loss and AUROC, next to
the prediction from summing the removed rows' leave-one-out estimates.
"""
from __future__ import annotations

import logging

import numpy as np
import polars as pl

from musicrec.influence.retrain import Retrainer

log = logging.getLogger("musicrec")

AGE_BANDS = ((0, 18, "<18"), (18, 25, "18-24"), (25, 35, "25-34"), (35, 45, "35-44"), (45, 200, "45+"))


def _decile_of(counts: np.ndarray, n: int) -> np.ndarray:
    """Decile 1 (least active) .. n (most active) of each entity by its row count, ties by id."""
    order = np.argsort(counts, kind="stable")
    decile = np.empty(len(counts), dtype=np.int64)
    decile[order] = np.arange(len(counts)) * n // len(counts) + 1
    return decile


def meaningful_groups(rows: pl.DataFrame, names: dict[str, dict[int, str]], gcfg: dict) -> list[tuple[str, str, np.ndarray]]:
    """(kind, group, row indices) for every meaningful group of the train split.

    rows: the train split in feature-row order with user, song, source_system_tab, genre,
    language, bd, bd_missing; names: code -> readable value per categorical column.
    """
    out = []
    user = rows["user"].to_numpy()
    song = rows["song"].to_numpy()
    users, user_idx, user_n = np.unique(user, return_inverse=True, return_counts=True)
    songs, song_idx, song_n = np.unique(song, return_inverse=True, return_counts=True)

    k = max(1, int(round(gcfg["power_user_share"] * len(users))))
    power = np.argsort(-user_n, kind="stable")[:k]
    out.append(("power_users", f"top {gcfg['power_user_share']:.0%} users", np.flatnonzero(np.isin(user_idx, power))))

    def by_value(col: str, kind: str, keep=None):
        codes = rows[col].to_numpy()
        values, counts = np.unique(codes, return_counts=True)
        chosen = values if keep is None else values[np.argsort(-counts, kind="stable")[:keep]]
        for v in chosen:
            out.append((kind, names.get(col, {}).get(int(v), str(v)), np.flatnonzero(codes == v)))

    by_value("source_system_tab", "source_system_tab")
    by_value("genre", "genre", keep=gcfg["top_genres"])
    by_value("language", "language")
    for kind, idx, n in (("user_activity_decile", user_idx, user_n), ("song_activity_decile", song_idx, song_n)):
        dec = _decile_of(n, gcfg["deciles"])[idx]
        for d in range(1, gcfg["deciles"] + 1):
            out.append((kind, f"decile {d}", np.flatnonzero(dec == d)))
    bd = rows["bd"].to_numpy()
    unknown = rows["bd_missing"].to_numpy() == 1
    out.append(("age_band", "unknown", np.flatnonzero(unknown)))
    for lo, hi, label in AGE_BANDS:
        out.append(("age_band", label, np.flatnonzero(~unknown & (bd >= lo) & (bd < hi))))
    # a group of every row (a listen log's single "unknown" tab, genre or age) leaves nothing to retrain on
    return [(k, g, r) for k, g, r in out if 0 < len(r) < rows.height]


def _predicted(loo: dict, rows: np.ndarray) -> dict[str, float]:
    """The group's effect on the test metrics predicted as the sum of its rows' LOO estimates."""
    return {f"predicted_{k}": float(loo[k][rows].sum()) for k in ("logloss", "auc")}


def group_effects(retrainer: Retrainer, seed: int, groups, loo: dict) -> list[dict]:
    base = retrainer.logits(seed)
    n = len(retrainer.train)
    out = []
    for kind, group, rows in groups:
        d = retrainer.without(seed, rows, base)
        out.append({"kind": kind, "group": group, "rows": len(rows), "share": len(rows) / n,
                    "delta_logloss": d["logloss"], "delta_auc": d["auc"], **_predicted(loo, rows)})
    return out


def random_ablations(retrainer: Retrainer, seed: int, fractions, repeats: int, loo: dict, rng) -> list[dict]:
    base = retrainer.logits(seed)
    n = len(retrainer.train)
    out = []
    for f in fractions:
        for r in range(repeats):
            rows = rng.choice(n, int(round(f * n)), replace=False)
            d = retrainer.without(seed, rows, base)
            out.append({"fraction": f, "repeat": r, "rows": len(rows), "delta_logloss": d["logloss"],
                        "delta_auc": d["auc"], **_predicted(loo, rows)})
    return out


def summarize_ablations(runs: list[dict]) -> dict:
    """Mean and sd of the retrained change per fraction; correlation of prediction and retrain."""
    df = pl.DataFrame(runs)
    per = (df.group_by("fraction").agg(
        pl.col("delta_logloss").mean().alias("logloss_mean"), pl.col("delta_logloss").std().alias("logloss_sd"),
        pl.col("delta_auc").mean().alias("auc_mean"), pl.col("delta_auc").std().alias("auc_sd"),
        pl.col("predicted_logloss").mean().alias("predicted_logloss_mean")).sort("fraction"))
    corr = {}
    for k in ("logloss", "auc"):
        a, b = df[f"predicted_{k}"].to_numpy(), df[f"delta_{k}"].to_numpy()
        corr[k] = float(np.corrcoef(a, b)[0, 1]) if len(a) > 2 and a.std() > 0 and b.std() > 0 else None
    return {"by_fraction": per.to_dicts(), "pearson_predicted_vs_retrained": corr}
