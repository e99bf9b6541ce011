"""Group influence: the predicted effect of removing each group of rows, checked by retraining a sample.

Two kinds of groups. Meaningful groups are the ones a user asks about: power users, each source
tab, the top genres, each language, users and songs by activity decile, members by age band.
Random ablations follow the original study's protocol (remove 5%, 15%, ... 55% of the training
rows at random, R repeats each). For every group and each half of the test split, the family's set
predictor (Estimator.group_logits_many) gives the predicted change of that half's log-loss, with
an interval over the half's users, beside the sum of the rows' leave-one-out influence. A seeded
sample of the groups (influence.groups.retrain; every group in the proof) is retrained as the
check: the agreement over those groups, with n and intervals, says how far to trust the others.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import polars as pl

from musicrec import families
from musicrec.influence.retrain import PartScorer, Retrainer, retrained, retrains
from musicrec.influence.stats import correlation, seed_ceiling

log = logging.getLogger("musicrec")

AGE_BANDS = ((0, 18, "<18"), (18, 25, "18-24"), (25, 35, "25-34"), (35, 45, "35-44"), (45, 200, "45+"))
TRUSTED = 0.8   # lower end of the Spearman interval on both halves above which group predictions rank groups
TRUST_MIN_N = 10   # fewer retrained groups than this: a percentile bootstrap of a few perfectly ordered pairs
                   # collapses to [1, 1], an interval that proves nothing


def ranks_reliably(spearman_by_half) -> bool:
    """Trusted: on every test half, at least TRUST_MIN_N retrained groups and a Spearman interval
    whose lower end reaches TRUSTED."""
    return all(c is not None and (c.get("n") or 0) >= TRUST_MIN_N and c.get("ci95") is not None
               and c["ci95"][0] >= TRUSTED for c in spearman_by_half)


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
    out.append(("power_users", f"top {gcfg['power_user_share']:.0%}", np.flatnonzero(np.isin(user_idx, power))))

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
    # a group of every row (a listen log's single "unknown" tab, genre or age) leaves nothing to retrain on;
    # int32 row numbers: the groups hold every row about seven times over (300 MB as int64 at KKBOX size)
    small = np.int32 if rows.height < 2**31 else np.int64
    return [(k, g, r.astype(small)) for k, g, r in out if 0 < len(r) < rows.height]


def random_ablations(n: int, fractions, repeats: int, rng) -> list[tuple[str, str, np.ndarray]]:
    """(kind, group, rows) of `repeats` random draws of each share of the n training rows."""
    return [("random_ablation", f"{f:g} #{r}", rng.choice(n, int(round(f * n)), replace=False))
            for f in fractions for r in range(repeats)]


DESCRIBE = {"power_users": "users in the {group} by activity",
            "source_system_tab": "source tab: {group}", "genre": "genre: {group}", "language": "language: {group}",
            "user_activity_decile": "users in activity {group} (1 = least active)",
            "song_activity_decile": "songs in popularity {group} (1 = least played)",
            "age_band": "members aged {group}", "random_ablation": "{group} of the rows at random"}


def describe(kind: str, group: str) -> str:
    """A group named as a person would ("source tab: radio", "users in the top 1% by activity")."""
    if kind == "random_ablation":
        share, repeat = group.split(" #")
        return f"{float(share):.0%} of the rows at random (draw {int(repeat) + 1})"
    if kind == "age_band" and group == "unknown":
        return "members without an age"
    return DESCRIBE.get(kind, kind + ": {group}").format(group=group)


def predict(est, groups: list, influence: dict | None, halves: dict, user: np.ndarray,
            progress=None) -> tuple[list, float]:
    """Every group's predicted change of each test half (the family's set predictor, else the sum
    of the rows' LOO), beside the sum of the rows' LOO where each half's LOO is given, and the mean
    seconds per group."""
    t0 = time.perf_counter()
    out = []
    score = PartScorer(est.y_test, est.f_test, halves, user)
    for (kind, group, rows), f in zip(groups, est.group_logits_many([r for _, _, r in groups])):
        base = {"kind": kind, "group": group, "label": describe(kind, group), "rows": int(len(rows)),
                "share": len(rows) / len(est.train)}
        if kind == "random_ablation":
            share, repeat = group.split(" #")
            base.update(fraction=float(share), repeat=int(repeat))
        summed = {h: None if influence is None else float(influence[h][rows].sum()) for h in halves}
        if f is None:   # no set predictor for this family
            if influence is None:
                raise ValueError(f"{est.name} has no set predictor: its groups need each test half's LOO")
            for h in halves:
                out.append({**base, "half": h, "predictor": "sum_of_loo", "predicted_logloss": summed[h],
                            "predicted_logloss_ci95": None, "predicted_auc": None, "sum_of_loo": summed[h]})
        else:
            for h, c in score(f).items():
                out.append({**base, "half": h, "predictor": "set_model", "predicted_logloss": c["logloss"],
                            "predicted_logloss_ci95": c["logloss_ci95"], "predicted_auc": c["auc"],
                            "sum_of_loo": summed[h]})
        if progress is not None:
            progress.update()
    return out, (time.perf_counter() - t0) / max(1, len(groups))


MIN_CHECK = 3   # fewer retrained groups than this give no correlation worth an interval


def plan_retrains(gcfg: dict, n_groups: int, fit_seconds: float | None, curve_fractions, twice: bool):
    """How many groups to retrain as the check, and which learning-curve shares, within
    influence.groups.seconds when one retrain costs what stage 04's fit of the model took.

    The all-rows refit the check compares with counts as one retrain; the check comes first, then
    the curve; a check of fewer than MIN_CHECK groups is not made. `retrain: null` (every group) or
    `seconds: null` is no cap. Returns (groups to retrain, curve shares, why fewer, or None)."""
    wanted = n_groups if gcfg["retrain"] is None else min(gcfg["retrain"], n_groups)
    budget = gcfg["seconds"]
    if budget is None or gcfg["retrain"] is None or not fit_seconds or wanted == 0:
        return wanted, list(curve_fractions), None
    fits = int(budget // fit_seconds) - 1
    check = min(wanted, max(0, fits) // (1 + twice))
    if check < MIN_CHECK:
        check = 0
    fits -= check * (1 + twice)
    curve = list(curve_fractions) if fits >= len(curve_fractions) else []
    if check == wanted and len(curve) == len(curve_fractions):
        return check, curve, None
    why = (f"one retrain takes ~{fit_seconds:.0f} s (stage 04's fit) and influence.groups.seconds is {budget:g}: "
           f"{check} of {wanted} groups retrained as the check" + ("" if len(curve) == len(curve_fractions) else
                                                                  ", no learning curve")
           + "; bench/benchmark.py --profile fullsize-proof retrains more")
    return check, curve, why


def retrain(retrainer: Retrainer, seed: int, groups: list, chosen: np.ndarray, halves: dict, user: np.ndarray,
            progress=None, eng=None) -> tuple[dict, float]:
    """The retrained change of each half for the chosen groups (by index), and the mean seconds per
    retrain (the all-rows fit they are compared with is made before the clock starts). On a cluster
    engine the retrains are its tasks (retrain.retrains), each returning the test logits scored here."""
    out = {}
    if len(chosen) == 0:   # nothing to compare: no all-rows refit either (minutes and GBs at KKBOX size)
        return {}, 0.0
    score = PartScorer(retrainer.y_test, retrainer.logits(seed), halves, user)
    t0 = time.perf_counter()
    for k, new in retrains(eng, retrainer, [(seed, groups[i][2], "logits") for i in chosen], progress):
        out[int(chosen[k])] = score(new)
    return {int(i): out[int(i)] for i in chosen}, (time.perf_counter() - t0) / max(1, len(chosen))


def learning_curve(est, retrainer: Retrainer, seed: int, fractions, halves: dict, user: np.ndarray, rng,
                   progress=None, eng=None) -> dict:
    """What a set predictor that holds the model's structure fixed misses: the retrained change
    minus the predicted one, for random draws of each share of the rows (draws of their own, never
    a group that is scored). Per half: the shares (with 0 where nothing is missed) and the residuals.
    The draws are made here; on a cluster engine the retrains are its tasks."""
    n = len(retrainer.train)
    draws = [rng.choice(n, int(round(f * n)), replace=False) for f in fractions]
    predicted = list(est.group_logits_many(draws))
    got_score = PartScorer(retrainer.y_test, retrainer.logits(seed), halves, user)
    expected_score = PartScorer(est.y_test, est.f_test, halves, user)
    out = {h: {"fractions": [0.0], "residuals": [0.0]} for h in halves}
    news = retrained(eng, retrainer, [(seed, rows, "logits") for rows in draws], progress)
    for f, new, p in zip(fractions, news, predicted):
        got, expected = got_score(new), expected_score(p)
        for h in halves:
            out[h]["fractions"].append(float(f))
            out[h]["residuals"].append(got[h]["logloss"] - expected[h]["logloss"])
    return out


def with_curve(recs: list[dict], curve: dict) -> list[dict]:
    """Predictions plus the learning curve's residual at the group's share (linear between the
    measured shares, the last one beyond): the size effect of retraining on fewer rows."""
    for rec in recs:
        c = curve[rec["half"]]
        shift = float(np.interp(rec["share"], c["fractions"], c["residuals"]))
        rec["set_model_logloss"] = rec["predicted_logloss"]
        rec["predicted_logloss"] += shift
        if rec.get("predicted_logloss_ci95"):
            rec["predicted_logloss_ci95"] = [x + shift for x in rec["predicted_logloss_ci95"]]
        rec["predictor"] = "set_model+learning_curve"
    return recs


def records(predicted: list[dict], retrained: dict, n_halves: int, again: dict | None = None) -> list[dict]:
    """One record per group and half: predicted change, and the retrained one where it was retrained
    (and again under the second seed where `again` has it: the noise ceiling's retrains)."""
    out = []
    for k, rec in enumerate(predicted):
        r = retrained.get(k // n_halves, {}).get(rec["half"])
        r2 = (again or {}).get(k // n_halves, {}).get(rec["half"])
        out.append({**rec, "retrained": r is not None, "delta_logloss": None if r is None else r["logloss"],
                    "delta_logloss_ci95": None if r is None else r["logloss_ci95"],
                    "delta_auc": None if r is None else r["auc"],
                    "delta_logloss_second_seed": None if r2 is None else r2["logloss"]})
    return out


def group_ceiling(recs: list[dict], seeds, rng) -> dict:
    """Per half, over the groups retrained under both seeds (records() with `again`): Spearman of the
    two retrained changes, how far any prediction can agree with one retraining ("not measurable"
    when its interval reaches below 0.2), and the predictions against the mean of both."""
    out = {"seeds": list(seeds), "rows": "the same retrained groups, retrained again under the second seed"}
    for h in ("A", "B"):
        twice = [r for r in recs if r["half"] == h and r["delta_logloss_second_seed"] is not None]
        out[h] = seed_ceiling([r["predicted_logloss"] for r in twice], [r["delta_logloss"] for r in twice],
                              [r["delta_logloss_second_seed"] for r in twice], rng)
    return out


def trust(name: str | None, summary: dict) -> str:
    """How far a model's group predictions can be trusted, in words, from the measured correlations."""
    family = families.get(name) if name else None
    how = family.group_predictor if family is not None else "the sum of the rows' leave-one-out estimates"
    if family is not None and family.group_exact:
        return how
    spearman = [summary["predicted"][h]["spearman"] for h in ("A", "B")]
    measured = ", ".join(f"half {h}: Spearman {_txt(c)}" for h, c in zip("AB", spearman))
    if ranks_reliably(spearman):
        verdict = f"the prediction ranks groups reliably (both intervals above {TRUSTED})"
    elif min(c.get("n") or 0 for c in spearman) < TRUST_MIN_N:
        verdict = (f"too few groups retrained to say (fewer than {TRUST_MIN_N} per half): read the retrained "
                   "change (delta_logloss in groups.parquet) where there is one")
    else:
        verdict = (f"not shown to rank groups reliably (an interval reaches below {TRUSTED}): read the retrained "
                   "change (delta_logloss in groups.parquet) where there is one")
    ceil = summary.get("noise_ceiling")
    if ceil:
        verdict += ("; the same groups retrained under a second seed agree with the first at " +
                    ", ".join(f"half {h}: Spearman {_txt(ceil[h])}" for h in ("A", "B")) +
                    " (retraining's own noise caps any prediction's agreement with one retraining), and the "
                    "prediction against the mean of both retrainings has " +
                    ", ".join(f"half {h}: Spearman {_txt(ceil[h]['predicted_vs_mean_of_seeds'])}" for h in ("A", "B")
                              if ceil[h].get("predicted_vs_mean_of_seeds")))
    return f"{how}; against retraining ({measured}): {verdict}"


def _txt(c: dict) -> str:
    if c.get("value") is None:
        return f"not measurable (n={c['n']})"
    ci = c.get("ci95")
    return f"{c['value']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") + f", n={c['n']}"


def summarize(recs: list[dict], rng, name: str | None = None, seconds: dict | None = None,
              seeds: tuple[int, int] | None = None) -> dict:
    """Per test half, over the retrained groups: Spearman and Pearson of predicted vs retrained change
    of log-loss (n, bootstrap interval) and the mean absolute error relative to the mean retrained
    change; the sum of LOO beside the set predictor; the cost of a prediction and of a retrain; and
    where groups were retrained under the second of `seeds` too, their noise ceiling."""
    df = pl.DataFrame(recs, infer_schema_length=None).filter(pl.col("retrained"))
    out = {"rows": "predicted and retrained change of the same test half, over the retrained groups; groups are "
                   "fixed in advance (none is chosen by an estimate)",
           "predictor": recs[0]["predictor"] if recs else "set_model",
           "groups": len({(r["kind"], r["group"]) for r in recs}), "retrained": df.height // 2 if df.height else 0}
    for col, key in (("predicted_logloss", "predicted"), ("sum_of_loo", "sum_of_loo")):
        if key == "sum_of_loo" and (not df.height or df["sum_of_loo"].null_count() == df.height):
            continue
        per = {}
        for h in ("A", "B"):
            sub = df.filter(pl.col("half") == h) if df.height else df
            a = sub[col].to_numpy() if sub.height else np.zeros(0)
            b = sub["delta_logloss"].to_numpy() if sub.height else np.zeros(0)
            per[h] = {m: correlation(a, b, rng, m) for m in ("spearman", "pearson")}
            per[h]["relative_error"] = (float(np.abs(a - b).mean() / np.abs(b).mean())
                                        if len(b) and np.abs(b).mean() > 0 else None)
        per["mean"] = {m: (None if any(per[h][m]["value"] is None for h in ("A", "B")) else
                           float(np.mean([per[h][m]["value"] for h in ("A", "B")]))) for m in ("spearman", "pearson")}
        out[key] = per
    if seconds:
        out["seconds"] = seconds
    if any(r.get("delta_logloss_second_seed") is not None for r in recs):
        out["noise_ceiling"] = group_ceiling(recs, seeds, rng)
    out["trust"] = trust(name, out)
    return out
