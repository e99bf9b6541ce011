"""Group influence: retrain without groups of rows and compare with the sum of their LOO estimates.

Two kinds of groups. Random ablations follow the original study's protocol (remove 5%, 10%, ...
55% of the training rows at random, R repeats each). Meaningful groups are the ones a user asks
about: power users, each source tab, top genres, each language, users and songs by activity
decile, members by age band. For each, the retrained change of the log-loss and AUROC of each
half of the test split, next to the predicted change of that half's log-loss: the sum of the
removed rows' leave-one-out influence on it, and for nb and lr the family's removal model for
sets (exact for nb, one Newton step for lr). The sum of LOO is first order in the group; for rf,
lgbm and ALS it also holds the trees / item factors fixed, which retraining without a large group
does not, so how far their group predictions hold is measured (validation.json), and for them the
retrained change is what a user should read.
"""
from __future__ import annotations

import logging

import numpy as np
import polars as pl

from musicrec import families
from musicrec.influence.losses import loss_change
from musicrec.influence.retrain import Retrainer
from musicrec.influence.stats import correlation

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


def predictions(est, influence: dict[str, np.ndarray], rows: np.ndarray, halves: dict[str, np.ndarray]) -> dict:
    """The group's predicted change of each half's test log-loss: the sum of its rows' LOO
    influence on that half, and, where the family has a removal model for sets (nb: exact set
    removal; lr: one Newton step with the Hessian downdated by the group), that model's change."""
    out = {h: {"sum_of_loo": float(influence[h][rows].sum())} for h in halves}
    f = est.group_logits(rows)
    if f is not None:
        d = loss_change(est.y_test, est.f_test, f - est.f_test)
        for h, j in halves.items():
            out[h]["set_model"] = float(d[j].mean())
    return out


def _long(base: dict, retrained: dict, predicted: dict) -> list[dict]:
    """One record per test half: retrained and predicted change of that half's metrics."""
    out = []
    for h, p in predicted.items():
        best = p.get("set_model", p["sum_of_loo"])
        out.append({**base, "half": h, "delta_logloss": retrained[h]["logloss"], "delta_auc": retrained[h]["auc"],
                    "predicted_logloss": best, "predictor": "set_model" if "set_model" in p else "sum_of_loo",
                    "sum_of_loo": p["sum_of_loo"]})
    return out


def group_effects(retrainer: Retrainer, seed: int, groups, est, influence: dict, halves: dict,
                  progress=None) -> list[dict]:
    """Retrain without each meaningful group; per test half the retrained and predicted change."""
    n = len(retrainer.train)
    out = []
    for kind, group, rows in groups:
        base = {"kind": kind, "group": group, "rows": len(rows), "share": len(rows) / n}
        out += _long(base, retrainer.without(seed, rows), predictions(est, influence, rows, halves))
        if progress is not None:
            progress.update()
    return out


def random_ablations(retrainer: Retrainer, seed: int, fractions, repeats: int, est, influence: dict,
                     halves: dict, rng, progress=None) -> list[dict]:
    """Retrain without random shares of the rows (`repeats` draws each); as group_effects."""
    n = len(retrainer.train)
    out = []
    for f in fractions:
        for r in range(repeats):
            rows = rng.choice(n, int(round(f * n)), replace=False)
            base = {"kind": "random_ablation", "group": f"{f:g} #{r}", "fraction": f, "repeat": r,
                    "rows": len(rows), "share": len(rows) / n}
            out += _long(base, retrainer.without(seed, rows), predictions(est, influence, rows, halves))
            if progress is not None:
                progress.update()
    return out


TRUSTED = 0.8   # lower end of the Spearman interval on both halves above which group predictions rank groups


def trust(name: str | None, summary: dict) -> str:
    """How far a model's group predictions can be trusted, in words, from the measured correlations."""
    family = families.get(name) if name else None
    if family is not None and family.group_exact:
        return family.group_predictor
    lows = [(summary["predicted"][h]["spearman"]["ci95"] or [None])[0] for h in ("A", "B")]
    measured = ", ".join(f"half {h}: Spearman {_txt(summary['predicted'][h]['spearman'])}" for h in ("A", "B"))
    how = family.group_predictor if family is not None else "the sum of the rows' leave-one-out estimates"
    if all(x is not None and x >= TRUSTED for x in lows):
        verdict = f"the prediction ranks groups reliably (both intervals above {TRUSTED})"
    else:
        verdict = (f"the prediction does not rank groups reliably (an interval reaches below {TRUSTED}): read the "
                   "retrained change (delta_logloss in groups.parquet), not predicted_logloss")
    return f"{how}; measured over all groups and ablations ({measured}): {verdict}"


def _txt(c: dict) -> str:
    if c.get("value") is None:
        return f"not measurable (n={c['n']})"
    ci = c.get("ci95")
    return f"{c['value']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") + f", n={c['n']}"


def summarize(records: list[dict], rng, name: str | None = None) -> dict:
    """Per test half, Spearman and Pearson of predicted vs retrained change of log-loss over all
    groups and ablations (n, bootstrap interval), and the mean of the two halves' values; the
    sum of LOO beside the set model where both exist."""
    df = pl.DataFrame(records, infer_schema_length=None)
    out = {"rows": "predicted and retrained change of the same test half; no rows are selected by an "
                   "estimate, groups are fixed in advance", "predictor": df["predictor"][0]}
    for col in ("predicted_logloss", "sum_of_loo") if (df["predictor"] == "set_model").any() else ("predicted_logloss",):
        key = "predicted" if col == "predicted_logloss" else "sum_of_loo"
        per = {}
        for h in sorted(df["half"].unique()):
            sub = df.filter(pl.col("half") == h)
            a, b = sub[col].to_numpy(), sub["delta_logloss"].to_numpy()
            per[h] = {m: correlation(a, b, rng, m) for m in ("spearman", "pearson")}
        per["mean"] = {m: (None if any(per[h][m]["value"] is None for h in per) else
                           float(np.mean([per[h][m]["value"] for h in per]))) for m in ("spearman", "pearson")}
        out[key] = per
    out["trust"] = trust(name, out)
    return out
