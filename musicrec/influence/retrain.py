"""Retraining a model family without some rows: the ground truth every estimate is checked against.

The family is rebuilt from the arguments saved with the analysed model (`Model.init_args()`),
never from the current `train` config, so a config edit after stage 04 cannot make stage 06
retrain a different model from the one it explains. A family may change settings on purpose
(Family.retrain_arguments / retrain_model / retrain_valid): LightGBM keeps the number of trees of
the analysed model (no early stopping when retraining), and logistic regression is retrained to
the exact optimum (newton-cholesky, tol 1e-10), not lbfgs's tolerance.
Rows are removed by giving them sample weight 0, which for every family here is the same as
deleting them while keeping the random draws coupled (the forest's bootstrap draws, LightGBM's
feature sampling and bins, ALS's initialisation all stay as they were); naive Bayes deletes them
(GaussianNB's variance floor counts zero-weight rows) and is refitted on the float64 design. The design transform
(imputation, scaling) is fitted on all rows and held fixed, like the stage-03 features.

Test metrics are reported per named part of the test split (`parts`: row indices; "all" is
always there), so that held-out experiments can select rows on one part and score on another.

On a cluster (musicrec.engine) retrains are tasks (`retrains`, `retrain_task`): the retrainer goes to
each worker once, with the all-rows fits made here first, so a task fits only its own model, on the
worker's threads, and returns metric changes or test logits.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import numpy as np

from musicrec import families
from musicrec.engine import LocalEngine, task_threads
from musicrec.influence.losses import auc, loss_change
from musicrec.models.base import FeatureSet, Model
from musicrec.stats import clustered_mean_interval


def saved_arguments(model: Model, seed: int | None = None) -> dict:
    """The analysed model's constructor arguments, with its family's retraining settings."""
    return families.get(model.name).retrain_arguments(model, seed)


class PartScorer:
    """Changes of each test part's mean log-loss and AUROC from fixed base logits to new ones, with
    the log-loss change's 95% interval over the part's users where their codes are given. The base
    AUROC of each part is computed once: a scorer serves every group compared with one base."""

    def __init__(self, y: np.ndarray, base: np.ndarray, parts: dict[str, np.ndarray], users: np.ndarray | None = None):
        self.y, self.base, self.parts, self.users = y, base, parts, users
        self.base_auc = {p: auc(y[j], base[j]) for p, j in parts.items()}

    def __call__(self, new: np.ndarray) -> dict:
        d = loss_change(self.y, self.base, new - self.base)
        out = {}
        for p, j in self.parts.items():
            out[p] = {"logloss": float(d[j].mean()), "auc": auc(self.y[j], new[j]) - self.base_auc[p]}
            if self.users is not None:
                out[p]["logloss_ci95"] = clustered_mean_interval(d[j], self.users[j])
        return out


class Retrainer:
    """Retrains one analysed model's family many times: the training inputs are prepared once
    (design matrix, LightGBM bins), a family whose retrain_warm says so (logistic regression)
    warm-starts from the all-rows fit, and the all-rows test logits are kept per seed."""

    def __init__(self, model: Model, train: FeatureSet, valid: FeatureSet, test: FeatureSet,
                 parts: dict[str, np.ndarray] | None = None, users: np.ndarray | None = None, prepared=None):
        self.model, self.name = model, model.name
        self.family = families.get(model.name)
        self.train, self.test = train, test
        self.valid = self.family.retrain_valid(valid)
        self.y_test = test.y.astype(np.float64)
        self.parts = {"all": np.arange(len(test)), **(parts or {})}
        self.users = users          # test users as codes 0..: the changes' intervals over users
        self.fits = 0
        self._prepared = prepared     # the family's training inputs, when the caller already has them
        self._given = prepared is not None
        self._base: dict[int, tuple] = {}
        self._scorers: dict[int, PartScorer] = {}

    def __getstate__(self) -> dict:
        """What a worker gets: the training inputs the caller handed over (the estimator's design)
        travel with it; inputs prepared here (a LightGBM Dataset, which cannot be pickled) are
        prepared again by each worker, once."""
        state = dict(self.__dict__)
        state["_scorers"] = {}     # rebuilt where used (a few AUCs), not shipped
        if not self._given:
            state["_prepared"] = None
        return state

    @property
    def seed(self) -> int:
        """The analysed model's own seed."""
        return int(self.model.random_state)

    def fresh(self, seed: int) -> Model:
        """An unfitted model with the analysed model's saved arguments and this seed; on a worker
        with the worker's threads (the client's count would oversubscribe it)."""
        model = self.family.retrain_model(self.model, seed)
        threads = getattr(model, "n_jobs", None)
        if threads and task_threads(threads) != threads:
            model.set_params(n_jobs=task_threads(threads))
        return model

    def _fit(self, seed: int, weights: np.ndarray, init=None):
        model = self.fresh(seed)
        if self._prepared is None:
            self._prepared = model.prepare(self.train, self.valid)
        self.fits += 1
        return model.fit_prepared(self._prepared, weights, init=init)

    def _all_rows(self, seed: int) -> tuple:
        """The family trained on all rows with this seed, and its test logits (fitted once; the
        analysed model itself where retraining reproduces it)."""
        if seed not in self._base:
            if seed == self.seed and self.family.retrain_reproduces:
                model = self.model
            else:
                model = self._fit(seed, np.ones(len(self.train)))
            self._base[seed] = (model, model.predict_logit(self.test))
        return self._base[seed]

    def logits(self, seed: int) -> np.ndarray:
        """Test logits of the family trained on all rows with this seed."""
        return self._all_rows(seed)[1]

    def base_model(self, seed: int):
        """The family trained on all rows with this seed."""
        return self._all_rows(seed)[0]

    def model_without(self, seed: int, removed: np.ndarray):
        """The model retrained without `removed` (indices or a mask)."""
        w = np.ones(len(self.train))
        w[removed] = 0.0
        return self._fit(seed, w, init=self.base_model(seed) if self.family.retrain_warm else None)

    def fit_without(self, seed: int, removed: np.ndarray) -> tuple:
        """The model retrained without `removed` (indices or a mask), its test metric changes per
        part, and its test logits."""
        model = self.model_without(seed, removed)
        new = model.predict_logit(self.test)
        if seed not in self._scorers:
            self._scorers[seed] = PartScorer(self.y_test, self.logits(seed), self.parts, self.users)
        return model, self._scorers[seed](new), new

    def without(self, seed: int, removed: np.ndarray, own: bool = False) -> dict:
        """{part: {"logloss", "auc"}} changes when `removed` rows are left out; own=True adds
        "self", the mean change of the removed rows' own log-loss."""
        model, out, _ = self.fit_without(seed, removed)
        if own:
            rows = self.train.take(np.asarray(removed))
            f = self.base_model(seed).predict_logit(rows)
            out["self"] = float(loss_change(rows.y, f, model.predict_logit(rows) - f).mean())
        return out


def retrain_task(retrainer: Retrainer, job: tuple):
    """One retrain as an engine task. job = (seed, removed rows, what): "changes" gives without()'s
    changes per part, "own" adds the removed rows' own change ("self"), "logits" gives the retrained
    test logits (the caller scores them). Numbers only: a model never travels back."""
    seed, removed, what = job
    if what == "logits":
        return retrainer.fit_without(seed, removed)[2]
    return retrainer.without(seed, removed, own=what == "own")


def on_cluster(eng) -> bool:
    return eng is not None and eng.kind != "local"


def retrains(eng, retrainer: Retrainer, jobs: Iterable[tuple], progress=None) -> Iterator[tuple[int, Any]]:
    """(index, retrain_task's result) of every job as it finishes. On the local engine (or None) here,
    in order, the retrainer itself doing the work as it always did. On a cluster as tasks: the
    retrainer installed in each worker once (eng.keep; for a whole block: `kept`), the all-rows fits
    of the jobs' seeds made here first, so a task fits only its own model, and retrainer.fits
    counting every task's fit."""
    jobs, eng = list(jobs), eng or LocalEngine()
    if on_cluster(eng):
        for seed in dict.fromkeys(job[0] for job in jobs):
            retrainer.base_model(seed)
    with eng.keep(retrainer):
        for i, result in eng.map_unordered(retrain_task, jobs, shared=retrainer, desc=f"retrain {retrainer.name}",
                                           unit="retrains", progress=progress):
            if on_cluster(eng):
                retrainer.fits += 1
            yield i, result


def retrained(eng, retrainer: Retrainer, jobs: Iterable[tuple], progress=None) -> list:
    """retrains' results in the jobs' order."""
    out = dict(retrains(eng, retrainer, jobs, progress))
    return [out[i] for i in range(len(out))]


@contextmanager
def kept(eng, retrainer: Retrainer, seeds: Iterable[int]):
    """The retrainer installed in every worker once for all the retrains of the block, with its
    all-rows fits under `seeds` made here first (only seeds the block retrains under: each fit counts)."""
    if on_cluster(eng):
        for seed in seeds:
            retrainer.base_model(seed)
    with (eng or LocalEngine()).keep(retrainer):
        yield
