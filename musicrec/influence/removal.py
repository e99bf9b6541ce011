"""Held-out removal of training rows: select on one half of the test split, retrain, score on the other.

One-shot curves remove the top fractions of rows by their leave-one-out influence (most harmful,
most helpful) beside random rows; iterative removal re-estimates influence on the model retrained
after each step; greedy set removal chooses blocks of the most harmful rows one at a time by the
family's set predictor (the predicted change of the selection half when the chosen rows and the
block are removed together), so no retraining is needed until the selection is scored. Every
scored change carries its interval over the scored half's users.
"""
from __future__ import annotations

import numpy as np

from musicrec.influence.heldout import HALVES, OTHER, mean_of
from musicrec.engine import LocalEngine
from musicrec.influence.retrain import Retrainer, on_cluster, retrained
from musicrec.progress import Progress
from musicrec.stats import Z95

MAX_HALVINGS = 3
METRICS = ("logloss", "auc")


def removal_curves(retrainer: Retrainer, seed: int, influence: dict[str, np.ndarray], fractions, rng,
                   progress: Progress | None = None, eng=None) -> dict:
    """Retrain without the top fractions of most harmful / most helpful rows, selected by their
    influence on one half of the test split and scored on the other (both ways), and without
    random rows (scored on both halves). On a cluster engine the retrains are its tasks.

    influence: {"A": ..., "B": ...} estimated log-loss influence on each half; most harmful = most
    negative (removing it lowers the loss).
    """
    n = len(influence["A"])
    random_order = rng.permutation(n)
    orders = {h: np.argsort(influence[h], kind="stable") for h in HALVES}
    out = {"rows": "harmful/helpful: selected on one half of the test split, scored on the other "
                   "(scored_on_A was selected on B); random: scored on each half",
           "harmful": {}, "helpful": {}, "random": {}}
    cells = []   # (kind, fraction, scored half or None, rows removed), in the order they were always retrained
    for f in fractions:
        k = max(1, int(round(f * n)))
        cells.append(("random", f, None, random_order[:k]))
        for kind in ("harmful", "helpful"):
            for h in HALVES:
                order = orders[OTHER[h]]
                cells.append((kind, f, h, order[:k] if kind == "harmful" else order[::-1][:k]))
    changes = retrained(eng, retrainer, [(seed, rows, "changes") for *_, rows in cells], progress)
    for (kind, f, h, rows), change in zip(cells, changes):
        got = out[kind].setdefault(f"{f:g}", {"rows": len(rows)})
        got.update({f"scored_on_{s}": change[s] for s in HALVES} if h is None else {f"scored_on_{h}": change[h]})
        if len(got) == 1 + len(HALVES):
            got["mean"] = mean_of(got)
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


def greedy_set_selection(est, influence: np.ndarray, k: int, block: int, pool: int) -> np.ndarray:
    """k training rows chosen in blocks of `block`: of the `pool` most harmful rows by `influence`
    (LOO on the selection half), cut into blocks in that order, the block whose removal together
    with the rows chosen so far the set predictor (on est's test rows: the selection half) expects
    to lower the loss most is taken, until k rows are chosen."""
    order = np.argsort(influence, kind="stable")[:max(pool, k)]
    blocks = [order[s:s + block] for s in range(0, len(order), block)]
    chosen = np.zeros(0, dtype=np.int64)
    while len(chosen) < k and blocks:
        trial = [np.concatenate([chosen, b]) for b in blocks]
        change = [est.group_logloss(t) for t in trial]
        best = int(np.argmin(change))
        chosen = np.concatenate([chosen, blocks.pop(best)])[:k]
    return chosen


def _greedy_task(work: tuple, job: tuple) -> tuple[dict, int]:
    """A task: greedy_set_selection on one half (its estimator built where the task runs), the model
    retrained without the rows chosen and scored on the other half; with the fits it made."""
    retrainer, half_estimators = work
    h, seed, scores, k, block = job
    chosen = greedy_set_selection(half_estimators(OTHER[h]), scores, k, block, 2 * k)
    before = retrainer.fits
    return retrainer.without(seed, chosen)[h], retrainer.fits - before


def greedy_removal_curves(half_estimators, retrainer: Retrainer, seed: int, influence: dict[str, np.ndarray],
                          fractions, block_share: float, rng, repeats: int = 1, eng=None) -> dict:
    """Rows chosen by greedy_set_selection on one half, the model retrained without them and scored
    on the other (both ways), beside `repeats` random draws of as many rows scored on both halves.
    The random draws are made here; on a cluster engine every choice and retrain is a task."""
    n = len(influence["A"])
    block = max(1, int(round(block_share * n)))
    out = {"rows": "harmful_set: chosen on one test half by the set predictor, scored on the other (scored_on_A "
                   f"was chosen on B); random_repeats: {repeats} random draws, each scored on both halves",
           "harmful_set": {}, "random_repeats": {}}
    sizes = {f: max(1, int(round(f * n))) for f in fractions}
    draws = [(f, rng.choice(n, sizes[f], replace=False)) for f in fractions for _ in range(repeats)]
    jobs = [(h, seed, influence[OTHER[h]], sizes[f], block) for f in fractions for h in HALVES]
    if on_cluster(eng):
        retrainer.base_model(seed)
    eng, work = eng or LocalEngine(), (retrainer, half_estimators)
    with Progress(len(fractions) * (2 + repeats), f"greedy set removal {retrainer.name}", unit="retrains") as progress:
        with eng.keep(work):
            chosen = eng.map(_greedy_task, jobs, shared=work, progress=progress,
                             desc=f"greedy set removal {retrainer.name}", unit="retrains")
        if on_cluster(eng):
            retrainer.fits += sum(fits for _, fits in chosen)
        random = retrained(eng, retrainer, [(seed, rows, "changes") for _, rows in draws], progress)
    for i, f in enumerate(fractions):
        cells = {f"scored_on_{h}": chosen[2 * i + j][0] for j, h in enumerate(HALVES)}
        out["harmful_set"][f"{f:g}"] = {"rows": sizes[f], **cells, "mean": mean_of(cells)}
        got = random[i * repeats:(i + 1) * repeats]
        cells = {f"scored_on_{h}": {"logloss": float(np.mean([d[h]["logloss"] for d in got])),
                                    "auc": float(np.mean([d[h]["auc"] for d in got])),
                                    "logloss_ci95": _pooled_interval([d[h] for d in got])} for h in HALVES}
        out["random_repeats"][f"{f:g}"] = {"rows": sizes[f], "repeats": repeats, **cells, "mean": mean_of(cells)}
    return out


def _iterative_task(work: tuple, job: tuple) -> tuple[dict, int]:
    """A task: iterative_removal scored on one half, selected on the other (its estimator built where
    the task runs); with the fits it made."""
    retrainer, half_estimators = work
    h, seed, scores, fractions, step, until = job
    before = retrainer.fits
    out = iterative_removal(half_estimators(OTHER[h]), retrainer, seed, scores, fractions, step, until, score_on=h)
    return out, retrainer.fits - before


def iterative_halves(half_estimators, retrainer: Retrainer, seed: int, influence: dict[str, np.ndarray], fractions,
                     step: float, until: float, eng=None) -> dict:
    """iterative_removal scored on each half and selected on the other, and the mean of the two; on a
    cluster engine one task per half (each step needs the step before)."""
    jobs = [(h, seed, influence[OTHER[h]], fractions, step, until) for h in HALVES]
    if on_cluster(eng):
        retrainer.base_model(seed)
    eng, work = eng or LocalEngine(), (retrainer, half_estimators)
    with eng.keep(work):
        done = eng.map(_iterative_task, jobs, shared=work, desc=f"iterative removal {retrainer.name}", unit="halves")
    if on_cluster(eng):
        retrainer.fits += sum(fits for _, fits in done)
    it = {f"scored_on_{h}": result for h, (result, _) in zip(HALVES, done)}
    it["mean"] = {f: {k: float(np.mean([it[f"scored_on_{h}"][f][k] for h in HALVES])) for k in METRICS}
                  for f in it["scored_on_A"]}
    return it


def _pooled_interval(cells: list[dict]) -> list[float] | None:
    """The interval of the mean change over random draws: the draws' intervals (over the scored
    half's users) and their spread, combined as independent errors of the mean."""
    values = np.array([c["logloss"] for c in cells])
    halfwidths = np.array([(c["logloss_ci95"][1] - c["logloss_ci95"][0]) / 2 for c in cells if c.get("logloss_ci95")])
    if not len(halfwidths):
        return None
    within = np.sqrt((halfwidths ** 2).mean() / len(values))          # sampling of users, averaged over draws
    between = Z95 * values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    half = float(np.hypot(within, between))
    return [float(values.mean() - half), float(values.mean() + half)]
