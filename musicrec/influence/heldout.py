"""Held-out scoring: the test split in two halves by user, one to select rows, the other to score.

An experiment that picks training rows by their estimated influence and then measures a retrained
model on the same test rows measures partly the selection. Every such experiment here selects on
one half's influence and scores on the other half, then swaps; both halves and their mean are
reported. Halves are drawn by user (all of a user's test rows in one half), seeded from the config.
"""
from __future__ import annotations

import numpy as np

HALVES = ("A", "B")
OTHER = {"A": "B", "B": "A"}


def user_halves(users: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Test row indices of half A and half B: the distinct users shuffled and cut in two."""
    users = np.asarray(users)
    distinct = np.unique(users)
    chosen = distinct[rng.permutation(len(distinct))[: len(distinct) // 2]]
    in_a = np.isin(users, chosen)
    return {"A": np.flatnonzero(in_a), "B": np.flatnonzero(~in_a)}


def half_influence(est, loo_all: np.ndarray, halves: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """LOO log-loss influence on each half's mean test log-loss. Half A is estimated (est.loo_on);
    half B follows from the whole split's influence, since each is a mean over its test rows:
    n * all = n_A * A + n_B * B."""
    n, n_a, n_b = len(est.y_test), len(halves["A"]), len(halves["B"])
    a = est.loo_on(halves["A"])
    return {"A": a, "B": (n * loo_all - n_a * a) / n_b}


def describe(halves: dict[str, np.ndarray], users: np.ndarray) -> dict:
    """Sizes of the halves, for validation.json."""
    return {h: {"test_rows": int(len(j)), "users": int(len(np.unique(users[j])))} for h, j in halves.items()}


def mean_of(cells: dict[str, dict]) -> dict:
    """Mean of the per-half metric changes (keys "scored_on_A", "scored_on_B")."""
    keys = ("logloss", "auc")
    vals = [cells[f"scored_on_{h}"] for h in HALVES]
    return {k: float(np.mean([v[k] for v in vals])) for k in keys}
