"""Proof of the estimates against exact retraining on a random subsample of training rows.

For each model: the estimate against retraining without each sampled row; for the randomised
families (rf, lgbm, als) the noise ceiling, i.e. exact leave-one-out under a second seed
correlated with the first, and the estimate's Spearman as a share of it; the estimator's own
removal model evaluated exactly against the library refit (bookkeeping, ~1e-9); removal curves
(retrain without the most harmful / most helpful / random rows); and, with label noise, how many
flipped labels sit among the rows estimated most harmful, and among the rows with the largest
self-influence and leave-one-out own loss. The self-influence estimate is checked against the
retrained model's loss on the removed row, like the test metrics.
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np
from scipy.stats import pearsonr, spearmanr

from musicrec.influence.retrain import Retrainer

log = logging.getLogger("musicrec")

DETERMINISTIC = ("nb", "lr")
MAX_HALVINGS = 3
METRICS = ("logloss", "auc")


def _corr(fn, a, b) -> float | None:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(fn(a, b)[0])


def compare(estimate: np.ndarray, exact: np.ndarray) -> dict:
    """How well an estimate reproduces exact values: correlations, errors, top-10% overlap."""
    estimate, exact = np.asarray(estimate, dtype=np.float64), np.asarray(exact, dtype=np.float64)
    err = np.abs(estimate - exact)
    scale = np.abs(exact).max() if len(exact) else 0.0
    k = max(1, math.ceil(0.1 * len(exact)))
    top_e = set(np.argsort(-np.abs(estimate))[:k])
    top_x = set(np.argsort(-np.abs(exact))[:k])
    return {
        "pearson": _corr(pearsonr, estimate, exact),
        "spearman": _corr(spearmanr, estimate, exact),
        "max_abs_err": float(err.max()) if len(err) else None,
        "max_rel_err": float(err.max() / scale) if scale > 0 else None,
        "top10_overlap": len(top_e & top_x) / k,
        "n": int(len(exact)),
    }


def exact_loo(est, retrainer: Retrainer, rows: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Metric change (and the row's own log-loss change, "self") when retraining without each row;
    nb and lr retrain in closed form/Newton."""
    if est.name in DETERMINISTIC:
        return {**est.refit(rows), "self": est.refit_self(rows)}
    base = retrainer.logits(seed)
    runs = [retrainer.without(seed, np.array([r]), base, own=True) for r in rows]
    return {k: np.array([r[k] for r in runs]) for k in (*METRICS, "self")}


def removal_curves(retrainer: Retrainer, seed: int, scores: np.ndarray, fractions, rng) -> dict:
    """Retrain without the top fractions of most harmful / most helpful / random rows.

    scores: estimated log-loss influence; most harmful = most negative (removing lowers loss).
    """
    base = retrainer.logits(seed)
    order = np.argsort(scores, kind="stable")
    random_order = rng.permutation(len(scores))
    out = {"harmful": {}, "helpful": {}, "random": {}}
    for f in fractions:
        k = max(1, int(round(f * len(scores))))
        for kind, rows in (("harmful", order[:k]), ("helpful", order[::-1][:k]), ("random", random_order[:k])):
            out[kind][f"{f:g}"] = {"rows": k, **retrainer.without(seed, rows, base)}
    return out


def rescore(est, model, removed: np.ndarray) -> tuple[np.ndarray, object, np.ndarray]:
    """Test log-loss influence of the rows not yet removed, for `model` retrained without `removed`
    (a mask); removed rows get +inf. Also the estimator built on that model and the train-split
    position of each of its rows. The forest's estimator keeps every row, because its bootstrap
    draws are indexed by the full train split (removed rows have weight 0 in the refit trees); the
    other families' estimators see only the kept rows."""
    cls = type(est)
    if est.name == "rf":
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
                      until: float = 1.0) -> dict:
    """Remove the most harmful rows `step` of the rows at a time (see guarded_size), re-estimating
    every row's influence on the model retrained after each step, up to the fractions <= `until`:
    LOO estimates add up only over small sets, and a large one-shot removal overshoots where the
    most harmful rows pull the same way."""
    base = retrainer.logits(seed)
    n = len(scores)
    quota = max(1, int(round(step * n)))
    removed = np.zeros(n, dtype=bool)
    current, est_rows, model, out, steps = est, np.arange(n), None, {}, 0
    for f in sorted({float(x) for x in fractions if x <= until + 1e-12}):
        goal = max(1, int(round(f * n)))
        while removed.sum() < goal:
            if model is not None:
                scores, current, est_rows = rescore(est, model, removed)
            order = np.argsort(np.where(removed, np.inf, scores), kind="stable")
            k = guarded_size(current, est_rows, order, min(quota, goal - int(removed.sum())))
            removed[order[:k]] = True
            model, changes = retrainer.fit_without(seed, removed, base)
            steps += 1
        out[f"{f:g}"] = {"rows": int(removed.sum()), "steps": steps, **changes}
    return out


def noisy_label(scores: np.ndarray, flipped: np.ndarray, tops=(0.05, 0.10)) -> dict:
    """Share of flipped labels among the rows with the lowest scores (for test log-loss influence:
    the most harmful), against the overall share."""
    order = np.argsort(scores, kind="stable")
    out = {"random_share": float(flipped.mean()), "flipped": int(flipped.sum())}
    for t in tops:
        k = max(1, int(round(t * len(scores))))
        out[f"top{int(round(t * 100))}_share"] = float(flipped[order[:k]].mean())
    out["top10_lift"] = out["top10_share"] / out["random_share"] if out["random_share"] > 0 else None
    return out


def validate_model(est, loo: dict, retrainer: Retrainer, vcfg: dict, seeds: tuple[int, int], rng,
                   flipped: np.ndarray | None) -> dict:
    """Every validation figure of one model; see the module docstring."""
    name = est.name
    t0 = time.perf_counter()
    n_rows = min(vcfg["rows"][name], len(loo["logloss"]))
    rows = np.sort(rng.choice(len(loo["logloss"]), n_rows, replace=False))
    report: dict = {"method": est.method, "sample_rows": rows.tolist()}

    retrain = name in DETERMINISTIC or vcfg["full_retrain"]
    if retrain:
        exact = exact_loo(est, retrainer, rows, seeds[0])
        report["exact"] = compare(loo["logloss"][rows], exact["logloss"])
        report["_exact_logloss"] = exact["logloss"]  # for the scatter plot; popped by the stage
        report["exact"]["auc"] = compare(loo["auc"][rows], exact["auc"])
        report["self"] = {"exact": compare(loo["self"][rows], exact["self"])}
    else:
        report["exact"] = None

    own = est.exact(rows)      # the estimator's own removal model, every test row re-scored
    if name in DETERMINISTIC:
        report["closed_form" if name == "nb" else "newton_step"] = compare(own["logloss"], exact["logloss"])
    else:
        lib = est.refit(rows)  # the same removal written into the library's model
        report["fixed_structure"] = {
            "estimate_vs_refit": compare(loo["logloss"][rows], lib["logloss"]),
            "exact_path_vs_refit_max_rel_err": compare(own["logloss"], lib["logloss"])["max_rel_err"],
            "self_vs_refit": compare(loo["self"][rows], est.refit_self(rows)),
        }

    if name in DETERMINISTIC:
        report["noise_ceiling"] = {"spearman": 1.0, "note": "deterministic fit: retraining twice gives the same model"}
    elif not retrain:
        report["noise_ceiling"] = {"spearman": None, "note": "influence.validate.full_retrain is false"}
    else:
        again = exact_loo(est, retrainer, rows, seeds[1])
        ceiling = _corr(spearmanr, exact["logloss"], again["logloss"])
        report["noise_ceiling"] = {"spearman": ceiling, "pearson": _corr(pearsonr, exact["logloss"],
                                                                          again["logloss"])}
        sp = report["exact"]["spearman"]
        report["share_of_ceiling"] = (sp / ceiling) if (sp is not None and ceiling and ceiling > 0) else None

    fractions = vcfg["removal_fractions"]
    report["removal"] = removal_curves(retrainer, seeds[0], loo["logloss"], fractions, rng) if fractions else None
    if fractions and vcfg["removal_step"] > 0:
        report["removal"]["harmful_iterative"] = iterative_removal(
            est, retrainer, seeds[0], loo["logloss"], fractions, vcfg["removal_step"], vcfg["removal_step_until"])
    if flipped is None or not flipped.any():
        report["noisy_label"] = None
    else:  # ranked by test log-loss influence, by self-influence and by the leave-one-out own loss
        report["noisy_label"] = {**noisy_label(loo["logloss"], flipped),
                                 "self_influence": noisy_label(-loo["self"], flipped),
                                 "own_loss": noisy_label(-loo["own_loss"], flipped)}
    report["seconds"] = round(time.perf_counter() - t0, 2)
    report["retrains"] = retrainer.fits
    log.info("influence: %s validated on %d rows in %.1fs (Spearman vs exact retraining: %s)", name, n_rows,
             report["seconds"], None if report["exact"] is None else report["exact"]["spearman"])
    return report
