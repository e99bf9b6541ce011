"""Every influence estimator against brute-force retraining on small data, and the bookkeeping."""
import dataclasses

import numpy as np
import polars as pl
import pytest
from scipy.stats import pearsonr, spearmanr

from musicrec.influence import ESTIMATORS
from musicrec.influence.losses import auc_gradient, logloss, loss_change, metric_changes
from musicrec.influence.groups import meaningful_groups, random_ablations, summarize_ablations
from musicrec.influence.retrain import Retrainer
from musicrec.influence.validate import (compare, guarded_size, iterative_removal, noisy_label, removal_curves,
                                        rescore)
from musicrec.models import load_model, make_model

from conftest import make_set, small_cfg


@pytest.fixture(scope="module")
def splits():
    return make_set(2500, 11), make_set(800, 12), make_set(1200, 13)


def estimator(name, splits):
    train, valid, test = splits
    model = make_model(name, small_cfg(), 4).fit(train, valid)
    return ESTIMATORS[name](model, train, test)


ROWS = np.array([3, 50, 177, 400, 901, 1333, 2000, 2499])


def test_nb_closed_form_is_exact_retraining(splits):
    est = estimator("nb", splits)
    exact = est.exact(ROWS)
    retrained = est.refit(ROWS)  # GaussianNB's statistics summed again without each row
    scale = np.abs(retrained["logloss"]).max()
    assert np.abs(exact["logloss"] - retrained["logloss"]).max() / scale < 1e-9
    loo = est.loo()["logloss"][ROWS]  # all-rows version: second order in the logit change
    assert np.abs(loo - retrained["logloss"]).max() / scale < 1e-3
    assert np.array_equal(np.sign(loo), np.sign(retrained["logloss"]))


def test_nb_retraining_is_scikit_learns_gaussian_nb_without_the_row(splits):
    from sklearn.naive_bayes import GaussianNB

    est = estimator("nb", splits)
    keep = np.ones(est.n, dtype=bool)
    keep[17] = False
    jll = GaussianNB(var_smoothing=est.vs).fit(est.Z[keep], est.y[keep]).predict_joint_log_proba(est.Zt)
    np.testing.assert_allclose(est.refit_logits(17)[0], jll[:, 1] - jll[:, 0], rtol=1e-9, atol=1e-9)


def test_lr_newton_step_ranks_like_exact_retraining(splits):
    est = estimator("lr", splits)
    rows = np.arange(0, 2500, 125)
    retrained = est.refit(rows)  # scikit-learn refit without the row, polished to the exact optimum
    loo = est.loo()["logloss"][rows]
    assert spearmanr(loo, retrained["logloss"])[0] > 0.98
    assert np.abs(loo - retrained["logloss"]).max() < 0.05 * np.abs(retrained["logloss"]).max()


@pytest.mark.parametrize("name", ["rf", "lgbm", "als"])
def test_fixed_structure_estimate_equals_library_refit(name, splits):
    est = estimator(name, splits)
    exact = est.exact(ROWS)
    refit = est.refit(ROWS)  # the removal written into the library's own model, which then predicts
    assert np.abs(exact["logloss"] - refit["logloss"]).max() <= 1e-9 * np.abs(refit["logloss"]).max()
    loo = est.loo()
    assert pearsonr(loo["logloss"][ROWS], exact["logloss"])[0] > 0.95  # first order vs exact
    assert np.isfinite(loo["auc"]).all()


@pytest.mark.parametrize("name", ["nb", "lr", "rf", "lgbm", "als"])
def test_self_influence_matches_the_refit_without_the_row(name, splits):
    """loo()["self"]: the row's own log-loss change; exact for nb, fixed-structure exact for the
    trees and ALS, one Newton step for lr."""
    est = estimator(name, splits)
    estimate = est.loo()["self"]
    refit = est.refit_self(ROWS)
    assert (refit > 0).all()        # each of these rows is fitted better by the model that saw it
    if name == "lr":
        assert spearmanr(estimate[ROWS], refit)[0] > 0.98
        assert np.abs(estimate[ROWS] - refit).max() < 0.01 * np.abs(refit).max()
    else:
        assert np.abs(estimate[ROWS] - refit).max() <= 1e-9 * np.abs(refit).max()


def test_retrainer_reports_the_removed_rows_own_loss(splits):
    train, valid, test = splits
    est = estimator("nb", splits)
    r = Retrainer("nb", small_cfg(), train, valid, test)
    base = r.logits(4)
    got = r.without(4, np.array([50]), base, own=True)["self"]
    # scikit-learn's GaussianNB on the float32 design vs the float64 closed form
    assert got == pytest.approx(est.refit_self(np.array([50]))[0], rel=1e-3)


@pytest.mark.parametrize("name", ["lr", "lgbm"])
def test_self_influence_finds_flipped_labels(name, splits):
    train, valid, test = splits
    rng = np.random.default_rng(5)
    flipped = np.zeros(len(train), dtype=bool)
    flipped[rng.choice(len(train), len(train) // 10, replace=False)] = True
    noisy = dataclasses.replace(train, y=np.where(flipped, 1 - train.y, train.y).astype(train.y.dtype))
    model = make_model(name, small_cfg(), 4).fit(noisy, valid)
    loo = ESTIMATORS[name](model, noisy, test).loo()
    assert noisy_label(-loo["own_loss"], flipped)["top10_lift"] > 2.5
    assert noisy_label(-loo["self"], flipped)["top10_lift"] > 2.0


def test_lgbm_reproduces_lightgbm_leaf_values(splits):
    est = estimator("lgbm", splits)
    assert est.leaf_value_error < 1e-6  # LightGBM keeps gradients in float32


@pytest.mark.parametrize("name", ["nb", "lr", "rf", "lgbm", "als"])
def test_a_saved_and_loaded_model_gives_the_same_influence(name, splits, tmp_path):
    """Stage 06 works from the files of stage 04: every setting the estimator reads must survive."""
    train, valid, test = splits
    model = make_model(name, small_cfg(), 4).fit(train, valid)
    model.save(tmp_path)
    again = ESTIMATORS[name](load_model(name, tmp_path), train, test)
    before = ESTIMATORS[name](model, train, test).loo()
    after = again.loo()
    for k in before:
        np.testing.assert_allclose(after[k], before[k], rtol=1e-9, atol=1e-15)
    if name == "lgbm":
        assert again.leaf_value_error < 1e-6


def test_als_downdate_is_exact_for_every_row_of_a_user(splits):
    est = estimator("als", splits)
    user = int(est.u[0])
    rows = np.flatnonzero(est.u == user)
    loo = est.loo()["logloss"][rows]
    refit = est.refit(rows)["logloss"]
    assert np.abs(loo - refit).max() <= 1e-9 * np.abs(refit).max()


def test_rf_data_oob_is_a_probability_of_the_own_label(splits):
    est = estimator("rf", splits)
    est.loo()
    v = est.data_oob[np.isfinite(est.data_oob)]
    assert len(v) > 0.9 * len(est.data_oob) and v.min() >= 0 and v.max() <= 1


# --- metric helpers ------------------------------------------------------------------------------
def test_loss_change_matches_the_difference_of_losses():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500).astype(float)
    f = rng.normal(0, 3, 500)
    d = rng.normal(0, 1e-3, (4, 500))
    direct = np.array([logloss(y, f + di) - logloss(y, f) for di in d])
    assert np.allclose(loss_change(y, f, d).mean(axis=1), direct, rtol=1e-6)
    assert np.allclose(metric_changes(y, f, d)["logloss"], direct, rtol=1e-6)


def test_loss_change_of_extreme_logits_is_finite():
    """Naive Bayes logits reach hundreds; a removal can move them past where exp overflows."""
    y = np.array([1.0, 0.0, 1.0, 0.0])
    f = np.array([800.0, -800.0, -50.0, 3.0])
    d = np.array([-800.5, 800.5, 100.0, -1e-9])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        out = loss_change(y, f, d)
    direct = np.minimum(np.logaddexp(0, -np.array([1, -1, 1, -1]) * (f + d)), 34.538776394910684)
    old = np.minimum(np.logaddexp(0, -np.array([1, -1, 1, -1]) * f), 34.538776394910684)
    np.testing.assert_allclose(out[:3], (direct - old)[:3], rtol=1e-12)
    assert abs(out[3] - (-1e-9 * 1 / (1 + np.exp(-3.0)))) < 1e-15


def test_auc_gradient_predicts_small_auc_changes():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 4000).astype(float)
    f = rng.normal(0, 1, 4000) + y
    g = auc_gradient(y, f)
    assert (g[y == 1] >= 0).all() and (g[y == 0] <= 0).all() and np.abs(g).max() > 0
    d = 0.05 * rng.normal(size=(30, 4000))
    exact = metric_changes(y, f, d)["auc"]
    assert pearsonr(d @ g, exact)[0] > 0.8


# --- validation and group bookkeeping ------------------------------------------------------------
class RecordingRetrainer(Retrainer):
    """Our Retrainer with the model fit replaced by a record of which rows were left out."""

    def __init__(self, n):
        self.train = np.zeros(n)
        self.removed = []
        self.fits = 0

    def logits(self, seed, weights=None):
        return np.zeros(3)

    def without(self, seed, removed, base):
        self.removed.append(np.sort(removed))
        return {"logloss": -float(len(removed)), "auc": 0.0}


class KeepingRetrainer(Retrainer):
    """The real Retrainer, keeping a copy of every removal mask it was asked to fit."""

    masks: list

    def fit_without(self, seed, removed, base):
        self.masks = getattr(self, "masks", []) + [np.asarray(removed).copy()]
        return super().fit_without(seed, removed, base)


@pytest.mark.parametrize("name", ["lr", "rf"])
def test_iterative_removal_re_estimates_after_each_step(name, splits):
    train, valid, test = splits
    est = estimator(name, splits)
    scores = est.loo()["logloss"]
    r = KeepingRetrainer(name, small_cfg(), train, valid, test)
    out = iterative_removal(est, r, 4, scores, [0.02, 0.05, 0.1], 0.01, until=0.05)
    assert list(out) == ["0.02", "0.05"] and [c["rows"] for c in out.values()] == [50, 125]  # 10% > until
    sizes = [int(m.sum()) for m in r.masks]
    assert out["0.05"]["steps"] == len(sizes) and sizes[-1] == 125
    assert all(0 < b - a <= 25 for a, b in zip(sizes, sizes[1:]))     # at most 1% per retrain
    assert all((a <= b).all() for a, b in zip(r.masks, r.masks[1:]))   # removed rows stay removed
    first = np.argsort(scores, kind="stable")
    assert set(np.flatnonzero(r.masks[0])) == set(first[:sizes[0]])
    # later steps follow the re-estimated influence, not the first ranking
    assert set(np.flatnonzero(r.masks[-1])) != set(first[:125])
    if name == "rf":   # no removal model for sets: every step is a full 1%
        assert sizes == [25, 50, 75, 100, 125]
        # the forest is re-estimated over all rows (its bootstrap draws index them); removed rows drop out
        model = r._fit(4, (~r.masks[0]).astype(float), init=r.base_model(4))
        full, fresh, rows = rescore(est, model, r.masks[0])
        assert np.isinf(full[r.masks[0]]).all() and np.isfinite(full[~r.masks[0]]).all()
        assert len(rows) == len(train) and len(fresh.train) == len(train)


@pytest.mark.parametrize("name", ["nb", "lr"])
def test_group_removal_model_against_retraining(name, splits):
    """The removal model for sets: exact for nb; for lr one Newton step, far closer to retraining
    than the sum of the rows' own estimates once the rows pull the same way."""
    est = estimator(name, splits)
    loo = est.loo()["logloss"]
    group = np.argsort(loo, kind="stable")[:100]       # the 4% most harmful, all pulling one way
    keep = np.setdiff1d(np.arange(len(loo)), group)
    if name == "nb":
        from sklearn.naive_bayes import GaussianNB
        X = est.Z[keep]
        nb = GaussianNB(var_smoothing=est.vs).fit(X, est.y[keep])
        jll = nb.predict_joint_log_proba(est.Zt)
        f = jll[:, 1] - jll[:, 0]
    else:
        f = est.Xt @ est.polish(est.theta, est.y, np.isin(np.arange(len(loo)), keep).astype(float))
    exact = float(loss_change(est.y_test, est.f_test, f - est.f_test).mean())
    predicted = est.group_logloss(group)
    if name == "nb":
        assert abs(predicted - exact) <= 1e-9 * abs(exact)
    else:
        assert abs(predicted - exact) < 0.2 * abs(loo[group].sum() - exact)


class SetModel:
    """A removal model for sets whose predicted log-loss change depends only on the set's size."""

    def __init__(self, change):
        self.change = change

    def group_logloss(self, rows):
        return self.change(len(rows))


@pytest.mark.parametrize("change, expected", [
    (lambda k: -0.01 * k, 64),                          # the set helps: the whole step
    (lambda k: -0.01 * k if k <= 10 else 5.0, 8),      # past 10 rows the model collapses: halve to 8
    (lambda k: 0.001 * k, 8),                           # every set hurts: at most MAX_HALVINGS halvings
    (lambda k: None, 64),                               # no removal model for sets
])
def test_guarded_step_halves_while_the_set_is_predicted_to_hurt(change, expected):
    order = np.arange(100)[::-1]
    assert guarded_size(SetModel(change), np.arange(100), order, 64) == expected


def test_guarded_step_on_naive_bayes(splits):
    est = estimator("nb", splits)
    order = np.argsort(est.loo()["logloss"], kind="stable")
    k = guarded_size(est, np.arange(len(order)), order, 64)
    assert k == 64 or est.group_logloss(order[:2 * k]) > 0   # shrunk only below a set predicted to hurt
    assert guarded_size(estimator("rf", splits), np.arange(len(order)), order, 64) == 64   # no set model


def test_compare_by_hand():
    c = compare(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 5.0]))
    assert c["spearman"] == 1.0 and c["max_abs_err"] == 1.0 and c["max_rel_err"] == 0.2
    assert c["top10_overlap"] == 1.0 and c["n"] == 4


def test_removal_curves_remove_the_right_rows():
    scores = np.array([0.5, -3.0, 2.0, -1.0, 0.0, 4.0, -2.0, 1.0, 3.0, -0.5])
    r = RecordingRetrainer(10)
    out = removal_curves(r, 0, scores, [0.2, 0.3], np.random.default_rng(0))
    harmful20, helpful20, random20, harmful30 = r.removed[0], r.removed[1], r.removed[2], r.removed[3]
    assert harmful20.tolist() == [1, 6] and helpful20.tolist() == [5, 8] and len(random20) == 2
    assert harmful30.tolist() == [1, 3, 6]
    assert out["harmful"]["0.2"]["rows"] == 2


def test_noisy_label_shares_by_hand():
    scores = np.arange(20, dtype=float)          # row 0 most harmful
    flipped = np.zeros(20, dtype=bool)
    flipped[[0, 1, 15]] = True
    out = noisy_label(scores, flipped)
    assert out["top5_share"] == 1.0 and out["top10_share"] == 1.0 and out["random_share"] == 0.15


def test_random_ablations_sizes_and_prediction():
    loo = {"logloss": np.arange(100, dtype=float), "auc": np.zeros(100)}
    r = RecordingRetrainer(100)
    runs = random_ablations(r, 0, [0.1, 0.5], 2, loo, np.random.default_rng(3))
    assert [x["rows"] for x in runs] == [10, 10, 50, 50]
    for run, removed in zip(runs, r.removed):
        assert len(np.unique(removed)) == run["rows"]
        assert run["predicted_logloss"] == loo["logloss"][removed].sum()
    summary = summarize_ablations(runs)
    assert [row["fraction"] for row in summary["by_fraction"]] == [0.1, 0.5]


def test_meaningful_groups_by_hand():
    user = np.repeat(np.arange(100), np.arange(1, 101))          # user u has u + 1 rows
    n = len(user)
    rng = np.random.default_rng(0)
    rows = pl.DataFrame({"user": user, "song": rng.integers(0, 40, n), "source_system_tab": rng.integers(0, 3, n),
                         "genre": rng.integers(0, 8, n), "language": rng.integers(0, 2, n),
                         "bd": rng.integers(15, 60, n), "bd_missing": (rng.random(n) < 0.3).astype(np.int8)})
    cfg = {"power_user_share": 0.01, "top_genres": 3, "deciles": 10}
    groups = meaningful_groups(rows, {"source_system_tab": {0: "my library", 1: "discover", 2: "radio"}}, cfg)
    by_kind = {}
    for kind, name, idx in groups:
        by_kind.setdefault(kind, []).append((name, idx))
    (name, power), = by_kind["power_users"]
    assert np.unique(user[power]).tolist() == [99] and len(power) == 100
    assert [g for g, _ in by_kind["source_system_tab"]] == ["my library", "discover", "radio"]
    assert len(by_kind["genre"]) == 3
    for kind in ("user_activity_decile", "age_band", "source_system_tab", "language"):
        idx = np.concatenate([i for _, i in by_kind[kind]])
        assert np.array_equal(np.sort(idx), np.arange(n)), kind  # a partition of the rows
    top = dict(by_kind["user_activity_decile"])["decile 10"]
    assert np.unique(user[top]).tolist() == list(range(90, 100))


def test_lgbm_chunked_pass_equals_cached(splits, monkeypatch):
    import musicrec.influence.lgbm as lg

    cached = estimator("lgbm", splits)
    monkeypatch.setattr(lg, "CACHE_BYTES", 0)
    monkeypatch.setattr(lg, "CHUNK", 700)
    chunked = estimator("lgbm", splits)
    assert not chunked.cache and cached.cache
    np.testing.assert_allclose(chunked.loo()["logloss"], cached.loo()["logloss"], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(chunked.refit(ROWS[:3])["logloss"], cached.refit(ROWS[:3])["logloss"], rtol=1e-9)


@pytest.mark.parametrize("k", [3, 6])
def test_lgbm_leaf_regularisation_of_categorical_splits(k):
    """cat_l2 applies to many-vs-many categorical splits only, not to one-hot ones (few categories)."""
    import lightgbm as lgb
    from musicrec.influence.lgbm import _categorical_leaves, _onehot_features

    rng = np.random.default_rng(k)
    n = 20_000
    c = rng.integers(0, k, n).astype(np.float64)
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.9 * (c == 1) - 0.6 * (c == 2) + 0.3 * (c == 0))))).astype(float)
    params = {"objective": "binary", "num_leaves": 6, "learning_rate": 0.3, "lambda_l2": 1.0, "cat_l2": 10.0,
              "min_data_in_leaf": 20, "verbose": -1, "num_threads": 1}
    X = np.c_[c, rng.normal(size=n)]
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=[0]), num_boost_round=1)
    dump = booster.dump_model()
    tree = dump["tree_info"][0]
    lam = 1.0 + 10.0 * _categorical_leaves(tree["tree_structure"], tree["num_leaves"], _onehot_features(dump))
    assert (0 in _onehot_features(dump)) == (k <= 3)
    init = np.log(y.mean() / (1 - y.mean()))
    p = 1 / (1 + np.exp(-init))
    leaf = booster.predict(X, pred_leaf=True).reshape(-1)
    G = np.bincount(leaf, p - y, minlength=tree["num_leaves"])
    H = np.bincount(leaf, np.full(n, p * (1 - p)), minlength=tree["num_leaves"])
    stored = np.array([booster.get_leaf_output(0, l) for l in range(tree["num_leaves"])]) - init
    np.testing.assert_allclose(-0.3 * G / (H + lam), stored, rtol=1e-5)
