"""Held-out pruning by users: every training user's predicted effect on the other test users' lists,
held to a brute-force ranking of every song, and the choice never touching the scored half's users."""
from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from musicrec import families, features, predict, preprocess, split, train
from musicrec.families.trained import load_trained
from musicrec.influence import stage as influence
from musicrec.influence.pruning import HeldOutLoglik
from musicrec.influence.ranking import relevant_by_user
from musicrec.manifest import StageRun
from musicrec.models.base import load_feature_set
from musicrec.report import write_report
from musicrec.rng import stream

from conftest import make_cfg
from test_hetrec import write_hetrec


def _ndcg(model, user: int, played: np.ndarray, relevant: np.ndarray, k: int = 10) -> float:
    """NDCG@k of the user's list with every song scored: songs unseen in the kept rows and songs the
    user played there left out."""
    allowed = model.song_count_ > 0
    allowed[played] = False
    s = np.where(allowed, model.item_factors_ @ model.user_factors_[user], -np.inf)
    top = np.argsort(-s, kind="stable")[:k]
    hits = np.isin(top, relevant).astype(float)
    ideal = np.sum(1 / np.log2(np.arange(2, min(len(relevant), k) + 2)))
    return float((hits / np.log2(np.arange(2, k + 2))).sum() / ideal)


def _loglik(model, user: int, relevant: np.ndarray, sampled: np.ndarray) -> float:
    """Mean of log sigmoid(x.t - x.s) over every held-out song t the model knows and sampled song s."""
    x, Y = model.user_factors_[user], model.item_factors_
    t = relevant[relevant < len(Y)]
    return float(np.mean([-np.logaddexp(0.0, -(x @ Y[a] - x @ Y[b])) for a in t for b in sampled]))


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prune")
    folder = write_hetrec(tmp / "het", np.random.default_rng(3))
    cfg = make_cfg(tmp / "data", None, "data.source=listens", "data.listens.format=hetrec",
                   f"data.listens.path={folder}", "train.als.weighting=bm25", "train.als.alpha=0.01",
                   "train.als.factors=8", "influence.groups.enabled=false", "influence.ranking.users=0",
                   "influence.ranking.prune_by=users", "influence.ranking.prune_fraction=0.1",
                   "influence.ranking.prune_repeats=2")
    for stage in (preprocess, split, features, train, predict):
        stage.run(cfg)
    report = influence.run(cfg)
    return cfg, report, tmp / "data"


def test_every_user_is_predicted_and_the_choice_is_held_out(pruned):
    cfg, report, data = pruned
    effects = pl.read_parquet(data / "06_influence" / "ranking_users.parquet")
    train_rows = pl.read_parquet(data / "02_split" / "train.parquet")
    assert effects["user"].to_list() == sorted(train_rows["user"].unique().to_list())
    assert effects["rows"].sum() == train_rows.height
    p = report.ranking["als"]["pruning"]
    assert p["by"] == "users"
    for h in ("A", "B"):
        removed = effects.filter(pl.col(f"removed_scored_on_{h}"))
        candidates = effects.filter(pl.col("test_half") != h).height
        assert (removed["test_half"] != h).all()            # never a user the pruning is scored on
        assert removed.height == p[f"scored_on_{h}"]["users_removed"] == max(1, round(0.1 * candidates))
        assert removed["rows"].sum() == p[f"scored_on_{h}"]["rows_removed"]
        # the users with the largest predicted log-likelihood gain on the other half
        other = effects.filter(pl.col("test_half") != h)[f"predicted_loglik_{'B' if h == 'A' else 'A'}"]
        assert removed[f"predicted_loglik_{'B' if h == 'A' else 'A'}"].min() >= other.sort(descending=True)[removed.height - 1]
        assert p[f"scored_on_{h}"]["users_scored"] == report.ranking["als"]["users"][h]
        assert p[f"scored_on_{h}"]["harmful_minus_random"]["ci95"] is not None
    html = write_report(cfg).read_text()
    assert "held-out pruning by users" in html and f"every one of the {effects.height:,} training users" in html
    worst = effects.with_columns(((pl.col("predicted_ndcg_A") + pl.col("predicted_ndcg_B")) / 2).alias("m")).sort(
        "m", descending=True, nulls_last=True)["user_id"][0]
    assert f"<td class='num'>{worst}</td>" in html


def test_a_users_predicted_effect_is_a_brute_force_ranking(pruned):
    """The set model's lists without a user, every song scored, NDCG averaged over each half's other
    test users: what ranking_users.parquet holds for a test user of each half and a user of neither."""
    cfg, report, data = pruned
    effects = pl.read_parquet(data / "06_influence" / "ranking_users.parquet")
    st = StageRun("06_influence", cfg, force=True)
    spec = json.loads(st.input("03_features", "features.json").read_text())
    sets = {n: load_feature_set(st.input("03_features", f"features_{n}.parquet"), spec) for n in ("train", "valid", "test")}
    model = load_trained(st, ["als"])[1]["als"]
    set_model = families.get("als").ranking_set_models(model, sets["train"], None, cfg["influence"]["groups"])
    relevant = relevant_by_user(sets["test"], False)
    est = families.get("als").ranking_influence(model, sets["train"], relevant, cfg["influence"]["ranking"],
                                                stream(cfg, "06_influence", "ranking_negatives", "als"))
    users = np.array(sorted(relevant))
    pairs = HeldOutLoglik(users, relevant, est.neg, model.shape_[1], stream(cfg, "06_influence", "ranking_pairs", "als"))
    held = dict(zip(users.tolist(), pairs.held))
    assert all(len(held[u]) == min(20, len(relevant[u])) and np.isin(held[u], relevant[u]).all() for u in users)
    user, song = sets["train"].keys["user"].to_numpy(), sets["train"].keys["song"].to_numpy()
    halves = {h: effects.filter(pl.col("test_half") == h)["user"].to_list() for h in ("A", "B")}
    base = set_model(np.ones(len(user)))
    picks = [effects.filter(pl.col("test_half") == h).row(0, named=True) for h in ("A", "B")]
    picks += effects.filter(pl.col("test_half") == "").head(1).rows(named=True)
    assert len(picks) >= 2
    for row in picks:
        keep = user != row["user"]
        without = set_model(keep.astype(float))
        for h, members in halves.items():
            d = [_ndcg(without, t, song[keep & (user == t)], relevant[t]) - _ndcg(base, t, song[user == t], relevant[t])
                 for t in members if t != row["user"]]
            assert row[f"predicted_ndcg_{h}"] == pytest.approx(float(np.mean(d)), abs=1e-12)
            d = [_loglik(without, t, held[t], est.neg[t][:20]) - _loglik(base, t, held[t], est.neg[t][:20])
                 for t in members if t != row["user"]]
            assert row[f"predicted_loglik_{h}"] == pytest.approx(float(np.mean(d)), rel=1e-9, abs=1e-15)


def test_held_out_loglik_is_the_mean_over_its_pairs():
    """Users with more held-out songs than `pairs` get a seeded subset; each user's value is the mean of
    log sigmoid(x.t - x.s) over their pairs, users in blocks or not."""
    from types import SimpleNamespace

    rng = np.random.default_rng(4)
    model = SimpleNamespace(user_factors_=rng.normal(size=(30, 4)), item_factors_=rng.normal(size=(50, 4)),
                            user_count_=np.where(np.arange(30) == 4, 0.0, 1.0))
    users = np.r_[np.arange(0, 30, 2), 31]       # user 4 lost every row, user 31 is not in train: no value
    relevant = {int(u): np.sort(rng.choice(55, rng.integers(1, 12), replace=False)) for u in users}
    sampled = {int(u): rng.choice(50, 7, replace=False) for u in users}
    ll = HeldOutLoglik(users, relevant, sampled, 50, np.random.default_rng(0), pairs=3)
    ll.BLOCK = 4
    got = ll(model)
    for i, u in enumerate(users.tolist()):
        known = relevant[u][relevant[u] < 50]
        assert len(ll.held[i]) == min(3, len(known)) and np.isin(ll.held[i], known).all()
        want = _loglik(model, u, ll.held[i], sampled[u][:3]) if len(known) and u < 30 and u != 4 else np.nan
        assert got[i] == pytest.approx(want, rel=1e-12, nan_ok=True)
