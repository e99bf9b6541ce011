"""Metrics against scikit-learn, hand-computed tiny cases, and a slow per-user reference."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score

from musicrec import metrics

LOG2_3 = math.log2(3)


# ------------------------------------------------------------------------------ classification

def test_classification_metrics_hand_case():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8], dtype=np.float32)
    m = metrics.classification_metrics(y, p)
    # AUC: of the 4 (pos, neg) pairs only (0.35 vs 0.4) is mis-ordered -> 3/4
    assert m["auc"] == pytest.approx(0.75)
    # logloss = -(ln 0.9 + ln 0.6 + ln 0.35 + ln 0.8) / 4
    assert m["logloss"] == pytest.approx(-(math.log(0.9) + math.log(0.6) + math.log(0.35)
                                           + math.log(0.8)) / 4, rel=1e-6)
    # predictions at 0.5: [0, 0, 0, 1] -> 3 of 4 right
    assert m["accuracy"] == 0.75
    # brier = (0.1^2 + 0.4^2 + 0.65^2 + 0.2^2) / 4
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4, rel=1e-6)
    assert all(type(v) is float for v in m.values())


def test_classification_metrics_match_sklearn_float32():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 5000)
    p = np.clip(0.3 * y + 0.7 * rng.random(5000), 0, 1).astype(np.float32)
    m = metrics.classification_metrics(y, p)
    p64 = p.astype(np.float64)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p64), abs=1e-12)
    assert m["logloss"] == pytest.approx(log_loss(y, np.clip(p64, 1e-15, 1 - 1e-15)), abs=1e-12)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, p64 >= 0.5), abs=1e-12)
    assert m["brier"] == pytest.approx(brier_score_loss(y, p64), abs=1e-12)


def test_logloss_is_clipped_and_one_class_auc_is_none():
    # certain and wrong: p clipped to 1e-15 and 1 - 1e-15, so ~34.5 nats per row, not infinity
    # (1 - 1e-15 rounds in float64, so the second row costs -ln(1 - (1 - 1e-15)))
    m = metrics.classification_metrics([1, 0], [0.0, 1.0])
    assert m["logloss"] == pytest.approx(-(math.log(1e-15) + math.log(1 - (1 - 1e-15))) / 2,
                                         rel=1e-12)
    assert 34.5 < m["logloss"] < 34.6
    assert m["accuracy"] == 0.0 and m["brier"] == 1.0
    one = metrics.classification_metrics([1, 1, 1], [0.2, 0.9, 0.6])
    assert one["auc"] is None
    assert one["accuracy"] == pytest.approx(2 / 3)
    assert json.loads(json.dumps(one))["auc"] is None
    assert metrics.auc([0, 0], [0.1, 0.2]) is None
    assert metrics.auc([0, 1, 1], [0.1, 0.8, 0.05]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        metrics.classification_metrics([0, 1], [0.5])


def test_auc_by_segment_hand_case():
    y = np.array([0, 1, 0, 1, 1, 1])
    p = np.array([0.2, 0.9, 0.7, 0.6, 0.5, 0.4])
    seen = np.array(["seen", "seen", "unseen", "unseen", "unseen", "seen"])
    tab = np.array([3, 3, 3, 3, 7, 7], dtype=np.int64)
    out = metrics.auc_by_segment(y, p, {"user_seen": seen, "tab": tab})
    # seen rows: y [0,1,1], p [.2,.9,.4] -> both positives above the negative -> AUC 1
    assert out["user_seen"]["seen"] == {"auc": 1.0, "rows": 3, "target_mean": pytest.approx(2 / 3)}
    # unseen rows: y [0,1,1], p [.7,.6,.5] -> both positives below the negative -> AUC 0
    assert out["user_seen"]["unseen"]["auc"] == 0.0
    # tab 3: y [0,1,0,1], p [.2,.9,.7,.6]: pairs (.9>.2, .9>.7, .6>.2, .6<.7) -> 3/4
    assert out["tab"][3]["auc"] == pytest.approx(0.75)
    assert out["tab"][3]["rows"] == 4 and out["tab"][3]["target_mean"] == 0.5
    # tab 7 holds positives only: AUC undefined
    assert out["tab"][7] == {"auc": None, "rows": 2, "target_mean": 1.0}
    assert all(type(key) is int for key in out["tab"])
    json.dumps(out)


# ------------------------------------------------------------------------------ ranking: hand case

def _hand_case():
    """3 users, 5 items, lists of length 3 (user 1 padded with -1)."""
    recs = np.array([[2, 0, 4],
                     [2, 3, -1],
                     [4, 2, 3]])
    rel = sp.csr_matrix(np.array([[1, 0, 0, 1, 0],    # user 0: {0, 3}
                                  [0, 0, 0, 1, 0],    # user 1: {3}
                                  [0, 0, 0, 0, 0]],   # user 2: nothing -> no accuracy metrics
                                 dtype=bool))
    popularity = np.array([9, 0, 3, 1, 4])
    genre = np.array([0, 0, 1, 1, 2])
    artist = np.array([5, 5, 7, 8, 8])
    return recs, rel, popularity, genre, artist, 9


def test_ranking_metrics_hand_case():
    recs, rel, pop, genre, artist, n_train = _hand_case()
    m = metrics.ranking_metrics(recs, rel, 3, pop, genre, artist, n_train)
    assert set(m) == {"precision@3", "recall@3", "ndcg@3", "map@3", "hit_rate@3", "f1@3", "coverage", "novelty",
                      "genre_diversity@3", "artist_diversity@3", "ils_genre@3", "ils_artist@3", "users"}
    # user 0: recs [2,0,4], rel {0,3}: hits [0,1,0]
    #   P@3 = 1/3, R@3 = 1/2, DCG = 1/log2(3), IDCG = 1 + 1/log2(3), AP@3 = (P@2 = 1/2) / min(2,3)
    # user 1: recs [2,3,-1], rel {3}: hits [0,1,0]
    #   P@3 = 1/3, R@3 = 1/1, DCG = 1/log2(3), IDCG = 1, AP@3 = (1/2) / 1
    # user 2 has no relevant item: left out -> 2 users
    assert m["users"] == 2
    assert m["precision@3"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert m["recall@3"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["ndcg@3"] == pytest.approx(((1 / LOG2_3) / (1 + 1 / LOG2_3) + (1 / LOG2_3) / 1) / 2)
    assert m["map@3"] == pytest.approx((1 / 4 + 1 / 2) / 2)
    assert m["hit_rate@3"] == pytest.approx(1.0)
    # F1: u0 2 (1/3)(1/2) / (1/3 + 1/2) = 2/5; u1 2 (1/3)(1) / (4/3) = 1/2
    assert m["f1@3"] == pytest.approx((2 / 5 + 1 / 2) / 2)
    # coverage: items {2,0,4} u {2,3} u {4,2,3} = {0,2,3,4} -> 4 of 5
    assert m["coverage"] == pytest.approx(0.8)
    # novelty: p = (pop+1)/(9+1) = [1, .1, .4, .2, .5] -> bits [0, log2 10, log2 2.5, log2 5, 1]
    #   slots: u0 [2,0,4] = log2 2.5 + 0 + 1; u1 [2,3] = log2 2.5 + log2 5;
    #          u2 [4,2,3] = 1 + log2 2.5 + log2 5   -> 8 slots
    assert m["novelty"] == pytest.approx((3 * math.log2(2.5) + 2 * math.log2(5) + 2) / 8)
    # genres: u0 [1,0,2] -> 3/3; u1 [1,1] -> 1/3; u2 [2,1,1] -> 2/3   (all 3 users have recs)
    assert m["genre_diversity@3"] == pytest.approx((1 + 1 / 3 + 2 / 3) / 3)
    # artists: u0 [7,5,8] -> 3/3; u1 [7,8] -> 2/3; u2 [8,7,8] -> 2/3
    assert m["artist_diversity@3"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    # ILS: u0 0 of 3 pairs same genre; u1 1 of 1; u2 genres [2,1,1]: 1 of 3
    assert m["ils_genre@3"] == pytest.approx((0 + 1 + 1 / 3) / 3)
    # ILS by artist: u0 [7,5,8] 0 of 3; u1 [7,8] 0 of 1; u2 [8,7,8] 1 of 3
    assert m["ils_artist@3"] == pytest.approx((0 + 0 + 1 / 3) / 3)
    assert all(type(v) is float for key, v in m.items() if key != "users")
    json.dumps(m)


def test_ranking_metrics_hand_case_k1_and_k2():
    recs, rel, pop, genre, artist, n_train = _hand_case()
    m1 = metrics.ranking_metrics(recs, rel, 1, pop, genre, artist, n_train)
    # top-1 is item 2 or 4: no hits; coverage {2,4}; single items: diversity 1, ILS undefined
    assert m1["precision@1"] == 0 and m1["ndcg@1"] == 0 and m1["map@1"] == 0
    assert m1["coverage"] == pytest.approx(0.4)
    assert m1["genre_diversity@1"] == 1.0 and m1["ils_genre@1"] is None
    m2 = metrics.ranking_metrics(recs, rel, 2, pop, genre, artist, n_train)
    # both scored users hit at rank 2: P@2 = 1/2; R@2 = (1/2 + 1)/2
    # NDCG@2: u0 (1/log2 3)/(1 + 1/log2 3), u1 (1/log2 3)/1; AP@2: u0 (1/2)/2, u1 (1/2)/1
    assert m2["precision@2"] == pytest.approx(0.5)
    assert m2["recall@2"] == pytest.approx(0.75)
    assert m2["ndcg@2"] == pytest.approx(((1 / LOG2_3) / (1 + 1 / LOG2_3) + 1 / LOG2_3) / 2)
    assert m2["map@2"] == pytest.approx(3 / 8)
    # top-2 genres: u0 [1,0] -> 1, u1 [1,1] -> 1/2 and ILS 1, u2 [2,1] -> 1
    assert m2["genre_diversity@2"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m2["ils_genre@2"] == pytest.approx(1 / 3)


def test_ranking_k_larger_than_list_pads_and_input_checks():
    recs, rel, pop, genre, artist, n_train = _hand_case()
    m5 = metrics.ranking_metrics(recs, rel, 5, pop, genre, artist, n_train)
    # two extra empty slots: same hits, divided by 5
    assert m5["precision@5"] == pytest.approx(1 / 5)
    assert m5["recall@5"] == pytest.approx(0.75)
    assert m5["genre_diversity@5"] == pytest.approx((3 / 5 + 1 / 5 + 2 / 5) / 3)
    with pytest.raises(ValueError, match="repeats"):
        metrics.ranking_metrics(np.array([[1, 1, 2], [0, 1, 2], [0, 1, 2]]), rel, 3, pop, genre,
                                artist, n_train)
    with pytest.raises(ValueError, match="outside"):
        metrics.ranking_metrics(np.array([[5, 1, 2], [0, 1, 2], [0, 1, 2]]), rel, 3, pop, genre,
                                artist, n_train)
    with pytest.raises(ValueError, match="users"):
        metrics.ranking_metrics(recs[:2], rel, 3, pop, genre, artist, n_train)


def test_no_scored_users_gives_none():
    recs, rel, pop, genre, artist, n_train = _hand_case()
    empty = sp.csr_matrix(rel.shape, dtype=bool)
    m = metrics.ranking_metrics(recs, empty, 3, pop, genre, artist, n_train)
    assert m["users"] == 0 and m["ndcg@3"] is None and m["precision@3"] is None
    assert m["coverage"] == pytest.approx(0.8)


def test_curves_equal_metrics_at_each_k():
    recs, rel, pop, genre, artist, n_train = _hand_case()
    c = metrics.ranking_curves(recs, rel, 3, pop, genre, artist, n_train)
    assert list(c["k"]) == [1, 2, 3]
    for k in (1, 2, 3):
        m = metrics.ranking_metrics(recs, rel, k, pop, genre, artist, n_train)
        for name in ("precision", "recall", "ndcg", "map", "genre_diversity", "artist_diversity",
                     "ils_genre"):
            want = m[f"{name}@{k}"]
            assert (math.isnan(c[name][k - 1]) if want is None
                    else c[name][k - 1] == pytest.approx(want)), (name, k)
        assert c["coverage"][k - 1] == pytest.approx(m["coverage"])
        assert c["novelty"][k - 1] == pytest.approx(m["novelty"])


# ------------------------------------------------------------------------------ ranking: reference

def _reference(recs, rel_sets, k, pop, genre, artist, n_train, n_items):
    """Slow, obvious per-user implementation of the documented definitions."""
    prec, rec, ndcg, ap, gdiv, adiv, ils, slots, items = [], [], [], [], [], [], [], [], set()
    hr, f1, ils_a = [], [], []
    for u in range(recs.shape[0]):
        lst = [int(i) for i in recs[u, :k] if i >= 0]
        ranked = list(recs[u, :k]) + [-1] * (k - len(recs[u, :k]))
        items.update(lst)
        slots += [-math.log2(min((pop[i] + 1) / (n_train + 1), 1.0)) for i in lst]
        if lst:
            gdiv.append(len({genre[i] for i in lst}) / k)
            adiv.append(len({artist[i] for i in lst}) / k)
        if len(lst) >= 2:
            pairs = [(a, b) for x, a in enumerate(lst) for b in lst[x + 1:]]
            ils.append(sum(genre[a] == genre[b] for a, b in pairs) / len(pairs))
            ils_a.append(sum(artist[a] == artist[b] for a, b in pairs) / len(pairs))
        r = rel_sets[u]
        if not r:
            continue
        hit = [1 if (i >= 0 and i in r) else 0 for i in ranked]
        prec.append(sum(hit) / k)
        rec.append(sum(hit) / len(r))
        dcg = sum(h / math.log2(i + 2) for i, h in enumerate(hit))
        idcg = sum(1 / math.log2(i + 2) for i in range(min(len(r), k)))
        ndcg.append(dcg / idcg)
        ap.append(sum(sum(hit[:i + 1]) / (i + 1) * hit[i] for i in range(k)) / min(len(r), k))
        hr.append(float(sum(hit) > 0))
        f1.append(2 * prec[-1] * rec[-1] / (prec[-1] + rec[-1]) if sum(hit) else 0.0)

    def mean(x):
        return sum(x) / len(x) if x else None

    return {f"precision@{k}": mean(prec), f"recall@{k}": mean(rec), f"ndcg@{k}": mean(ndcg),
            f"map@{k}": mean(ap), f"hit_rate@{k}": mean(hr), f"f1@{k}": mean(f1), "coverage": len(items) / n_items, "novelty": mean(slots),
            f"genre_diversity@{k}": mean(gdiv), f"artist_diversity@{k}": mean(adiv),
            f"ils_genre@{k}": mean(ils), f"ils_artist@{k}": mean(ils_a), "users": len(prec)}


def test_ranking_matches_slow_reference_randomized():
    rng = np.random.default_rng(11)
    n_users, n_items, kmax = 60, 25, 8
    recs = np.stack([rng.permutation(n_items)[:kmax] for _ in range(n_users)]).astype(np.int64)
    n_pad = rng.integers(0, 4, n_users)  # 0-3 empty slots at the end of each list
    recs[np.arange(kmax)[None, :] >= kmax - n_pad[:, None]] = -1
    recs[5] = -1  # a user with no recommendation at all
    dense = rng.random((n_users, n_items)) < 0.15
    dense[:7] = False  # users without relevant items
    dense[8, 0] = dense[9, 1] = False  # explicit zeros go there below: they are not relevant
    # duplicates in the COO input and explicit zeros must not matter
    coo = sp.coo_matrix(dense.astype(np.int8))
    rows = np.concatenate([coo.row, coo.row[:10], [8, 9]])
    cols = np.concatenate([coo.col, coo.col[:10], [0, 1]])
    vals = np.concatenate([coo.data, coo.data[:10], [0, 0]])
    rel = sp.csr_matrix((vals, (rows, cols)), shape=dense.shape)
    rel_sets = [set(np.flatnonzero(dense[u])) for u in range(n_users)]
    pop = rng.integers(0, 50, n_items)
    genre = rng.integers(0, 4, n_items)
    artist = rng.integers(-1, 12, n_items)  # -1 is an ordinary code here
    n_train = 40
    curves = metrics.ranking_curves(recs, rel, kmax, pop, genre, artist, n_train)
    for k in range(1, kmax + 1):
        want = _reference(recs, rel_sets, k, pop, genre, artist, n_train, n_items)
        got = metrics.ranking_metrics(recs, rel, k, pop, genre, artist, n_train)
        assert set(got) == set(want)
        for key, w in want.items():
            if w is None:
                assert got[key] is None, (key, k)
            else:
                assert got[key] == pytest.approx(w, abs=1e-12), (key, k)
        for name in ("precision", "recall", "ndcg", "map", "hit_rate", "f1", "genre_diversity", "ils_genre", "ils_artist"):
            w = want[f"{name}@{k}"]
            assert math.isnan(curves[name][k - 1]) if w is None else \
                curves[name][k - 1] == pytest.approx(w, abs=1e-12)
        assert curves["coverage"][k - 1] == pytest.approx(want["coverage"])
    assert 0 < got["users"] == sum(bool(r) for r in rel_sets) < n_users - 6


def test_ranking_curves_optional_side_info():
    recs, rel, *_ = _hand_case()
    c = metrics.ranking_curves(recs, rel, 2)
    assert {"k", "precision", "recall", "ndcg", "map", "coverage", "users"} <= set(c)
    assert "novelty" not in c and "genre_diversity" not in c
    assert c["precision"] == pytest.approx([0.0, 0.5])
    with pytest.raises(ValueError, match="n_train_users"):
        metrics.ranking_curves(recs, rel, 2, item_popularity=np.ones(5))


def test_ndcg_and_map_match_implicit_evaluation():
    """implicit's own ranking_metrics_at_k on the same recommendations (its model.recommend)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.evaluation import ranking_metrics_at_k
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(5)
    n_users, n_items, k = 80, 60, 10
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=4)
    model.user_factors = rng.normal(size=(n_users, 4)).astype(np.float32)
    model.item_factors = rng.normal(size=(n_items, 4)).astype(np.float32)
    train = sp.csr_matrix((rng.random((n_users, n_items)) < 0.1).astype(np.float32))
    test = sp.csr_matrix(((rng.random((n_users, n_items)) < 0.15) & (train.toarray() == 0)).astype(np.float32))
    theirs = ranking_metrics_at_k(model, train, test, K=k, show_progress=False)
    recs, _ = model.recommend(np.arange(n_users), train, N=k, filter_already_liked_items=True)
    side = np.zeros(n_items, dtype=np.int64)
    ours = metrics.ranking_metrics(recs, test, k, np.asarray(train.sum(axis=0)).ravel(), side, side, n_users)
    assert ours[f"ndcg@{k}"] == pytest.approx(theirs["ndcg"], rel=1e-9)
    assert ours[f"map@{k}"] == pytest.approx(theirs["map"], rel=1e-9)
    # implicit's precision is micro: all hits / sum of min(k, |rel_u|) -- ours per user / k
    rel = test.toarray() > 0
    hits = np.array([rel[u, recs[u]].sum() for u in range(n_users)])
    n_rel = rel.sum(axis=1)
    assert hits.sum() / np.minimum(n_rel, k).sum() == pytest.approx(theirs["precision"], rel=1e-9)
    assert ours[f"precision@{k}"] == pytest.approx((hits[n_rel > 0] / k).mean(), rel=1e-9)


def test_per_user_accuracy_brute_force_and_means():
    rng = np.random.default_rng(3)
    n_users, n_items, k = 40, 30, 5
    recs = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    recs[0, 3:] = -1                                   # a short list: padding is a miss
    dense = rng.random((n_users, n_items)) < 0.15
    dense[1] = False                                   # a user without relevant items is not scored
    got = metrics.per_user_accuracy(recs, sp.csr_matrix(dense.astype(float)), k)
    want_p, want_n = [], []
    for u in range(n_users):
        rel = set(np.flatnonzero(dense[u]))
        if not rel:
            continue
        hits = [1.0 if r in rel else 0.0 for r in recs[u]]
        want_p.append(sum(hits) / k)
        idcg = sum(1 / math.log2(i + 2) for i in range(min(len(rel), k)))
        want_n.append(sum(h / math.log2(i + 2) for i, h in enumerate(hits)) / idcg)
    np.testing.assert_allclose(got[f"precision@{k}"], want_p)
    np.testing.assert_allclose(got[f"ndcg@{k}"], want_n)
    side = np.zeros(n_items, dtype=np.int64)
    summary = metrics.ranking_metrics(recs, sp.csr_matrix(dense.astype(float)), k, side + 1.0, side, side, 10)
    assert summary[f"ndcg@{k}"] == pytest.approx(np.mean(want_n))


def test_mean_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(200):
        ci = metrics.mean_ci(rng.binomial(1, 0.3, 300).astype(float), rng, draws=400).ci95
        covered += ci[0] <= 0.3 <= ci[1]
    assert 0.88 <= covered / 200 <= 0.99
    one = metrics.mean_ci(np.array([0.5]), rng)
    assert one.to_dict() == {"value": 0.5, "n": 1, "ci95": None}


def test_auc_is_scikit_learns_with_ties_and_float32_scores():
    """AUC is our Mann-Whitney statistic, not a wrapper: scikit-learn's threshold curve is its reference."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 50_000)
    for p in (rng.random(50_000), rng.integers(0, 9, 50_000) / 8, rng.random(50_000).astype(np.float32),
              np.full(50_000, 0.3)):
        assert metrics.auc(y, p) == pytest.approx(roc_auc_score(y, p), rel=1e-12, abs=1e-15)
    with_nan = rng.random(50_000)
    with_nan[7] = np.nan
    assert np.isnan(metrics.auc(y, with_nan))
