"""Stage 06's ranking part: what training interactions, users and groups do to the held-out top-k lists.

For a family that ranks songs (ALS): the influence of every training interaction on its own user's
held-out NDCG@k, precision@k and sampled log-likelihood, exact given the item factors (the
family's ranking estimator, checked against the library's refit of that user); and for groups
(the meaningful groups, random ablations and a seeded sample of single users) the predicted change
of each test half's mean NDCG@k and precision@k through the family's set model (warm-started
sweeps for ALS), a seeded sample of them retrained as the check; held-out pruning by rows or by
users (musicrec.influence.pruning). Halves are by user, as everywhere.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp

from musicrec import families, metrics
from musicrec.influence import pruning
from musicrec.influence.groups import describe
from musicrec.influence.stats import correlation, seed_ceiling
from musicrec.progress import Progress
from musicrec.recommend import train_plays
from musicrec.rng import derived_seed
from musicrec.stats import clustered_mean_interval

log = logging.getLogger("musicrec")

MEASURES = ("ndcg", "precision")


def relevant_by_user(test, labelled: bool) -> dict[int, np.ndarray]:
    """Each test user's held-out relevant songs: the replayed ones, or every held-out pair when the
    data have no label (play counts without time)."""
    user, song = test.keys["user"].to_numpy(), test.keys["song"].to_numpy()
    keep = test.y == 1 if labelled and test.y is not None else np.ones(len(user), dtype=bool)
    order = np.argsort(user[keep], kind="stable")
    u, s = user[keep][order], song[keep][order]
    cut = np.flatnonzero(np.diff(u)) + 1
    return {int(g[0]): np.unique(t) for g, t in zip(np.split(u, cut), np.split(s, cut)) if len(g)}


class Lists:
    """Per-user NDCG@k and precision@k of a ranking model's top-k lists for the test users."""

    def __init__(self, relevant: dict[int, np.ndarray], train, k: int, threads: int):
        self.users = np.array(sorted(relevant), dtype=np.int64)
        self.k, self.threads = k, threads
        n_songs = int(max(train.keys["song"].max(), max(int(r.max()) for r in relevant.values()))) + 1
        rows = np.repeat(np.arange(len(self.users)), [len(relevant[u]) for u in self.users])
        cols = np.concatenate([relevant[u] for u in self.users])
        self.relevant = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(self.users), n_songs))
        self.train_user = train.keys["user"].to_numpy().astype(np.int64)
        self.train_song = train.keys["song"].to_numpy().astype(np.int64)
        self.n_songs = n_songs

    def measures(self, model, keep: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Per test user (self.users order): NDCG@k and precision@k of the model's lists, the songs
        a user played in the kept train rows left out."""
        u, s = (self.train_user, self.train_song) if keep is None else (self.train_user[keep], self.train_song[keep])
        n_users = max(int(self.users.max()), int(self.train_user.max()), model.shape_[0] - 1) + 1
        plays = train_plays(u, s, (n_users, self.n_songs))
        songs, _ = model.recommend(self.users, self.k, plays[:, :model.shape_[1]], self.threads)
        songs = np.where(songs >= self.n_songs, -1, songs)
        out = metrics.per_user_accuracy(songs, self.relevant, self.k)
        return {"precision": out[f"precision@{self.k}"], "ndcg": out[f"ndcg@{self.k}"]}


def half_changes(new: dict, base: dict, halves: dict[str, np.ndarray]) -> dict:
    """Per half of the test users: each measure's mean change with its interval (paired: the same users)."""
    out = {}
    for h, j in halves.items():
        out[h] = {}
        for m in MEASURES:
            d = new[m][j] - base[m][j]
            out[h][m] = float(d.mean()) if len(d) else None
            out[h][f"{m}_ci95"] = clustered_mean_interval(d, np.arange(len(d))) if len(d) > 1 else None
    return out


def user_halves(lists: Lists, rng) -> dict[str, np.ndarray]:
    """Positions in lists.users of half A and half B: the test users shuffled and cut in two."""
    order = rng.permutation(len(lists.users))
    a = np.sort(order[: len(order) // 2])
    return {"A": a, "B": np.setdiff1d(np.arange(len(order)), a)}


def library_check(est, rows_wanted: int, rng) -> dict:
    """The downdated factor of sampled rows against the library's own solve of that user without the
    row (implicit's recalculate_user on the matrix reweighted without it)."""
    users = np.array([u for u in sorted(est.relevant) if len(est.user_rows(u)) > 1], dtype=np.int64)
    pool = np.flatnonzero(np.isin(est.user, users))
    rows = np.sort(rng.choice(pool, min(rows_wanted, len(pool)), replace=False)) if len(pool) else pool
    errors = []
    for r in rows:
        u = int(est.user[r])
        user_rows, x, without = est.factors_without(u)
        mine = without[int(np.flatnonzero(user_rows == r)[0])]
        ref = est.refit_factor(int(r))
        errors.append(float(np.abs(mine - ref).max() / max(np.abs(ref).max(), 1e-300)))
    return {"reference": "implicit's recalculate_user of the user on the matrix reweighted without the row",
            "rows": int(len(rows)), "max_rel_err": max(errors) if errors else None,
            "relative_to": "the largest entry of the library's factor"}


def explain_ranking(name: str, model, est, train, valid, lists: Lists, halves: dict, groups: list,
                    retrainer, seeds: tuple[int, int | None], rcfg: dict, gcfg: dict, rng) -> dict:
    """The ranking influence of one ranking family: every interaction (est.loo), its check against the
    library, and every group's predicted change of each half's measures, a seeded sample retrained
    (under seeds[0]; also under seeds[1] where it is not None: the noise ceiling)."""
    seed = seeds[0]
    family = families.get(name)
    t0 = time.perf_counter()
    loo = est.loo(rcfg["seconds"], rng)
    loo_s = time.perf_counter() - t0
    check = library_check(est, rcfg["check_rows"], rng)
    n = len(train)
    set_model = family.ranking_set_models(model, train, valid, gcfg)
    set_base = lists.measures(set_model(np.ones(n)))
    n_check = len(groups) if rcfg["retrain"] is None else min(rcfg["retrain"], len(groups))
    chosen = set(rng.choice(len(groups), n_check, replace=False).tolist())
    recs, predict_s, retrain_s = [], [], []
    bases: dict[int, dict] = {}     # each seed's retrained all-rows lists, scored once

    def retrained_change(at_seed: int, rows: np.ndarray, keep: np.ndarray) -> dict:
        if at_seed not in bases:
            bases[at_seed] = lists.measures(retrainer.base_model(at_seed))
        return half_changes(lists.measures(retrainer.model_without(at_seed, rows), keep), bases[at_seed], halves)

    budget, t_groups = rcfg["group_seconds"], time.perf_counter()
    twice = seeds[1] is not None
    with Progress(len(groups) + n_check * (1 + twice), f"ranking groups {name}", unit="groups") as progress:
        for i, (kind, group, rows) in enumerate(groups):
            if budget is not None and i > 0 and time.perf_counter() - t_groups > budget:
                log.info("ranking %s: %d of %d groups predicted within influence.ranking.group_seconds", name, i,
                         len(groups))
                break
            w = np.ones(n)
            w[rows] = 0.0
            t1 = time.perf_counter()
            predicted = half_changes(lists.measures(set_model(w), w > 0),
                                     set_base, halves)
            predict_s.append(time.perf_counter() - t1)
            progress.update()
            retrained = again = None
            if i in chosen:
                t1 = time.perf_counter()
                retrained = retrained_change(seed, rows, w > 0)
                retrain_s.append(time.perf_counter() - t1)
                progress.update()
                if twice:
                    again = retrained_change(seeds[1], rows, w > 0)
                    progress.update()
            for h in halves:
                rec = {"model": name, "kind": kind, "group": group, "label": describe(kind, group), "rows": int(len(rows)),
                       "share": len(rows) / n, "half": h, "retrained": retrained is not None}
                for m in MEASURES:
                    rec[f"predicted_{m}"] = predicted[h][m]
                    rec[f"predicted_{m}_ci95"] = predicted[h][f"{m}_ci95"]
                    rec[f"delta_{m}"] = None if retrained is None else retrained[h][m]
                    rec[f"delta_{m}_ci95"] = None if retrained is None else retrained[h][f"{m}_ci95"]
                    rec[f"delta_{m}_second_seed"] = None if again is None else again[h][m]
                recs.append(rec)
    return {"loo": loo, "loo_seconds": round(loo_s, 3), "loo_coverage": est.coverage, "library_check": check,
            "groups": recs, "groups_predicted": {"groups": len(recs) // max(1, len(halves)), "of": len(groups)},
            "seconds": {"set_prediction_per_group": round(float(np.mean(predict_s)), 4) if predict_s else None,
                        "retrain_per_group": round(float(np.mean(retrain_s)), 4) if retrain_s else None}}


def summarize(recs: list[dict], rng) -> dict:
    """Per half, over the retrained groups: Spearman and Pearson of predicted vs retrained change of
    each measure, with n and bootstrap intervals."""
    out = {}
    done = [r for r in recs if r["retrained"]]
    for m in MEASURES:
        out[m] = {}
        for h in ("A", "B"):
            a = np.array([r[f"predicted_{m}"] for r in done if r["half"] == h], dtype=np.float64)
            b = np.array([r[f"delta_{m}"] for r in done if r["half"] == h], dtype=np.float64)
            out[m][h] = {c: correlation(a, b, rng, c) for c in ("spearman", "pearson")}
            twice = [r for r in done if r["half"] == h and r.get(f"delta_{m}_second_seed") is not None]
            if twice:
                out[m][h]["noise_ceiling"] = seed_ceiling([r[f"predicted_{m}"] for r in twice],
                                                          [r[f"delta_{m}"] for r in twice],
                                                          [r[f"delta_{m}_second_seed"] for r in twice], rng)
    out["groups"] = len({(r["kind"], r["group"]) for r in recs})
    out["retrained"] = len({(r["kind"], r["group"]) for r in done})
    return out


def sampled_users(train, n: int, rng, names: dict[int, str] | None = None) -> list[tuple[str, str, np.ndarray]]:
    """(kind, group, rows) for `n` seeded users, each group all of that user's training rows."""
    user = train.keys["user"].to_numpy()
    ids = np.unique(user)
    chosen = np.sort(rng.choice(ids, min(n, len(ids)), replace=False)) if n else ids[:0]
    return [("user", (names or {}).get(int(u), str(int(u))), np.flatnonzero(user == u)) for u in chosen]


def run_ranking(cfg: dict, name: str, model, data: dict, groups: list, test_halves: dict, labelled: bool,
                user_names: dict[int, str], rng_of) -> dict:
    """Everything the ranking part says about one ranking family (see explain_ranking), with the
    test users cut into the same halves as the rest of the stage. rng_of(purpose) gives a stream."""
    from musicrec.influence.retrain import Retrainer

    rcfg, gcfg = cfg["influence"]["ranking"], cfg["influence"]["groups"]
    train, valid, test = data["train"], data["valid"], data["test"]
    relevant = relevant_by_user(test, labelled)
    lists = Lists(relevant, train, rcfg["k"], model.n_jobs)
    test_users = test.keys["user"].to_numpy()
    halves = {h: np.flatnonzero(np.isin(lists.users, np.unique(test_users[j]))) for h, j in test_halves.items()}
    est = families.get(name).ranking_influence(model, train, relevant, rcfg, rng_of("ranking_negatives"))
    everyone = groups + sampled_users(train, rcfg["users"], rng_of("ranking_users"), user_names)
    retrainer = Retrainer(model, train, valid if labelled else None, test)
    seeds = (retrainer.seed, derived_seed(rng_of("second_seed")) if gcfg["ceiling"] else None)
    out = explain_ranking(name, model, est, train, valid if labelled else None, lists, halves, everyone, retrainer,
                          seeds, rcfg, gcfg, rng_of("ranking_check"))
    out["summary"] = summarize(out["groups"], rng_of("ranking_check"))
    out["users"] = {h: int(len(j)) for h, j in halves.items()}
    if rcfg["prune_fraction"] > 0:
        args = (train, lists, halves, retrainer, retrainer.seed, rcfg["prune_fraction"], rcfg["prune_repeats"],
                rng_of("ranking_pruning"))
        if rcfg["prune_by"] == "users":
            set_model = families.get(name).ranking_set_models(model, train, valid if labelled else None, gcfg)
            loglik = pruning.HeldOutLoglik(lists.users, relevant, est.neg, model.shape_[1], rng_of("ranking_pairs"))
            effects = pruning.user_effects(set_model, train, lists, loglik, halves, user_names, name)
            out["pruning"], out["user_effects"] = pruning.by_users(effects, *args)
        else:
            out["pruning"] = pruning.by_rows(out["loo"], *args)
    return out
