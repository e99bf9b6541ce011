"""Flipped training labels: which rows were flipped, and how well each ranking finds them.

Rows are flipped on the training split only (`split.train_label_noise`, stage 02 records them in
train.parquet's `label_flipped`); the synthetic generator's own `data.synthetic.label_noise`
flips train.csv before the split (truth.parquet's `flipped`), which also puts noise in the test
labels. Every ranking stage 06 has is scored as a detector (lift at 5% and 10% with intervals,
precision-recall AUC): test-loss influence (most harmful first), self-influence (largest first),
the leave-one-out own loss (largest first: the documented mislabel detector) and the forest's
Data-OOB (lowest first). Where the synthetic truth exists, the oracle ranks by the posterior that
a row's label was flipped given its true replay probability and its observed label: the ceiling
for any detector.
"""
from __future__ import annotations

import numpy as np

from musicrec.influence.stats import detector

RANKINGS = {  # loo.parquet column suffix -> sign that makes "larger = more suspect"
    "test_loss_influence": ("logloss", -1.0),
    "self_influence": ("self", 1.0),
    "loo_own_loss": ("own_loss", 1.0),
}


def oracle_posterior(p_true: np.ndarray, observed: np.ndarray, share: float) -> np.ndarray:
    """P(label flipped | true replay probability, observed label) for a flip rate `share`."""
    p = np.clip(np.asarray(p_true, dtype=np.float64), 1e-12, 1 - 1e-12)
    like_true = np.where(observed == 1, p, 1 - p) * (1 - share)     # observed label is the drawn one
    like_flip = np.where(observed == 1, 1 - p, p) * share            # the drawn label was the other
    return like_flip / (like_true + like_flip)


def oob_suspicion(values: np.ndarray) -> np.ndarray:
    """A Data-OOB value as a suspicion score: lowest value first, rows no tree left out last."""
    return -np.nan_to_num(values, nan=np.inf)


def suspicion(loo: dict, extra: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Each of one model's rankings as a score, larger = more suspect; `extra`: the estimator's
    own further rankings (Estimator.rankings(), e.g. the forest's Data-OOB)."""
    return {**{name: sign * loo[key] for name, (key, sign) in RANKINGS.items()}, **(extra or {})}


def model_rankings(loo: dict, flipped: np.ndarray, rng, extra: dict[str, np.ndarray] | None = None) -> dict:
    """Each of one model's rankings as a detector of the flipped rows."""
    return {name: detector(s, flipped, rng) for name, s in suspicion(loo, extra).items()}


def report(flipped: np.ndarray, source: str, rng, p_true: np.ndarray | None, observed: np.ndarray) -> dict:
    """The flipped rows' count and share, and the oracle detector where the truth is known."""
    out = {"source": source, "flipped": int(flipped.sum()), "rows": int(len(flipped)),
           "share": float(flipped.mean()), "rows_scored": "training split (all rows)"}
    if p_true is not None:
        out["oracle"] = detector(oracle_posterior(p_true, observed, float(flipped.mean())), flipped, rng)
        out["oracle"]["ranking"] = "posterior that the label was flipped, from truth p_true and the observed label"
    else:
        out["oracle"] = None
    return out
