"""Proof of the estimates against the library's exact refit, on a random subsample of training rows.

For each model: the estimate against the library refit without each sampled row (reference.py:
GaussianNB and scikit-learn's LogisticRegression for nb and lr, full retraining with the saved
model's arguments for rf, lgbm and als), every correlation with its n and a bootstrap interval;
for the randomised families the noise ceiling (exact leave-one-out under a second seed correlated
with the first; "not measurable" when its interval reaches below 0.2); the estimator's own
removal model against the library (bookkeeping, ~1e-9 where it is exact); removal curves scored
held out (select on one half of the test split, score on the other, swap: heldout.py); and, with
flipped training labels, every ranking as a detector of them (noise.py).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from musicrec import families
from musicrec.influence.heldout import HALVES, OTHER, mean_of
from musicrec.influence.reference import library_loo
from musicrec.influence.retrain import Retrainer
from musicrec.influence.stats import ceiling, correlation, share_of_ceiling
from musicrec.outputs.common import Comparison
from musicrec.outputs.influence import Ceiling, ExactCheck, FixedStructure, ModelValidation, SelfCheck
from musicrec.progress import Progress

log = logging.getLogger("musicrec")

MAX_HALVINGS = 3
METRICS = ("logloss", "auc")
ALL_ROWS = "the whole test split"


def compare(estimate: np.ndarray, exact: np.ndarray, rng: np.random.Generator) -> dict:
    """How well an estimate reproduces exact values: Spearman and Pearson with n and bootstrap
    interval, errors, top-10% overlap."""
    estimate, exact = np.asarray(estimate, dtype=np.float64), np.asarray(exact, dtype=np.float64)
    err = np.abs(estimate - exact)
    scale = np.abs(exact).max() if len(exact) else 0.0
    k = max(1, math.ceil(0.1 * len(exact)))
    top_e = set(np.argsort(-np.abs(estimate))[:k])
    top_x = set(np.argsort(-np.abs(exact))[:k])
    return {
        "spearman": correlation(estimate, exact, rng, "spearman"),
        "pearson": correlation(estimate, exact, rng, "pearson"),
        "max_abs_err": float(err.max()) if len(err) else None,
        "max_rel_err": float(err.max() / scale) if scale > 0 else None,
        "top10_overlap": len(top_e & top_x) / k,
        "n": int(len(exact)),
    }


def exact_loo(est, retrainer: Retrainer, rows: np.ndarray, seed: int, progress: Progress | None = None) -> dict:
    """Exact leave-one-out of each row by the library: {"logloss", "auc", "self"} arrays over rows
    (whole test split): the family's closed library refit where it has one, else full retraining."""
    family = families.get(est.name)
    if family.reference is not None:
        out = library_loo(family.reference(est), rows, {"all": np.arange(len(est.y_test))}, progress)
        return {**out["all"], "self": out["self"]}
    runs = []
    for r in rows:
        runs.append(retrainer.without(seed, np.array([r]), own=True))
        if progress is not None:
            progress.update()
    return {"logloss": np.array([r["all"]["logloss"] for r in runs]),
            "auc": np.array([r["all"]["auc"] for r in runs]), "self": np.array([r["self"] for r in runs])}


def removal_curves(retrainer: Retrainer, seed: int, influence: dict[str, np.ndarray], fractions, rng,
                   progress: Progress | None = None) -> dict:
    """Retrain without the top fractions of most harmful / most helpful rows, selected by their
    influence on one half of the test split and scored on the other (both ways), and without
    random rows (scored on both halves).

    influence: {"A": ..., "B": ...} estimated log-loss influence on each half; most harmful = most
    negative (removing it lowers the loss).
    """
    n = len(influence["A"])
    random_order = rng.permutation(n)
    orders = {h: np.argsort(influence[h], kind="stable") for h in HALVES}
    out = {"rows": "harmful/helpful: selected on one half of the test split, scored on the other "
                   "(scored_on_A was selected on B); random: scored on each half",
           "harmful": {}, "helpful": {}, "random": {}}
    for f in fractions:
        k = max(1, int(round(f * n)))
        rand = retrainer.without(seed, random_order[:k])
        cells = {f"scored_on_{h}": rand[h] for h in HALVES}
        out["random"][f"{f:g}"] = {"rows": k, **cells, "mean": mean_of(cells)}
        if progress is not None:
            progress.update()
        for kind in ("harmful", "helpful"):
            cells = {}
            for h in HALVES:
                order = orders[OTHER[h]]
                chosen = order[:k] if kind == "harmful" else order[::-1][:k]
                cells[f"scored_on_{h}"] = retrainer.without(seed, chosen)[h]
                if progress is not None:
                    progress.update()
            out[kind][f"{f:g}"] = {"rows": k, **cells, "mean": mean_of(cells)}
    return out


def rescore(est, model, removed: np.ndarray) -> tuple[np.ndarray, object, np.ndarray]:
    """Test log-loss influence of the rows not yet removed, for `model` retrained without `removed`
    (a mask); removed rows get +inf. Also the estimator built on that model and the train-split
    position of each of its rows. An estimator that keeps removed rows (the forest, whose bootstrap
    draws are indexed by the full train split: removed rows have weight 0 in the refit trees) is
    rebuilt on every row; the others see only the kept rows."""
    cls = type(est)
    if est.keeps_removed_rows:
        fresh, rows = cls(model, est.train, est.test), np.arange(len(removed))
        scores = fresh.loo()["logloss"]
    else:
        rows = np.flatnonzero(~removed)
        fresh = cls(model, est.train.take(rows), est.test)
        scores = np.empty(len(removed))
        scores[rows] = fresh.loo()["logloss"]
    return np.where(removed, np.inf, scores), fresh, rows


def guarded_size(est, est_rows: np.ndarray, order: np.ndarray, k: int) -> int:
    """How many of the most harmful rows (`order`) one step removes: k, halved (at most
    MAX_HALVINGS times) while the estimator's own removal model for the whole set predicts a
    higher test log-loss. Only families whose removal model holds for sets (nb exact, lr one
    Newton step) are guarded; naive Bayes needs it, since removing the last few rows that keep a
    class variance away from zero ruins the model although each of them alone helps. Near the
    optimum every set may be predicted to raise the loss a little: the halvings are capped so
    that a step stays at least 1/2**MAX_HALVINGS of the step share."""
    local = np.searchsorted(est_rows, order)
    for _ in range(MAX_HALVINGS):
        change = est.group_logloss(local[:k])
        if change is None or change <= 0 or k == 1:
            break
        k = max(1, k // 2)
    return k


def iterative_removal(est, retrainer: Retrainer, seed: int, scores: np.ndarray, fractions, step: float,
                      until: float = 1.0, score_on: str = "all") -> dict:
    """Remove the most harmful rows `step` of the rows at a time (see guarded_size), re-estimating
    every row's influence (on est's test rows: the selection half) on the model retrained after
    each step, up to the fractions <= `until`, scored on the retrainer's part `score_on`: LOO
    estimates add up only over small sets, and a large one-shot removal overshoots where the most
    harmful rows pull the same way."""
    n = len(scores)
    quota = max(1, int(round(step * n)))
    removed = np.zeros(n, dtype=bool)
    current, est_rows, model, out, steps = est, np.arange(n), None, {}, 0
    chosen = sorted({float(x) for x in fractions if x <= until + 1e-12})
    total = max(1, int(round(chosen[-1] * n))) if chosen else 0
    with Progress(total, f"iterative removal {est.name}, scored on {score_on}", unit="rows") as progress:
        for f in chosen:
            goal = max(1, int(round(f * n)))
            while removed.sum() < goal:
                if model is not None:
                    scores, current, est_rows = rescore(est, model, removed)
                order = np.argsort(np.where(removed, np.inf, scores), kind="stable")
                k = guarded_size(current, est_rows, order, min(quota, goal - int(removed.sum())))
                removed[order[:k]] = True
                model, changes, _ = retrainer.fit_without(seed, removed)
                steps += 1
                progress.update(k)
            out[f"{f:g}"] = {"rows": int(removed.sum()), "steps": steps, **changes[score_on]}
    return out


@dataclass
class Validated:
    """validate_model's result: the model's figures for validation.json, the rows it checked, and
    the library's exact log-loss changes of those rows (for the estimate-vs-exact plot)."""

    report: ModelValidation
    sample_rows: np.ndarray
    exact_logloss: np.ndarray | None


def validate_model(est, loo: dict, retrainer: Retrainer, vcfg: dict, seeds: tuple[int, int], rng,
                   influence: dict[str, np.ndarray] | None = None, half_estimators=None,
                   loo_seconds: float = 0.0) -> Validated:
    """Every validation figure of one model; see the module docstring.

    influence: LOO log-loss influence on each test half (for the held-out removal curves);
    half_estimators: a callable half -> estimator on that half's test rows (iterative removal).
    """
    name = est.name
    family = families.get(name)
    t0 = time.perf_counter()
    n_rows = min(vcfg["rows"][name], len(loo["logloss"]))
    rows = np.sort(rng.choice(len(loo["logloss"]), n_rows, replace=False))
    report = ModelValidation(family=name, method=est.method, reference=family.library,
                             deterministic=family.deterministic, loo_seconds=loo_seconds)
    exact = None
    # no sampled rows (influence.validate.rows 0): only the removal curves, if any, are run
    retrain = n_rows > 0 and (family.deterministic or vcfg["full_retrain"])
    randomised = not family.deterministic and retrain
    fractions = vcfg["removal_fractions"] if influence is not None else []
    total = (n_rows * (2 if randomised else 1) if retrain else 0) + 5 * len(fractions)
    with Progress(total, f"validate {name}", unit="retrains") as progress:
        if retrain:
            exact = exact_loo(est, retrainer, rows, seeds[0], progress)
            report.exact = ExactCheck.from_dict({**compare(loo["logloss"][rows], exact["logloss"], rng),
                                                 "rows": ALL_ROWS, "auc": compare(loo["auc"][rows], exact["auc"], rng)})
            report.self_influence = SelfCheck(Comparison.from_dict(compare(loo["self"][rows], exact["self"], rng)))

        if n_rows:   # the estimator's own removal model (every test row re-scored) against the library
            own = est.exact(rows)
            report.removal_check = family.removal_check
            if family.deterministic:
                report.own_vs_library = Comparison.from_dict(compare(own["logloss"], exact["logloss"], rng))
            else:
                lib = est.refit(rows)  # the same removal written into the library's model
                report.fixed_structure = FixedStructure.from_dict({
                    "estimate_vs_refit": compare(loo["logloss"][rows], lib["logloss"], rng),
                    "exact_path_vs_refit_max_rel_err": compare(own["logloss"], lib["logloss"], rng)["max_rel_err"],
                    "self_vs_refit": compare(loo["self"][rows], est.refit_self(rows), rng),
                })
        if randomised:          # deterministic families have no ceiling: a refit is the same model
            again = exact_loo(est, retrainer, rows, seeds[1], progress)
            ceil = ceiling(exact["logloss"], again["logloss"], rng)
            report.noise_ceiling = Ceiling.from_dict({"rows": ALL_ROWS, "seeds": list(seeds), **ceil})
            report.share_of_ceiling = share_of_ceiling(report.exact.spearman.to_dict(), ceil)
        elif not family.deterministic:
            report.noise_ceiling = Ceiling(value=None, note="influence.validate.full_retrain is false")

        report.removal = (removal_curves(retrainer, seeds[0], influence, fractions, rng, progress)
                          if fractions else None)
    if fractions and vcfg["removal_step"] > 0 and half_estimators is not None:
        it = {}
        for h in HALVES:   # select on the other half (its estimator re-estimates), score on h
            sel = OTHER[h]
            it[f"scored_on_{h}"] = iterative_removal(
                half_estimators(sel), retrainer, seeds[0], influence[sel], fractions, vcfg["removal_step"],
                vcfg["removal_step_until"], score_on=h)
        it["mean"] = {f: {k: float(np.mean([it[f"scored_on_{h}"][f][k] for h in HALVES])) for k in METRICS}
                      for f in it["scored_on_A"]}
        report.removal["harmful_iterative"] = it
    report.seconds = round(time.perf_counter() - t0, 2)
    report.retrains = retrainer.fits
    sp = None if report.exact is None else report.exact.spearman
    log.info("influence: %s validated on %d rows in %.1fs (Spearman vs library: %s, 95%% CI %s)", name, n_rows,
             report.seconds, None if sp is None else round(sp.value or 0, 4), None if sp is None else sp.ci95)
    return Validated(report, rows, None if exact is None else exact["logloss"])
