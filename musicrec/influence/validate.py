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
from musicrec.influence.heldout import HALVES, OTHER
from musicrec.influence.removal import greedy_removal_curves, iterative_removal, removal_curves
from musicrec.influence.reference import LibraryLOO
from musicrec.influence.retrain import Retrainer
from musicrec.influence.stats import ceiling, correlation, share_of_ceiling
from musicrec.outputs.common import Comparison
from musicrec.outputs.influence import Ceiling, ExactCheck, FixedStructure, ModelValidation, SelfCheck
from musicrec.progress import Progress

log = logging.getLogger("musicrec")

MAX_HALVINGS = 3
MAX_BUDGET_ROWS = 500   # rows a validation budget checks at most
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


class ExactLOO:
    """Exact leave-one-out of rows, one at a time: the family's closed library refit where it has
    one, else full retraining with the saved model's arguments under `seed`."""

    def __init__(self, est, retrainer: Retrainer, seed: int):
        family = families.get(est.name)
        self.library = LibraryLOO(family.reference(est)) if family.reference is not None else None
        self.retrainer, self.seed, self.n_test, self.runs = retrainer, seed, len(est.y_test), []

    def add(self, row: int) -> None:
        if self.library is not None:
            self.library.add(row)
        else:
            self.runs.append(self.retrainer.without(self.seed, np.array([row]), own=True))

    def result(self) -> dict:
        """{"logloss", "auc", "self"} arrays over the rows added (whole test split)."""
        if self.library is not None:
            out = self.library.result({"all": np.arange(self.n_test)})
            return {**out["all"], "self": out["self"]}
        return {"logloss": np.array([r["all"]["logloss"] for r in self.runs]),
                "auc": np.array([r["all"]["auc"] for r in self.runs]),
                "self": np.array([r["self"] for r in self.runs])}


def exact_loo(est, retrainer: Retrainer, rows: np.ndarray, seed: int, progress: Progress | None = None) -> dict:
    """ExactLOO of every row of `rows`."""
    loo = ExactLOO(est, retrainer, seed)
    for r in rows:
        loo.add(int(r))
        if progress is not None:
            progress.update()
    return loo.result()


def budgeted(order: np.ndarray, work, fixed: int | None, seconds: float, min_rows: int,
             progress: Progress | None = None, share: float = 1.0) -> np.ndarray:
    """work(row) for rows of `order` in turn: `fixed` of them where the config fixes the number,
    else as many as the budget allows (`share` of `seconds`: what the rows cost after this loop
    comes out of the rest), never fewer than min_rows (nor more than MAX_BUDGET_ROWS). The rows
    done, in that order."""
    cap = min(len(order), fixed if fixed is not None else MAX_BUDGET_ROWS)
    t0, done = time.perf_counter(), 0
    while done < cap:
        if fixed is None and done >= min_rows and time.perf_counter() - t0 >= share * seconds:
            break
        work(int(order[done]))
        done += 1
        if progress is not None:
            progress.update()
    return order[:done]


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
    n = len(loo["logloss"])
    fixed = vcfg["rows"].get(name)
    report = ModelValidation(family=name, method=est.method, reference=family.library,
                             deterministic=family.deterministic, loo_seconds=loo_seconds)
    exact = None
    # the library's exact LOO (closed refit; full retraining of randomised families when asked for),
    # else the fixed-structure refit in the library's own model, row by row under the time budget
    retrain = family.deterministic or vcfg["full_retrain"]
    randomised = not family.deterministic and retrain
    fractions = vcfg["removal_fractions"] if influence is not None else []
    order = rng.permutation(n)
    checker = ExactLOO(est, retrainer, seeds[0]) if retrain else None
    work = checker.add if retrain else est._refit
    budget = vcfg["seconds"] if (fixed is None or fixed > 0) else 0.0
    with Progress(fixed if fixed is not None else 0, f"validate {name}", unit="rows") as progress:
        # a fixed-structure check re-scores every checked row twice more (est.exact, refit_self)
        rows = budgeted(order, work, fixed, budget, vcfg["min_rows"], progress, 1.0 if retrain else 0.4)
    n_rows = len(rows)
    with Progress((n_rows if randomised else 0) + 5 * len(fractions), f"validate {name}",
                  unit="retrains") as progress:
        if retrain and n_rows:
            exact = checker.result()
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
        if randomised and n_rows:   # deterministic families have no ceiling: a refit is the same model
            again = exact_loo(est, retrainer, rows, seeds[1], progress)
            ceil = ceiling(exact["logloss"], again["logloss"], rng)
            report.noise_ceiling = Ceiling.from_dict({"rows": ALL_ROWS, "seeds": list(seeds), **ceil})
            report.share_of_ceiling = share_of_ceiling(report.exact.spearman.to_dict(), ceil)
        elif not family.deterministic and not randomised:
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
    greedy = [f for f in fractions if f <= vcfg["removal_step_until"] + 1e-12]
    if greedy and vcfg["removal_set_block"] > 0 and half_estimators is not None and est.has_set_predictor:
        out = greedy_removal_curves(half_estimators, retrainer, seeds[0], influence, greedy, vcfg["removal_set_block"],
                                    rng, vcfg["removal_random_repeats"])
        report.removal.update(harmful_set=out["harmful_set"], random_repeats=out["random_repeats"],
                              rows_set=out["rows"])
    report.seconds = round(time.perf_counter() - t0, 2)
    report.retrains = retrainer.fits
    sp = None if report.exact is None else report.exact.spearman
    log.info("influence: %s validated on %d rows in %.1fs (Spearman vs library: %s, 95%% CI %s)", name, n_rows,
             report.seconds, None if sp is None else round(sp.value or 0, 4), None if sp is None else sp.ci95)
    return Validated(report, rows, None if exact is None else exact["logloss"])
