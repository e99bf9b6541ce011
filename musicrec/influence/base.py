"""The shape every influence estimator has.

An estimator is built from a fitted model, its train split and the test split. `loo()` gives, for
every training row i, the estimated change of the test metrics when the model is trained without
i: (metric without i) - (metric with i), so a positive log-loss value means the row helps.
`loo()` also gives "self", the change of the row's own log-loss when it is removed (self-influence),
and "own_loss", the row's log-loss under the model trained without it (its leave-one-out
residual: large where the rest of the data contradicts the label, as for mislabelled rows).
`exact(rows)` evaluates the estimator's own model of the removal without any linearisation (every
test row re-scored), and `refit(rows)` obtains the same quantity through the library itself
(a closed-form refit, or the library's model with recomputed leaves / factors); validation checks
that the two agree to ~1e-9, which proves the bookkeeping, and compares both with full retraining.
"""
from __future__ import annotations


import numpy as np
from threadpoolctl import threadpool_limits

from musicrec.engine import task_threads
from musicrec.influence.losses import (logloss_derivatives, loss_change, metric_changes, row_losses,
                                      test_directions)
from musicrec.influence.tasks import row_blocks_as_tasks, row_engine
from musicrec.models.base import FeatureSet
from musicrec.parallel import cores, thread_map


def model_threads(model) -> int:
    """The analysed model's thread count (config `threads`), else the machine's cores."""
    n = getattr(model, "n_jobs", None)
    return max(1, int(n)) if n and n > 0 else cores()


def sorted_rows(rows) -> np.ndarray:
    """A set's row indices sorted and unique as int64; a set given so (np.flatnonzero's, as the
    groups are) is not sorted again: at KKBOX size the 51 groups' sorts took 20 s."""
    rows = np.asarray(rows, dtype=np.int64)
    return rows if len(rows) < 2 or bool((rows[1:] > rows[:-1]).all()) else np.unique(rows)


def row_blocks(n: int, size: int) -> list[slice]:
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


def map_row_blocks(work, n: int, size: int, threads: int) -> None:
    """work(rows) for every block of `size` of n rows, on `threads` threads with one BLAS thread
    each (the blocks' small matrix products would otherwise oversubscribe the cores); each block
    writes only its own output rows, of arrays it reaches through its closure. Inside
    `tasks.rows_on(engine)` with a cluster engine the blocks run as its tasks (musicrec.influence.tasks);
    inside a task, on the worker's threads."""
    eng = row_engine()
    if eng is not None:
        row_blocks_as_tasks(eng, work, n, size)
        return
    with threadpool_limits(1, "blas"):
        thread_map(work, row_blocks(n, size), task_threads(threads))


class Estimator:
    name = "model"
    #: how the estimate relates to the retrained model, for reports
    method = ""
    #: an estimator rebuilt on a model retrained without some rows keeps every train row (removed
    #: ones with weight 0): the forest, whose bootstrap draws are indexed by the full train split
    keeps_removed_rows = False

    def __init__(self, model, train: FeatureSet, test: FeatureSet):
        self.model, self.train, self.test = model, train, test
        self.y_test = test.y.astype(np.float64)
        self.f_test = self.test_logits()
        self.directions = test_directions(self.y_test, self.f_test)
        self.test_weights = np.ones(len(self.y_test))

    def loo_on(self, rows: np.ndarray) -> np.ndarray:
        """LOO influence on the mean test log-loss of the test rows `rows` only (a part of the test
        split that selection may look at while another part scores). Every estimator's log-loss
        influence is a sum over test rows of a per-row term, so this is loo() with the other test
        rows weighted 0 (and these weighted n_test / len(rows), the mean over them)."""
        w = np.zeros(len(self.y_test))
        w[np.asarray(rows)] = len(self.y_test) / len(rows)
        saved = self.test_weights, self.directions
        self.test_weights = w
        self.directions = {**saved[1], "logloss": saved[1]["logloss"] * w}
        try:
            return self.loo()["logloss"]
        finally:
            self.test_weights, self.directions = saved

    def weighted_derivatives(self) -> tuple[np.ndarray, np.ndarray]:
        """logloss_derivatives of the test rows, times the test weights (see loo_on)."""
        g, h = logloss_derivatives(self.y_test, self.f_test)
        return g * self.test_weights, h * self.test_weights

    def test_logits(self) -> np.ndarray:
        raise NotImplementedError

    def retrain_inputs(self):
        """The family's prepared training inputs (Model.prepare) built from what the estimator holds,
        so the Retrainer does not build a second design matrix (GBs at KKBOX size); None: prepare anew."""
        return None

    def extra_columns(self) -> dict[str, np.ndarray]:
        """Per-row values beside loo() worth a loo.parquet column of their own (after loo())."""
        return {}

    def extra_validation(self, loo: dict, rng: np.random.Generator) -> dict:
        """Family-specific checks for validation.json's `extras` (after loo())."""
        return {}

    def rankings(self) -> dict[str, np.ndarray]:
        """Further mislabel rankings of the training rows (larger = more suspect), after loo()."""
        return {}

    def loo(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def logit_changes(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), n_test) change of every test logit when each row is removed."""
        raise NotImplementedError

    def exact(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return metric_changes(self.y_test, self.f_test, self.logit_changes(np.asarray(rows)))

    def group_logits(self, rows: np.ndarray) -> np.ndarray | None:
        """Test logits without all `rows` at once, by the estimator's own removal model, where
        the family has one that holds for sets of rows (None otherwise)."""
        return None

    @property
    def has_set_predictor(self) -> bool:
        """Whether the family models the removal of a whole set (else groups use the sum of LOO)."""
        return type(self).group_logits is not Estimator.group_logits

    def prepare_sets(self, valid: FeatureSet | None, gcfg: dict) -> None:
        """Settings of the family's set predictor (influence.groups), and the validation split a
        family refits on (ALS's calibration)."""

    def group_logits_many(self, groups: list[np.ndarray]):
        """group_logits of each group, a few at a time on the model's threads, in order (a family
        may share work across the groups instead)."""
        groups, threads = list(groups), model_threads(self.model)
        for s in range(0, len(groups), threads):
            with threadpool_limits(1, "blas"):
                yield from thread_map(lambda rows: self.group_logits(np.asarray(rows)), groups[s:s + threads], threads)

    def group_logloss(self, rows: np.ndarray) -> float | None:
        """Change of test log-loss when all `rows` are removed together (see group_logits)."""
        f = self.group_logits(np.asarray(rows))
        return None if f is None else float(loss_change(self.y_test, self.f_test, f - self.f_test).mean())

    def train_logits(self, rows: np.ndarray) -> np.ndarray:
        """Logits of the all-rows model on some training rows."""
        raise NotImplementedError

    def own_loss_changes(self, f_train: np.ndarray, own: np.ndarray, rows=slice(None)) -> np.ndarray:
        """Self-influence: change of training rows' own log-loss, from their own logit change."""
        return loss_change(self.train.y[rows], f_train, own)

    def own_terms(self, f_train: np.ndarray, own: np.ndarray, rows=slice(None)) -> dict[str, np.ndarray]:
        """"self" (the change of the row's own log-loss when it is removed) and "own_loss" (the
        row's log-loss under the model trained without it: its leave-one-out residual)."""
        change = self.own_loss_changes(f_train, own, rows)
        return {"self": change, "own_loss": row_losses(self.train.y[rows], f_train) + change}

    def refit_self(self, rows: np.ndarray) -> np.ndarray:
        """Self-influence through the library refit without each row (checks loo()["self"])."""
        rows = np.asarray(rows)
        f = self.train_logits(rows)
        own = np.array([self._refit(int(r))[1] for r in rows]) - f
        return self.own_loss_changes(f, own, rows)

    def refit_logits(self, row: int) -> tuple[np.ndarray, float]:
        """Test logits of the library model refitted without `row` in the estimator's sense, and
        that model's logit of the removed row itself (for the self-influence check)."""
        raise NotImplementedError

    def _refit(self, row: int) -> tuple[np.ndarray, float]:
        """refit_logits, once per row: `refit` and `refit_self` check the same refitted model
        (at full size each refit passes over millions of rows)."""
        cache = self.__dict__.setdefault("_refits", {})
        if row not in cache:
            cache[row] = self.refit_logits(row)
        return cache[row]

    def refit(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        delta = np.stack([self._refit(int(r))[0] - self.f_test for r in rows])
        return metric_changes(self.y_test, self.f_test, delta)
