"""Held-out pruning of a ranking family's training data: remove what is predicted to hurt the top-k
lists, retrain, and score test users the choice never looked at, beside random removals of as much.

Two units (influence.ranking.prune_by):
- rows: of one test half's users, the training rows whose removal raises their own user's held-out
  log-likelihood most (the exact per-interaction ranking influence);
- users: every training user removed in turn through the family's set model (warm-started sweeps
  for ALS); a user's predicted effect on a half is the change of the mean NDCG@k, and of the mean
  sampled log-likelihood of the held-out songs, of that half's other test users. The users whose
  removal raises the selection half's log-likelihood most are removed (NDCG@k, a step function,
  seldom moves for one user), chosen among the users who are not test users of the scored half.
Each choice is made on one half and scored on the other (scored_on_A: chosen on B), paired per user.
"""
from __future__ import annotations

import numpy as np
import polars as pl

from musicrec.metrics import mean_ci
from musicrec.progress import Progress

OTHER = {"A": "B", "B": "A"}


def _scored(train, lists, halves: dict, retrainer, seed: int):
    """change(rows, h): each of half h's test users' NDCG@k change when `rows` are removed and the
    model retrained under `seed`, against the all-rows retrain."""
    base = lists.measures(retrainer.base_model(seed))["ndcg"]

    def change(rows: np.ndarray, h: str) -> np.ndarray:
        keep = np.ones(len(train), dtype=bool)
        keep[rows] = False
        j = halves[h]
        return lists.measures(retrainer.model_without(seed, rows), keep)["ndcg"][j] - base[j]
    return change


def _versus_random(change, h: str, chosen: np.ndarray, draw, repeats: int, rng) -> dict:
    """The chosen removal's change of half h beside `repeats` random draws of as much, paired per user."""
    mine = change(chosen, h)
    randoms = np.mean([change(draw(), h) for _ in range(repeats)], axis=0)
    return {"users_scored": int(len(mine)), "harmful": mean_ci(mine, rng).to_dict(),
            "random": mean_ci(randoms, rng).to_dict(), "harmful_minus_random": mean_ci(mine - randoms, rng).to_dict()}


def by_rows(loo: dict, train, lists, halves: dict, retrainer, seed: int, fraction: float, repeats: int, rng) -> dict:
    """Of the selection half's users, the `fraction` of their rows whose removal raises their own
    user's held-out log-likelihood most, against as many random rows of the same users."""
    user = train.keys["user"].to_numpy()
    change = _scored(train, lists, halves, retrainer, seed)
    out = {"by": "rows", "rows": "chosen among the rows of one half's test users, scored on the other half's users "
                                 "(scored_on_A: chosen on B)", "fraction": fraction, "repeats": repeats}
    for h in ("A", "B"):
        mine = np.flatnonzero(np.isin(user, lists.users[halves[OTHER[h]]]))
        k = max(1, int(round(fraction * len(mine))))
        gain = np.nan_to_num(loo["loglik"][mine], nan=-np.inf)
        harmful = mine[np.argsort(-gain, kind="stable")[:k]]
        out[f"scored_on_{h}"] = {"rows_removed": int(k), **_versus_random(
            change, h, harmful, lambda: rng.choice(mine, k, replace=False), repeats, rng)}
    return out


class HeldOutLoglik:
    """Each test user's sampled log-likelihood of their held-out songs, the mean of log sigmoid(x.t - x.s)
    over up to `pairs` held-out songs t seen in train and `pairs` of the ranking estimator's sampled
    songs s (a seeded draw, fixed for every model it scores), for any factors: a smooth measure, which
    one user's removal moves where NDCG@k, a step function, mostly stays."""

    BLOCK = 1024   # users per block: block x pairs x pairs floats at a time

    def __init__(self, users: np.ndarray, relevant: dict, negatives: dict, n_items: int, rng, pairs: int = 20):
        self.users = users

        def some(x: np.ndarray) -> np.ndarray:
            return np.sort(rng.choice(x, pairs, replace=False)) if len(x) > pairs else x
        self.held = [some(relevant[u][relevant[u] < n_items]) for u in users]
        self.drawn = [negatives[u][:pairs] for u in users]
        self.t, self.t_ok = self._padded(self.held)
        self.s, self.s_ok = self._padded(self.drawn)

    @staticmethod
    def _padded(lists: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        width = max(1, max(len(x) for x in lists))
        ok = np.arange(width)[None, :] < np.array([len(x) for x in lists])[:, None]
        idx = np.zeros(ok.shape, dtype=np.int64)
        idx[ok] = np.concatenate(lists) if ok.any() else []
        return idx, ok

    def __call__(self, model) -> np.ndarray:
        X, Y = model.user_factors_, model.item_factors_
        known = self.users < len(X)
        known[known] &= model.user_count_[self.users[known]] > 0
        out = np.full(len(self.users), np.nan)    # a user the model does not know has no factor to score
        for lo in range(0, len(self.users), self.BLOCK):
            b = slice(lo, lo + self.BLOCK)
            x = X[np.where(known[b], self.users[b], 0)]
            st = np.einsum("uk,urk->ur", x, Y[self.t[b]])
            ss = np.einsum("uk,urk->ur", x, Y[self.s[b]])
            ll = -np.logaddexp(0.0, -(st[:, :, None] - ss[:, None, :]))
            ok = self.t_ok[b][:, :, None] & self.s_ok[b][:, None, :]
            count = ok.sum(axis=(1, 2))
            out[b] = np.where(known[b] & (count > 0), np.where(ok, ll, 0.0).sum(axis=(1, 2)) / np.maximum(count, 1),
                              np.nan)
        return out


def user_effects(set_model, train, lists, loglik: HeldOutLoglik, halves: dict, names: dict[int, str],
                 label: str) -> pl.DataFrame:
    """Every training user's predicted change of each half's mean NDCG@k and mean sampled
    log-likelihood (over the half's other test users) when all of the user's rows are removed,
    through the set model: one row per user."""
    user = train.keys["user"].to_numpy().astype(np.int64)
    ids, inv = np.unique(user, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(len(ids) + 1))
    n = len(train)

    def measured(model, keep=None) -> dict[str, np.ndarray]:
        return {"ndcg": lists.measures(model, keep)["ndcg"], "loglik": loglik(model)}
    base = measured(set_model(np.ones(n)))
    at = np.searchsorted(lists.users, ids)
    own = np.where((at < len(lists.users)) & (lists.users[np.minimum(at, len(lists.users) - 1)] == ids), at, -1)
    pred = {(m, h): np.full(len(ids), np.nan) for m in base for h in halves}
    with Progress(len(ids), f"ranking users {label}", unit="users") as progress:
        for j in range(len(ids)):
            rows = order[bounds[j]:bounds[j + 1]]
            w = np.ones(n)
            w[rows] = 0.0
            for m, v in measured(set_model(w), w > 0).items():
                d = v - base[m]
                if own[j] >= 0:
                    d[own[j]] = np.nan      # the user's own list is not what the others see
                for h, idx in halves.items():
                    pred[m, h][j] = float(np.nanmean(d[idx]))
            progress.update()
    test_half = np.full(len(ids), "", dtype=object)
    for h, idx in halves.items():
        test_half[np.isin(ids, lists.users[idx])] = h
    return pl.DataFrame({"user": ids, "user_id": [names.get(int(u), str(int(u))) for u in ids],
                         "rows": np.diff(bounds), "test_half": test_half.astype(str),
                         **{f"predicted_{m}_{h}": v for (m, h), v in pred.items()}})


def by_users(effects: pl.DataFrame, train, lists, halves: dict, retrainer, seed: int, fraction: float, repeats: int,
             rng) -> tuple[dict, pl.DataFrame]:
    """The `fraction` of candidate users (not test users of the scored half) whose removal the set
    model expects to raise the selection half's sampled log-likelihood most (smooth, where one user
    seldom moves a top-k list), against as many random candidates. Returns the report and `effects`
    with each pruning's choice marked."""
    user = train.keys["user"].to_numpy()
    ids = effects["user"].to_numpy()
    change = _scored(train, lists, halves, retrainer, seed)
    out = {"by": "users", "rows": "users chosen by their predicted effect on the sampled log-likelihood of one half's "
                                  "other test users' held-out songs, never "
                                  "test users of the scored half, scored on the other half's users "
                                  "(scored_on_A: chosen on B)", "fraction": fraction, "repeats": repeats}
    marks = {}
    for h in ("A", "B"):
        cand = np.flatnonzero(effects["test_half"].to_numpy() != h)
        k = max(1, int(round(fraction * len(cand))))
        gain = np.nan_to_num(effects[f"predicted_loglik_{OTHER[h]}"].to_numpy()[cand], nan=-np.inf)
        chosen = cand[np.argsort(-gain, kind="stable")[:k]]
        rows_of = lambda users: np.flatnonzero(np.isin(user, ids[users]))   # noqa: E731
        harmful = rows_of(chosen)
        out[f"scored_on_{h}"] = {"users_removed": int(k), "rows_removed": int(len(harmful)), **_versus_random(
            change, h, harmful, lambda: rows_of(rng.choice(cand, k, replace=False)), repeats, rng)}
        marks[f"removed_scored_on_{h}"] = np.zeros(len(ids), dtype=bool)
        marks[f"removed_scored_on_{h}"][chosen] = True
    return out, effects.with_columns(*(pl.Series(c, v) for c, v in marks.items()))
