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

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from musicrec import families
from musicrec.influence.removal import greedy_removal_curves, iterative_halves, removal_curves
from musicrec.influence.reference import LibraryLOO
from musicrec.influence.retrain import Retrainer, kept, on_cluster, retrain_task
from musicrec.influence.stats import ceiling, correlation, share_of_ceiling
from musicrec.outputs.common import Comparison
from musicrec.outputs.influence import Ceiling, ExactCheck, FixedStructure, ModelValidation, SelfCheck
from musicrec.progress import Progress

log = logging.getLogger("musicrec")

MAX_HALVINGS = 3
MAX_BUDGET_ROWS = 500   # rows a validation budget checks at most
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

    def task(self) -> "RowTask":
        """add() as an engine task: the library's refit, or a retrain (the all-rows fit made here
        first, once, so that a task fits only its own model)."""
        if self.library is not None:
            return RowTask(_library_row, self.library, int, self._record_library)
        self.retrainer.base_model(self.seed)
        return RowTask(retrain_task, self.retrainer, lambda row: (self.seed, np.array([row]), "own"), self._record_run)

    def _record_library(self, row: int, change: tuple) -> None:
        self.library.rows.append(int(row))
        self.library.dF.append(change[0])
        self.library.d_own.append(change[1])

    def _record_run(self, row: int, run: dict) -> None:
        self.runs.append(run)
        self.retrainer.fits += 1   # made by a task on a worker

    def result(self) -> dict:
        """{"logloss", "auc", "self"} arrays over the rows added (whole test split)."""
        if self.library is not None:
            out = self.library.result({"all": np.arange(self.n_test)})
            return {**out["all"], "self": out["self"]}
        return {"logloss": np.array([r["all"]["logloss"] for r in self.runs]),
                "auc": np.array([r["all"]["auc"] for r in self.runs]),
                "self": np.array([r["self"] for r in self.runs])}


@dataclass
class RowTask:
    """One row's check as an engine task: fn(shared, item(row)) runs on a worker, record(row, result) here."""

    fn: Callable
    shared: object
    item: Callable
    record: Callable


def _library_row(library: LibraryLOO, row: int) -> tuple:
    """A task: LibraryLOO.add's refit without the row (on a copy), the two changes add() records."""
    probe = copy.copy(library)
    probe.rows, probe.dF, probe.d_own = [], [], []
    probe.add(row)
    return probe.dF[0], probe.d_own[0]


def _refit_row(est, row: int) -> tuple:
    """A task: the estimator's fixed-structure refit without the row (its test logits and own logit)."""
    return est.refit_logits(row)


def refit_task(est) -> RowTask:
    """est._refit as an engine task, each result kept in the estimator's cache as _refit keeps it."""
    def record(row: int, got: tuple) -> None:
        est.__dict__.setdefault("_refits", {})[row] = got

    return RowTask(_refit_row, est, int, record)


def exact_loo(est, retrainer: Retrainer, rows: np.ndarray, seed: int, progress: Progress | None = None,
              eng=None) -> dict:
    """ExactLOO of every row of `rows` (each a task of a cluster engine)."""
    loo = ExactLOO(est, retrainer, seed)
    if on_cluster(eng):
        budgeted_tasks(eng, np.asarray(rows), loo.task(), len(rows), 0.0, 0, progress)
        return loo.result()
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


def check_rows(eng, est, checker: ExactLOO | None, order: np.ndarray, fixed: int | None, seconds: float,
               min_rows: int, progress: Progress | None, share: float) -> np.ndarray:
    """The rows checked within the budget (budgeted): the checker's exact refit or retrain of each,
    else the estimator's fixed-structure refit (est._refit); on a cluster engine each row a task."""
    if not on_cluster(eng):
        return budgeted(order, checker.add if checker else est._refit, fixed, seconds, min_rows, progress, share)
    if fixed == 0:
        return order[:0]
    task = checker.task() if checker else refit_task(est)
    return budgeted_tasks(eng, order, task, fixed, seconds, min_rows, progress, share)


def budgeted_tasks(eng, order: np.ndarray, task: RowTask, fixed: int | None, seconds: float, min_rows: int,
                   progress: Progress | None = None, share: float = 1.0) -> np.ndarray:
    """budgeted() with each row a task of a cluster engine: as many rows run at once as the cluster
    has threads, the next one started while the budget lasts (all at once when `fixed`), so the rows
    done are again a prefix of `order`; their results are recorded here in that order."""
    cap = min(len(order), fixed if fixed is not None else MAX_BUDGET_ROWS)
    t0 = time.perf_counter()

    def rows():
        for done in range(cap):
            if fixed is None and done >= min_rows and time.perf_counter() - t0 >= share * seconds:
                return
            yield task.item(int(order[done]))

    with eng.keep(task.shared):
        got = dict(eng.map_unordered(task.fn, rows(), shared=task.shared, desc="validate rows", unit="rows",
                                     progress=progress, window=None if fixed is not None else eng.slots))
    for i in range(len(got)):
        task.record(int(order[i]), got[i])
    return order[:len(got)]


@dataclass
class Validated:
    """validate_model's result: the model's figures for validation.json, the rows it checked, and
    the library's exact log-loss changes of those rows (for the estimate-vs-exact plot)."""

    report: ModelValidation
    sample_rows: np.ndarray
    exact_logloss: np.ndarray | None


def validate_model(est, loo: dict, retrainer: Retrainer, vcfg: dict, seeds: tuple[int, int], rng,
                   influence: dict[str, np.ndarray] | None = None, half_estimators=None,
                   loo_seconds: float = 0.0, eng=None) -> Validated:
    """Every validation figure of one model; see the module docstring.

    influence: LOO log-loss influence on each test half (for the held-out removal curves);
    half_estimators: a callable half -> estimator on that half's test rows (iterative removal);
    eng: a cluster engine (musicrec.engine) runs the refits and retrains as its tasks.
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
    budget = vcfg["seconds"] if (fixed is None or fixed > 0) else 0.0
    with Progress(fixed if fixed is not None else 0, f"validate {name}", unit="rows") as progress:
        # a fixed-structure check re-scores every checked row twice more (est.exact, refit_self)
        rows = check_rows(eng, est, checker, order, fixed, budget, vcfg["min_rows"], progress,
                          1.0 if retrain else 0.4)
    n_rows = len(rows)
    retrained_under = [seeds[0]] * bool(fractions) + [seeds[1]] * bool(randomised and n_rows)
    with Progress((n_rows if randomised else 0) + 5 * len(fractions), f"validate {name}",
                  unit="retrains") as progress, kept(eng, retrainer, retrained_under):
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
            again = exact_loo(est, retrainer, rows, seeds[1], progress, eng)
            ceil = ceiling(exact["logloss"], again["logloss"], rng)
            report.noise_ceiling = Ceiling.from_dict({"rows": ALL_ROWS, "seeds": list(seeds), **ceil})
            report.share_of_ceiling = share_of_ceiling(report.exact.spearman.to_dict(), ceil)
        elif not family.deterministic and not randomised:
            report.noise_ceiling = Ceiling(value=None, note="influence.validate.full_retrain is false")

        report.removal = (removal_curves(retrainer, seeds[0], influence, fractions, rng, progress, eng)
                          if fractions else None)
    if fractions and vcfg["removal_step"] > 0 and half_estimators is not None:
        # select on one half (its estimator re-estimates after every step), score on the other
        report.removal["harmful_iterative"] = iterative_halves(half_estimators, retrainer, seeds[0], influence, fractions,
                                                               vcfg["removal_step"], vcfg["removal_step_until"], eng)
    greedy = [f for f in fractions if f <= vcfg["removal_step_until"] + 1e-12]
    if greedy and vcfg["removal_set_block"] > 0 and half_estimators is not None and est.has_set_predictor:
        out = greedy_removal_curves(half_estimators, retrainer, seeds[0], influence, greedy, vcfg["removal_set_block"],
                                    rng, vcfg["removal_random_repeats"], eng)
        report.removal.update(harmful_set=out["harmful_set"], random_repeats=out["random_repeats"],
                              rows_set=out["rows"])
    report.seconds = round(time.perf_counter() - t0, 2)
    report.retrains = retrainer.fits
    sp = None if report.exact is None else report.exact.spearman
    log.info("influence: %s validated on %d rows in %.1fs (Spearman vs library: %s, 95%% CI %s)", name, n_rows,
             report.seconds, None if sp is None else round(sp.value or 0, 4), None if sp is None else sp.ci95)
    return Validated(report, rows, None if exact is None else exact["logloss"])
