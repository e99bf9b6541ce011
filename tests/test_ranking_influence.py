"""Ranking influence (ALS, item factors fixed) against implicit's own solve and a brute-force ranking."""
import dataclasses

import numpy as np
import polars as pl
import pytest

from musicrec.families import make_model
from musicrec.families.als import ranking
from musicrec.families.als.ranking import RankingInfluence, sampled_loglik

from conftest import make_set, small_cfg


def ranked(weighting):
    train, valid, test = make_set(2500, 11), make_set(800, 12), make_set(1200, 13)
    plays = np.random.default_rng(1).integers(1, 6, len(train))
    train = dataclasses.replace(train, keys=train.keys.with_columns(pl.Series("plays", plays)))
    cfg = small_cfg()
    cfg["als"]["weighting"] = weighting
    model = make_model("als", cfg, 0).fit(train, valid)
    tu, ts = test.keys["user"].to_numpy(), test.keys["song"].to_numpy()
    relevant = {int(u): np.unique(ts[(tu == u) & (test.y == 1)]) for u in np.unique(tu)}
    relevant = {u: r for u, r in relevant.items() if len(r)}
    user, song = train.keys["user"].to_numpy(), train.keys["song"].to_numpy()
    return RankingInfluence(model, user, song, model.entry_plays(train), relevant, k=10, negatives=50,
                            rng=np.random.default_rng(0)), model


@pytest.mark.parametrize("weighting", ["signed", "log", "bm25", "tfidf"])
def test_downdate_is_implicits_refit_of_the_user(weighting):
    """Each row's removal, downdated, is implicit's recalculate_user on the matrix reweighted without it."""
    ri, model = ranked(weighting)
    u = int(ri.user[0])
    rows, x, without = ri.factors_without(u)
    np.testing.assert_allclose(x, model.user_factors_[u], rtol=0, atol=1e-12 * np.abs(x).max())
    for j, r in enumerate(rows[:6]):
        ref = ri.refit_factor(int(r))
        assert np.abs(without[j] - ref).max() <= 1e-9 * np.abs(ref - x).max()


def brute(ri, u, x, freed=-1):
    """NDCG@10, precision@10 and the sampled log-likelihood of a factor, every song scored."""
    rows = ri.user_rows(u)
    allowed = ri.count[:ri.n_items] > 0
    allowed[ri.song[rows]] = False
    if freed >= 0 and ri.count[freed] > 1:
        allowed[freed] = True
    s = np.where(allowed, ri.Y @ x, -np.inf)
    top = np.argsort(-s, kind="stable")[:10]
    hits = np.isin(top, ri.relevant[u]).astype(float)
    ideal = np.sum(1 / np.log2(np.arange(2, min(len(ri.relevant[u]), 10) + 2)))
    T, S = ri.Y[ri.relevant[u]], ri.Y[ri.neg[u]]
    loglik = (-np.logaddexp(0, -(T @ x)[:, None] + (S @ x)[None, :])).mean()
    return (hits / np.log2(np.arange(2, 12))).sum() / ideal, hits.sum() / 10, loglik


@pytest.mark.parametrize("weighting,candidates", [("signed", 200), ("bm25", 200), ("signed", 10)])
def test_measures_are_a_brute_force_ranking_of_every_song(weighting, candidates, monkeypatch):
    """With 10 candidates (k) most removals cannot rule out an outsider: the songs the bound leaves are
    scored (RankingInfluence._reachable), and the lists must still be those of every song scored."""
    monkeypatch.setattr(ranking, "CANDIDATES", candidates)
    pools = []
    reachable = RankingInfluence._reachable
    monkeypatch.setattr(RankingInfluence, "_reachable", lambda *a: pools.append(reachable(*a)) or pools[-1])
    ri, _ = ranked(weighting)
    out = ri.loo()
    assert (len(pools) > 0) == (candidates < 200)
    for u in sorted(ri.relevant)[:8]:
        rows, x, without = ri.factors_without(u)
        base = brute(ri, u, x)
        for j, r in enumerate(rows):
            if len(rows) == 1:
                continue
            new = brute(ri, u, without[j], int(ri.song[r]))
            np.testing.assert_allclose([out["ndcg"][r], out["precision"][r], out["loglik"][r]],
                                       np.array(new) - np.array(base), atol=1e-12)


def test_sampled_loglik_is_the_mean_over_every_pair_near_and_far():
    """Rows near row 0 take the Taylor series of the change, rows far the exact mean: both within
    TAYLOR_ERROR of the mean log-sigmoid over every (held-out, sampled) pair."""
    rng = np.random.default_rng(4)
    T, S, x = rng.normal(size=(40, 16)), rng.normal(size=(60, 16)), rng.normal(size=16) / 2
    steps = np.array([0.0, 1e-7, 1e-4, 1e-3, 3e-3, 6e-3, 0.05, 1.0])
    X = x + steps[:, None] * rng.normal(size=(len(steps), 16))
    exact = np.array([(-np.logaddexp(0, -(T @ r)[:, None] + (S @ r)[None, :])).mean() for r in X])
    got = sampled_loglik(X, T, S)
    np.testing.assert_allclose(got - got[0], exact - exact[0], rtol=0, atol=ranking.TAYLOR_ERROR + 1e-15)
    D = X - X[0]
    reach = np.abs((D @ T.T)[:, :, None] - (D @ S.T)[:, None, :]).max(axis=(1, 2))
    assert (reach[1:] <= ranking.TAYLOR_RADIUS).sum() >= 4 and (reach > ranking.TAYLOR_RADIUS).sum() >= 1


def test_a_row_the_users_held_out_songs_do_not_depend_on_changes_nothing():
    """A row whose removal leaves the user's factor as it was (a song with a zero item factor)
    changes neither the list nor the log-likelihood."""
    ri, _ = ranked("log")
    u = sorted(ri.relevant)[0]
    rows = ri.user_rows(u)
    ri.Y = ri.Y.copy()
    ri.Y[ri.song[rows[0]]] = 0.0          # the song's factor carries nothing: the row moves nothing
    ri.YtY = ri.Y.T @ ri.Y + ri.model.regularization * np.eye(ri.Y.shape[1])
    rows, x, without = ri.factors_without(u)
    assert np.abs(without[0] - x).max() < 1e-12
    change = ri.user_influence(u)[1]
    assert change["loglik"][0] == pytest.approx(0.0, abs=1e-12) and change["ndcg"][0] == 0.0


def test_a_time_budget_covers_whole_users_in_a_seeded_order():
    """With `seconds`, users go in a seeded order until the time is spent: a covered user has every
    row's value as without a budget, an uncovered user none, and coverage counts them."""
    ri, _ = ranked("signed")
    full = ri.loo()
    some = ri.loo(seconds=0.0, rng=np.random.default_rng(3))     # one batch, then the budget is spent
    cov = ri.coverage
    assert 0 < cov["users"] < cov["of_users"] and cov["seconds_budget"] == 0.0
    done = np.isfinite(some["loglik"])
    assert done.sum() <= cov["rows"] < cov["of_rows"]
    np.testing.assert_array_equal(some["ndcg"][done], full["ndcg"][done])
    users_done = np.unique(ri.user[done])
    assert not np.isin(ri.user[~done & np.isfinite(full["loglik"])], users_done).any()   # whole users only
