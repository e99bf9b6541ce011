"""Smoothed target statistics, out-of-fold on train, from the full train split elsewhere.

The stacked frame carries `y` (the label on train rows, 0 on every other row), `labelled` (1 on
train rows) and `fold` (0..K-1 on train rows, K elsewhere). For a row in fold f the statistic of
its key is (S - S_f + m * prior_f) / (N - N_f + m), where S, N are the label sum and count of the
key over train and S_f, N_f those inside fold f; prior_f is the train mean outside fold f. A
non-train row sits in the empty fold K, so the same expression gives it the full-train statistic.
A row's own label therefore never reaches its own features, and valid/test labels are never read.
"""
from __future__ import annotations

import numpy as np
import polars as pl

from musicrec.features.keys import KeyCodes, group_sum
from musicrec.parallel import cores, thread_map

TE_KEYS: dict[str, tuple[str, ...]] = {
    "user": ("user",),
    "song": ("song",),
    "artist": ("artist",),
    "composer": ("composer",),
    "lyricist": ("lyricist",),
    "genre": ("genre",),
    "source": ("source_system_tab", "source_screen_name", "source_type"),
    "user_artist": ("user", "artist"),
    "user_genre": ("user", "genre"),
    "user_language": ("user", "language"),
    "user_source_system_tab": ("user", "source_system_tab"),
    "user_source_screen_name": ("user", "source_screen_name"),
    "user_source_type": ("user", "source_type"),
    "song_source_system_tab": ("song", "source_system_tab"),
    "song_source_type": ("song", "source_type"),
    "artist_source_type": ("artist", "source_type"),
}
# with taste clusters (features.clusters): the user's replay rate on the song's cluster, that of users
# whose main cluster is the user's on the song's cluster, and the song's among such users
TE_CLUSTER_KEYS: dict[str, tuple[str, ...]] = {
    "user_song_cluster": ("user", "song_cluster"),
    "user_cluster_song_cluster": ("user_cluster", "song_cluster"),
    "song_user_cluster": ("song", "user_cluster"),
}


def assign_folds(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Balanced random fold of each train row (fold sizes differ by at most one)."""
    return (rng.permutation(n) % k).astype(np.int8)


def out_of_fold_sum(ids: np.ndarray, n_groups: int, fold: np.ndarray, k: int,
                    values: np.ndarray) -> np.ndarray:
    """Per row, the sum of `values` over its group minus the part inside the row's own fold."""
    within = ids.astype(np.int64) * (k + 1) + fold
    return group_sum(ids, n_groups, values) - group_sum(within, n_groups * (k + 1), values)


def fold_prior(y: np.ndarray, labelled: np.ndarray, fold: np.ndarray, k: int) -> np.ndarray:
    """Train target mean outside the row's fold (the full train mean for non-train rows)."""
    return (y.sum() - group_sum(fold, k + 1, y)) / (labelled.sum() - group_sum(fold, k + 1, labelled))


def smoothed_mean(s: np.ndarray, n: np.ndarray, prior: np.ndarray, m: float) -> np.ndarray:
    """(s + m * prior) / (n + m); the prior itself where there is nothing to average (n + m = 0)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n + m > 0, (s + m * prior) / (n + m), prior)


def target_features(work: pl.DataFrame, keys: KeyCodes, k: int, smoothing: float,
                    te_keys: dict[str, tuple[str, ...]] = TE_KEYS) -> tuple[pl.DataFrame, list[dict]]:
    """All target statistics and their counts, as Float32 columns in the frame's row order."""
    y = work["y"].to_numpy().astype(np.float64)
    labelled = work["labelled"].to_numpy().astype(np.float64)
    fold = work["fold"].to_numpy().astype(np.int64)
    prior = fold_prior(y, labelled, fold, k)
    keys.prepare(te_keys.values())   # the key codes first: the threads below only read the cache

    def statistic(key_cols: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        ids, n_groups = keys(key_cols)
        s = out_of_fold_sum(ids, n_groups, fold, k, y)
        n = out_of_fold_sum(ids, n_groups, fold, k, labelled)
        # the number of OTHER train rows of the key (label-free): what a valid/test row sees too.
        # The out-of-fold count would differ by fold on train ((K-1)/K of it) and a count that
        # includes the row itself would never be 0 on train: a linear model exploits both gaps.
        return (smoothed_mean(s, n, prior, smoothing).astype(np.float32),
                (group_sum(ids, n_groups, labelled) - labelled).astype(np.float32))

    cols, docs = {}, []
    for (name, key_cols), (te, te_n) in zip(te_keys.items(), thread_map(statistic, te_keys.values(), cores())):
        cols[f"te_{name}"], cols[f"te_{name}_n"] = te, te_n
        label = " x ".join(key_cols)
        docs.append({"name": f"te_{name}", "nan": False,
                     "description": f"replay rate of the {label}, smoothed toward the prior with "
                                    f"m={smoothing:g}; out-of-fold on train, full train elsewhere"})
        docs.append({"name": f"te_{name}_n", "nan": False,
                     "description": f"other train rows of the {label} (all folds, the row itself excluded)"})
    return pl.DataFrame(cols), docs


# ---------------------------------------------------------------------------------------------
# additive biases: the user's, song's and artist's replay tendency net of each other and of context
BIAS_EFFECTS: dict[str, tuple[str, ...]] = {
    "context": ("source_system_tab", "source_screen_name", "source_type"),
    "user": ("user",),
    "song": ("song",),
    "artist": ("artist",),
}
# with taste clusters: the affinity of user and song clusters, the member and metadata effects
BIAS_CLUSTER_EFFECTS: dict[str, tuple[str, ...]] = {
    "user_cluster_song_cluster": ("user_cluster", "song_cluster"),
    "user_song_cluster": ("user", "song_cluster"),
    "language": ("language",),
    "genre": ("genre",),
    "bd": ("bd",),
    "registered_via": ("registered_via",),
    "song_user_cluster": ("song", "user_cluster"),
}
BIAS_ITERATIONS = 6
BIAS_CLUSTER_ITERATIONS = 12  # the cluster effects overlap the user and song ones: more passes to settle


def fit_biases(effects: list[tuple[np.ndarray, int]], y: np.ndarray, rows: np.ndarray, lam: float,
               iterations: int = BIAS_ITERATIONS) -> tuple[float, list[np.ndarray]]:
    """y ~ mu + sum_e b_e[id_e] by ridge-regularised backfitting over the rows `rows` (indices).

    A raw replay rate of a user mixes the user's own tendency with where and what the user plays
    (a "my library" heavy user looks keen); fitting the effects jointly separates them, like the
    baseline predictors of collaborative filtering.
    """
    y = y[rows]
    mu = float(y.sum() / max(len(rows), 1))
    effects = [(ids[rows].astype(np.intp), n) for ids, n in effects]   # bincount would cast int32 ids on every call
    denominators = [np.bincount(ids, minlength=n) + lam for ids, n in effects]
    bias = [np.zeros(n) for _, n in effects]
    resid = y - mu
    for _ in range(iterations):
        for e, (ids, n) in enumerate(effects):
            partial = resid + bias[e][ids]
            bias[e] = np.bincount(ids, weights=partial, minlength=n) / denominators[e]
            resid = partial - bias[e][ids]
    return mu, bias


def bias_features(work: pl.DataFrame, keys: KeyCodes, k: int, smoothing: float,
                  bias_effects: dict[str, tuple[str, ...]] = BIAS_EFFECTS,
                  iterations: int = BIAS_ITERATIONS) -> tuple[pl.DataFrame, list[dict]]:
    """Out-of-fold additive biases (fit without the row's fold on train, on all of train elsewhere)."""
    y = work["y"].to_numpy().astype(np.float64)
    labelled = work["labelled"].to_numpy().astype(np.float64)
    fold = work["fold"].to_numpy().astype(np.int64)
    keys.prepare(bias_effects.values())
    effects = [keys(cols) for cols in bias_effects.values()]
    out = {name: np.zeros(work.height, dtype=np.float32) for name in bias_effects}
    total = np.zeros(work.height, dtype=np.float32)

    def fold_fit(f: int) -> None:
        """Fold k is every non-train row: fitted on all train rows. Folds write disjoint rows."""
        rows = fold == f
        if not rows.any():
            return
        mu, bias = fit_biases(effects, y, np.flatnonzero((labelled > 0) & (fold != f)), smoothing, iterations)
        total[rows] = mu
        for (name, b), (ids, _) in zip(zip(bias_effects, bias), effects):
            out[name][rows] = b[ids[rows]]
            total[rows] += b[ids[rows]]

    thread_map(fold_fit, range(k + 1), cores())
    cols = {f"bias_{name}": v for name, v in out.items()} | {"bias_total": total}
    docs = [{"name": f"bias_{name}", "nan": False,
             "description": f"the {name}'s additive replay bias fitted jointly with the other biases "
                            f"(ridge m={smoothing:g}); out-of-fold on train, full train elsewhere"}
            for name in bias_effects]
    docs.append({"name": "bias_total", "nan": False, "description": "mean + sum of the additive biases"})
    return pl.DataFrame(cols), docs
