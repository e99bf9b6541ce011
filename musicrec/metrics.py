"""Evaluation metrics for stage 05: replay classification and top-K song recommendation.

Classification metrics wrap scikit-learn so the numbers match what anyone else would compute; AUC is
the Mann-Whitney statistic, roc_auc_score's value (the tests hold them equal) from one sort.
Ranking metrics are written here because they must run on ~30k users x 50 positions at once:
everything is a numpy array of shape (n_users, k) and cumulative sums along the rank axis, with
no Python loop over users or rows. All results are plain Python floats / ints (or None where a
metric is undefined), so a metrics dict can go straight into JSON.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss

from musicrec.outputs.common import Interval
from musicrec.stats import BOOTSTRAP, bootstrap_interval

PROB_CLIP = 1e-15


# ----------------------------------------------------------------------------------------------
# classification
# ----------------------------------------------------------------------------------------------

def _as_xy(y_true, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(np.int64, copy=False).ravel()
    q = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != q.shape:
        raise ValueError(f"y_true has {y.size} rows but the probabilities have {q.size}")
    if y.size == 0:
        raise ValueError("cannot score an empty set of rows")
    return y, q


def rank_auc(y: np.ndarray, q: np.ndarray) -> float | None:
    """ROC AUC as the Mann-Whitney statistic of the scores' average ranks (ties count one half), the
    value roc_auc_score gives, from one sort: its input checks and threshold curve cost ~0.2 s per
    call on a KKBOX test half, and stage 05 scores every segment of every model, stage 06 every
    group on both halves. None when only one class is present (AUC is undefined there), NaN when a
    score is.

    Each run of tied scores shares the mean of its ranks, so the positives' rank sum is a sum over
    the runs in integers (exact, as the sum of scipy's half-integer ranks is), and numpy's default
    sort need not be stable (rankdata's stable sort is the slow part of rankdata)."""
    pos = np.asarray(y) == 1
    n1 = int(np.count_nonzero(pos))
    n0 = len(pos) - n1
    if n1 == 0 or n0 == 0:
        return None
    q = np.asarray(q)
    if np.isnan(q).any():
        return float("nan")
    order = np.argsort(q)
    sorted_q = q[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_q[1:] != sorted_q[:-1])))
    ends = np.append(starts[1:], len(q))
    positives = np.add.reduceat(pos[order].astype(np.int64), starts)
    twice_rank_sum = int(((starts + ends + 1) * positives).sum())   # ranks 1..n: a run's mean is (start + end + 1) / 2
    return (twice_rank_sum / 2 - n1 * (n1 + 1) / 2) / (n1 * n0)



def classification_metrics(y_true, p) -> dict:
    """Replay-prediction quality of probabilities `p` for binary labels `y_true`.

    auc: ROC AUC (None when y_true holds a single class); logloss: mean negative log-likelihood
    with p clipped to [1e-15, 1 - 1e-15] so a confident miss costs ~34.5 nats, not infinity;
    accuracy: share of rows where (p >= 0.5) equals the label; brier: mean squared error of p.
    Computed in float64 whatever the input dtype.
    """
    y, q = _as_xy(y_true, p)
    qc = np.clip(q, PROB_CLIP, 1.0 - PROB_CLIP)
    return {
        "auc": rank_auc(y, q),
        "logloss": float(log_loss(y, qc, labels=[0, 1])),
        "accuracy": float(accuracy_score(y, (q >= 0.5).astype(np.int64))),
        "brier": float(brier_score_loss(y, q, pos_label=1)),
    }


def auc(y_true, p) -> float | None:
    """ROC AUC of scores `p` for labels `y_true` (None when one class only)."""
    y, q = _as_xy(y_true, p)
    return rank_auc(y, q)


def _json_key(value):
    """A segment value as a JSON-friendly dict key (numpy scalars -> Python, NaN/None -> 'missing')."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    return value


def auc_by_segment(y_true, p, segments: dict[str, np.ndarray]) -> dict:
    """AUC, row count and replay rate of each value of each per-row segment label.

    Used to see where a model is weak, e.g. cold-start rows (`user_seen` / `song_seen` =
    "unseen") or one `source_system_tab`. Returns {segment: {value: {"auc", "rows",
    "target_mean"}}}, values sorted; "auc" is None for a value whose rows hold one class.
    Rows are grouped once with a stable sort, then each group is a contiguous slice.
    """
    y, q = _as_xy(y_true, p)
    out: dict = {}
    for name, labels in segments.items():
        lab = np.asarray(labels).ravel()
        if lab.shape != y.shape:
            raise ValueError(f"segment '{name}' has {lab.size} labels for {y.size} rows")
        if lab.dtype == object:  # mixed / None values: compare as text
            lab = np.array(["missing" if v is None else str(v) for v in lab])
        values, inverse = np.unique(lab, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(values) + 1))
        res = {}
        for j, value in enumerate(values):
            idx = order[bounds[j]:bounds[j + 1]]
            yy = y[idx]
            res[_json_key(value)] = {"auc": rank_auc(yy, q[idx]), "rows": int(yy.size),
                                     "target_mean": float(yy.mean())}
        out[name] = res
    return out


# ----------------------------------------------------------------------------------------------
# ranking
# ----------------------------------------------------------------------------------------------

def _check_recs(recs, relevant, n_cols: int) -> tuple[np.ndarray, sp.csr_matrix]:
    """Validated (n_users, n_cols) int64 recs (padded with -1 when narrower) and a canonical CSR."""
    r = np.asarray(recs)
    if r.ndim != 2 or not np.issubdtype(r.dtype, np.integer):
        raise ValueError(f"recs must be a 2-D integer array (n_users, K), got {r.dtype} {r.shape}")
    r = r.astype(np.int64, copy=False)
    if n_cols < 1:
        raise ValueError(f"k must be >= 1, got {n_cols}")
    if r.shape[1] >= n_cols:
        r = r[:, :n_cols]
    else:
        r = np.hstack([r, np.full((r.shape[0], n_cols - r.shape[1]), -1, dtype=np.int64)])
    rel = sp.csr_matrix(relevant, copy=True)
    if rel.shape[0] != r.shape[0]:
        raise ValueError(f"recs has {r.shape[0]} users but relevant has {rel.shape[0]} rows")
    rel.sum_duplicates()
    rel.sort_indices()  # keys user * n_items + item are then sorted (see _hits)
    rel.data = (rel.data != 0).astype(np.int8)
    rel.eliminate_zeros()
    n_items = rel.shape[1]
    if r.size and (r.min() < -1 or r.max() >= n_items):
        raise ValueError(f"recs hold item ids outside [-1, {n_items - 1}] (-1 is padding)")
    srt = np.sort(r, axis=1)
    if np.any((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)):
        raise ValueError("a user's recommendation list repeats an item")
    return r, rel


def _hits(r: np.ndarray, rel: sp.csr_matrix) -> np.ndarray:
    """hits[u, j] = 1.0 when recs[u, j] is one of user u's relevant items (all pairs at once).

    Each relevant (user, item) pair becomes the key user * n_items + item; CSR order makes the
    keys sorted, so every recommended pair is looked up with one searchsorted.
    """
    n_items = rel.shape[1]
    keys = np.repeat(np.arange(rel.shape[0], dtype=np.int64), np.diff(rel.indptr)) * n_items \
        + rel.indices.astype(np.int64)
    q = np.arange(r.shape[0], dtype=np.int64)[:, None] * n_items + r
    if keys.size == 0:
        return np.zeros(r.shape, dtype=np.float64)
    pos = np.minimum(np.searchsorted(keys, q), keys.size - 1)
    return ((keys[pos] == q) & (r >= 0)).astype(np.float64)


def _first_and_repeats(codes: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per position of each row: is its code new in the row so far, and how many earlier
    positions share it. Padding (valid False) is neither new nor counted.

    A stable argsort per row puts equal codes together in rank order; the first of each run
    is the earliest occurrence and an element's offset within its run counts its earlier twins.
    """
    n, k = codes.shape
    c = np.where(valid, codes, np.iinfo(np.int64).min)  # padding sorts first, in one run
    order = np.argsort(c, axis=1, kind="stable")
    s = np.take_along_axis(c, order, axis=1)
    start = np.ones((n, k), dtype=bool)
    start[:, 1:] = s[:, 1:] != s[:, :-1]
    cols = np.broadcast_to(np.arange(k), (n, k))
    run_start = np.maximum.accumulate(np.where(start, cols, 0), axis=1)
    earlier_sorted = cols - run_start
    rows = np.arange(n)[:, None]
    new = np.zeros((n, k), dtype=bool)
    earlier = np.zeros((n, k), dtype=np.int64)
    new[rows, order] = start
    earlier[rows, order] = earlier_sorted
    return new & valid, np.where(valid, earlier, 0)


def _user_accuracy(r: np.ndarray, rel: sp.csr_matrix):
    """Per scored user (|rel_u| > 0) and cut-off k: hits, |rel_u|, cumulative hits, min(|rel_u|, k),
    precision@k and ndcg@k (see ranking_metrics for definitions)."""
    ks = np.arange(1, r.shape[1] + 1)
    n_rel = np.diff(rel.indptr).astype(np.float64)
    scored = n_rel > 0
    hits = _hits(r, rel)[scored]
    nr = n_rel[scored][:, None]
    cum_hits = np.cumsum(hits, axis=1)
    discount = 1.0 / np.log2(ks + 1.0)
    ideal_n = np.minimum(nr, ks[None, :]).astype(np.int64)  # min(|rel_u|, k) per user and k
    idcg_table = np.concatenate([[0.0], np.cumsum(discount)])
    with np.errstate(invalid="ignore", divide="ignore"):
        ndcg = np.cumsum(hits * discount, axis=1) / idcg_table[ideal_n]
    return hits, nr, cum_hits, ideal_n, cum_hits / ks, ndcg


def _curves(r: np.ndarray, rel: sp.csr_matrix, item_popularity, item_genre, item_artist,
            n_train_users) -> dict[str, np.ndarray]:
    """Every ranking metric at k = 1..r.shape[1] (see ranking_metrics for definitions)."""
    n_users, kmax = r.shape
    n_items = rel.shape[1]
    ks = np.arange(1, kmax + 1)
    valid = r >= 0
    safe = np.where(valid, r, 0)
    out: dict[str, np.ndarray] = {"k": ks}

    # accuracy-type metrics: users with at least one relevant item
    hits, nr, cum_hits, ideal_n, precision, ndcg = _user_accuracy(r, rel)
    ap_num = np.cumsum(hits * cum_hits / ks, axis=1)  # sum_{i<=k} P@i * rel_i
    with np.errstate(invalid="ignore"):  # no scored users -> mean of empty -> NaN
        out["precision"] = precision.mean(axis=0) if hits.size else np.full(kmax, np.nan)
        out["recall"] = (cum_hits / nr).mean(axis=0) if hits.size else np.full(kmax, np.nan)
        out["ndcg"] = ndcg.mean(axis=0) if hits.size else np.full(kmax, np.nan)
        out["map"] = (ap_num / ideal_n).mean(axis=0) if hits.size else np.full(kmax, np.nan)
        out["hit_rate"] = (cum_hits > 0).mean(axis=0) if hits.size else np.full(kmax, np.nan)
        p_u, r_u = precision, cum_hits / nr
        f1 = np.where(cum_hits > 0, 2 * p_u * r_u / np.where(cum_hits > 0, p_u + r_u, 1.0), 0.0)
        out["f1"] = f1.mean(axis=0) if hits.size else np.full(kmax, np.nan)
    out["users"] = np.full(kmax, len(hits))

    # catalogue coverage: an item is covered at k once it appears in any list within rank k
    best_rank = np.full(n_items, kmax, dtype=np.int64)
    np.minimum.at(best_rank, safe[valid], np.broadcast_to(np.arange(kmax), r.shape)[valid])
    out["coverage"] = np.cumsum(np.bincount(best_rank, minlength=kmax + 1)[:kmax]) / n_items

    if item_popularity is not None:
        pop = np.asarray(item_popularity, dtype=np.float64)
        info = -np.log2(np.minimum((pop + 1.0) / (float(n_train_users) + 1.0), 1.0))
        num = np.cumsum(np.where(valid, info[safe], 0.0).sum(axis=0))
        den = np.cumsum(valid.sum(axis=0))
        with np.errstate(invalid="ignore", divide="ignore"):
            out["novelty"] = num / den

    # list-level diversity: users with at least one recommendation within rank k
    has_rec = np.cumsum(valid, axis=1) > 0
    n_valid = np.cumsum(valid, axis=1)
    for key, codes in (("genre", item_genre), ("artist", item_artist)):
        if codes is None:
            continue
        c = np.asarray(codes).astype(np.int64, copy=False)[safe]
        new, earlier = _first_and_repeats(c, valid)
        distinct = np.cumsum(new, axis=1) / ks
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"{key}_diversity"] = (distinct * has_rec).sum(axis=0) / has_rec.sum(axis=0)
            # share of same-genre (same-artist) pairs among the n(n-1)/2 pairs of the list so far
            pairs = n_valid * (n_valid - 1) / 2.0
            ok = pairs > 0
            ils = np.where(ok, np.cumsum(earlier, axis=1) / np.where(ok, pairs, 1.0), 0.0)
            out[f"ils_{key}"] = ils.sum(axis=0) / ok.sum(axis=0)
    return out


def ranking_curves(recs, relevant, max_k: int, item_popularity=None, item_genre=None,
                   item_artist=None, n_train_users: int | None = None) -> dict[str, np.ndarray]:
    """Ranking metrics for every cut-off k = 1..max_k, for plots of quality / diversity vs k.

    Same definitions as `ranking_metrics`; computed once with cumulative sums along the rank
    axis, so it costs about one call of ranking_metrics at max_k. Returns arrays of length
    max_k under "k", "precision", "recall", "ndcg", "map", "hit_rate", "f1", "coverage", "users", plus "novelty"
    (when item_popularity and n_train_users are given), "genre_diversity" and "ils_genre" (when
    item_genre is given) and "artist_diversity" (when item_artist is given). Undefined points
    (e.g. ILS at k = 1) are NaN.
    """
    if item_popularity is not None and n_train_users is None:
        raise ValueError("novelty needs n_train_users along with item_popularity")
    r, rel = _check_recs(recs, relevant, int(max_k))
    return _curves(r, rel, item_popularity, item_genre, item_artist, n_train_users)


def ranking_metrics(recs, relevant, k: int, item_popularity, item_genre, item_artist,
                    n_train_users: int) -> dict:
    """Top-k recommendation quality, diversity and novelty, vectorized over users.

    recs: (n_users, K_max) int item ids in rank order, -1 = empty slot (padding counts as a
    miss). relevant: CSR (n_users, n_items), nonzero = the user replayed the item in test.
    item_popularity / item_genre / item_artist: per-item arrays (n_items). rel_u = user u's
    relevant items, hit_i = 1 if the item at rank i is in rel_u.

    Accuracy, averaged over the users with |rel_u| > 0 (their count is "users"):
      precision@k = sum_{i<=k} hit_i / k
      recall@k    = sum_{i<=k} hit_i / |rel_u|   (standard recall; cannot reach 1 if |rel_u| > k)
      ndcg@k      = DCG / IDCG, DCG = sum_{i<=k} hit_i / log2(i + 1), IDCG = the same sum for
                    min(|rel_u|, k) hits in the top ranks
      map@k       = mean of AP@k = sum_{i<=k} P@i * hit_i / min(|rel_u|, k)
      hit_rate@k  = share of users with at least one hit in the top k
      f1@k        = mean of the per-user harmonic mean 2 P R / (P + R) of precision@k and recall@k
                    (0 for a user without a hit)
    Catalogue, over all users:
      coverage    = distinct items in any user's top-k / n_items (n_items = relevant.shape[1])
      novelty     = mean over all recommended (user, item) slots of -log2 p(item),
                    p(item) = (popularity + 1) / (n_train_users + 1), i.e. the self-information
                    (bits) of the share of train users who played the item, add-one smoothed so
                    unseen items get log2(n_train_users + 1); item_popularity should count
                    distinct train users per item (play counts equal that when each user-song
                    pair occurs once, as in KKBOX); p is capped at 1.
    List diversity, averaged over users with at least one recommendation in the top-k:
      genre_diversity@k  = distinct genres in the top-k / k (short lists score lower)
      artist_diversity@k = distinct artists in the top-k / k
      ils_genre@k = share of the n(n-1)/2 pairs of the n recommended items in the top-k that
                    have the same genre (1 = one genre only); users with n < 2 are left out.
      ils_artist@k = the same for the artist (intra-list similarity by artist).
    A metric with no user to average over is None.
    """
    curves = ranking_curves(recs, relevant, k, item_popularity, item_genre, item_artist,
                            n_train_users)

    def last(name):
        v = float(curves[name][-1])
        return None if math.isnan(v) else v

    return {
        f"precision@{k}": last("precision"),
        f"recall@{k}": last("recall"),
        f"ndcg@{k}": last("ndcg"),
        f"map@{k}": last("map"),
        f"hit_rate@{k}": last("hit_rate"),
        f"f1@{k}": last("f1"),
        "coverage": last("coverage"),
        "novelty": last("novelty"),
        f"genre_diversity@{k}": last("genre_diversity"),
        f"artist_diversity@{k}": last("artist_diversity"),
        f"ils_genre@{k}": last("ils_genre"),
        f"ils_artist@{k}": last("ils_artist"),
        "users": int(curves["users"][-1]),
    }


def per_user_accuracy(recs, relevant, k: int) -> dict[str, np.ndarray]:
    """precision@k and ndcg@k of every user with a relevant item, in user order (the values whose
    means ranking_metrics reports), so that two models can be compared user by user."""
    *_, precision, ndcg = _user_accuracy(*_check_recs(recs, relevant, int(k)))
    return {f"precision@{k}": precision[:, -1], f"ndcg@{k}": ndcg[:, -1]}


def mean_ci(values: np.ndarray, rng: np.random.Generator, draws: int = BOOTSTRAP) -> Interval:
    """A mean over users with its 95% interval, a percentile bootstrap over the users
    (scipy.stats.bootstrap, 100 resamples at a time). Given per-user differences of two models on
    the same users, it is the paired interval of the difference of their means."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n < 2:
        return Interval(float(values.mean()) if n else None, n, None)
    return Interval(float(values.mean()), n, bootstrap_interval((values,), np.mean, rng, draws, batch=100))
