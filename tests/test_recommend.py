"""Popularity baseline and ALS top-k lists against plain-Python references."""
from __future__ import annotations

import numpy as np
import pytest

from musicrec.families.als.model import ALSModel
from musicrec.families.als.recommend import recommend
from musicrec.recommend import popularity_scores, recommend_popular, train_plays


def _train(rng, n_users=30, n_songs=25, n_rows=200):
    return rng.integers(0, n_users, n_rows), rng.integers(0, n_songs - 3, n_rows), rng.integers(1, 5, n_rows)


@pytest.mark.parametrize("method", ["listeners", "damped"])
def test_popularity_lists_match_a_plain_reference(method):
    rng = np.random.default_rng(3)
    n_users, n_songs, k = 30, 25, 6
    user, song, plays = _train(rng, n_users, n_songs)
    beta = 2.5
    listeners = {s: len({u for u, x in zip(user, song) if x == s}) for s in range(n_songs)}
    total = {s: sum(p for x, p in zip(song, plays) if x == s) for s in range(n_songs)}
    want_score = {s: listeners[s] if method == "listeners" else total[s] / (listeners[s] + beta)
                  for s in range(n_songs)}
    scores = popularity_scores(user, song, plays, n_songs, method, beta)
    assert scores == pytest.approx([want_score[s] for s in range(n_songs)])
    users = np.arange(n_users)
    got, got_scores = recommend_popular(scores, users, k, train_plays(user, song, (n_users, n_songs)))
    for u in users:
        mine = {x for v, x in zip(user, song) if v == u}
        ranked = sorted((s for s in range(n_songs) if listeners[s] > 0 and s not in mine),
                        key=lambda s: (-want_score[s], s))[:k]
        assert got[u][got[u] >= 0].tolist() == ranked
        assert got_scores[u][:len(ranked)] == pytest.approx([want_score[s] for s in ranked])


def test_als_lists_are_the_best_unplayed_dot_products():
    rng = np.random.default_rng(4)
    n_users, n_songs, k = 12, 20, 5
    user, song, _ = _train(rng, n_users, n_songs, 80)
    model = ALSModel(factors=3)
    model.shape_ = (n_users, n_songs)
    model.user_factors_ = rng.normal(size=(n_users, 3))
    model.item_factors_ = rng.normal(size=(n_songs, 3))
    model.user_count_ = np.bincount(user, minlength=n_users).astype(float)
    model.song_count_ = np.bincount(song, minlength=n_songs).astype(float)
    got, _ = recommend(model, np.arange(n_users), k, train_plays(user, song, (n_users, n_songs)))
    for u in range(n_users):
        if model.user_count_[u] == 0:
            continue
        mine = {x for v, x in zip(user, song) if v == u}
        cand = [s for s in range(n_songs) if model.song_count_[s] > 0 and s not in mine]
        want = sorted(cand, key=lambda s: -model.user_factors_[u] @ model.item_factors_[s])[:k]
        assert got[u][got[u] >= 0].tolist() == want


def test_confidence_weightings_match_their_formulas():
    from musicrec.families.als.model import confidence_matrix

    rng = np.random.default_rng(6)
    n_users, n_songs = 15, 12
    user, song, plays = _train(rng, n_users, n_songs, 90)
    counts = np.zeros((n_users, n_songs))
    for u, s, p in zip(user, song, plays):
        counts[u, s] += p
    log_m = confidence_matrix(user, song, plays, (n_users, n_songs), "log").toarray()
    assert log_m == pytest.approx(np.log1p(counts))
    k1, b = 50.0, 0.6
    # Okapi BM25 as implicit defines it: idf = log N - log(1 + listeners), length = row sum / mean row sum
    idf = np.log(n_users) - np.log1p((counts > 0).sum(axis=0))
    norm = (1 - b) + b * counts.sum(axis=1) / counts.sum(axis=1).mean()
    want = np.where(counts > 0, counts * (k1 + 1) / (k1 * norm[:, None] + counts) * idf[None, :], 0.0)
    got = confidence_matrix(user, song, plays, (n_users, n_songs), "bm25", k1, b).toarray()
    assert got == pytest.approx(want)


def test_similar_songs_are_the_best_cosines():
    from musicrec.families.als.recommend import similar_songs

    rng = np.random.default_rng(8)
    model = ALSModel(factors=4)
    model.item_factors_ = rng.normal(size=(30, 4))
    model.song_count_ = np.ones(30)
    model.song_count_[[3, 7]] = 0  # unseen in train: never similar
    unit = model.item_factors_ / np.linalg.norm(model.item_factors_, axis=1, keepdims=True)
    songs = np.array([0, 5, 12])
    ids, cos = similar_songs(model, songs, 5)
    for row, s in enumerate(songs):
        cand = [j for j in range(30) if j != s and j not in (3, 7)]
        want = sorted(cand, key=lambda j: -unit[s] @ unit[j])[:5]
        assert ids[row].tolist() == want
        assert cos[row] == pytest.approx([unit[s] @ unit[j] for j in want], abs=1e-5)


def _implicit_top_k(user_factors, item_factors, k, plays, filter_items):
    """implicit's own filtered batch recommend of factors set by hand, as (ids, scores) with -1 / NaN
    where it had fewer than k items left (it pads with item 0 and scores a filtered item -FLT_MAX)."""
    from implicit.cpu.als import AlternatingLeastSquares

    k = min(k, item_factors.shape[0])
    als = AlternatingLeastSquares(factors=item_factors.shape[1], num_threads=1)
    als.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
    als.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    ids, sc = als.recommend(np.arange(len(user_factors)), plays, N=k, filter_already_liked_items=True,
                            filter_items=filter_items if len(filter_items) else None)
    ids, sc = np.asarray(ids, dtype=np.int64), np.asarray(sc, dtype=np.float64)
    gone = sc <= -0.5 * float(np.finfo(np.float32).max)
    return np.where(gone, -1, ids), np.where(gone, np.nan, sc)


def _heavy_log(rng, n_users, n_songs):
    """Plays with one user who played all but a few songs (a list that runs short)."""
    user = np.concatenate([rng.integers(0, n_users, 3000), np.zeros(280, dtype=np.int64)])
    song = np.concatenate([rng.zipf(1.3, 3000) % (n_songs - 20), np.arange(280)])
    return user, song


@pytest.mark.parametrize("threads", [1, 2])
def test_factor_lists_equal_implicits_recommend(threads):
    from musicrec.recommend import top_k_by_factors

    rng = np.random.default_rng(12)
    n_users, n_songs, k = 70, 300, 25
    user, song = _heavy_log(rng, n_users, n_songs)
    plays = train_plays(user, song, (n_users, n_songs))
    uf, itf = rng.normal(size=(n_users, 8)), rng.normal(size=(n_songs, 8))
    banned = np.flatnonzero(np.bincount(song, minlength=n_songs) == 0).astype(np.int32)
    got_ids, got_sc = top_k_by_factors(uf, itf, k, plays, banned, threads)
    want_ids, want_sc = _implicit_top_k(uf, itf, k, plays, banned)
    assert (want_ids[0] == -1).any()     # the heavy user's list runs short
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_allclose(got_sc, want_sc, rtol=1e-6)


def test_popularity_lists_are_implicits_filtered_top_k():
    """The shared-order search against implicit's own filtered recommend of the one-factor model whose
    item factor is the song's rank: heavy users, unplayed songs, ties in the scores, lists longer
    than what a user has left."""
    rng = np.random.default_rng(11)
    n_users, n_songs, k = 60, 300, 40
    user, song = _heavy_log(rng, n_users, n_songs)      # user 0 played 280
    scores = popularity_scores(user, song, np.ones(len(user)), n_songs, "listeners", 0.0)
    plays = train_plays(user, song, (n_users, n_songs))
    users = rng.permutation(n_users)[:45]
    got, got_scores = recommend_popular(scores, users, k, plays)
    order = np.lexsort((np.arange(n_songs), -scores))
    rank = np.empty(n_songs)
    rank[order] = n_songs - np.arange(n_songs)
    want, _ = _implicit_top_k(np.ones((len(users), 1)), rank[:, None], k, plays[users].tocsr(),
                              np.flatnonzero(scores <= 0).astype(np.int32))
    assert (got == -1).any() and (got >= 0).mean() > 0.5      # some lists run short, most do not
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_scores[got >= 0], scores[want[want >= 0]])
