"""Set-removal predictors: the removal of a whole group of rows, per family, against references."""
import copy

import numpy as np
import pytest
from scipy.special import expit

from musicrec import families
from musicrec.families.lgbm.replay import leaf_value

from conftest import estimator, small_cfg

GROUP = np.arange(0, 2500, 7)          # every 7th training row


@pytest.mark.parametrize("name", ["nb", "lr", "rf", "lgbm", "als"])
def test_an_empty_group_gives_back_the_trained_model_exactly(name, splits):
    est = estimator(name, splits)
    est.prepare_sets(splits[1], {"replay_rows": None, "als_sweeps": 1})
    assert np.array_equal(est.group_logits(np.array([], dtype=np.int64)), est.f_test)


@pytest.mark.parametrize("name", ["nb", "lr", "rf"])
def test_a_one_row_group_is_that_rows_leave_one_out(name, splits):
    """nb: both exact; lr: the set's Newton step with the Hessian downdated by one row is the
    leverage-corrected step (Sherman-Morrison); rf: the same leaf shares, recomputed."""
    est = estimator(name, splits)
    for row in (3, 901, 2499):
        single = est.f_test + est.logit_changes(np.array([row]))[0]
        change = single - est.f_test
        np.testing.assert_allclose(est.group_logits(np.array([row])) - est.f_test, change,
                                   rtol=1e-7, atol=1e-9 * np.abs(change).max())


def test_naive_bayes_set_is_gaussian_nb_refitted_without_it(splits):
    from sklearn.naive_bayes import GaussianNB

    est = estimator("nb", splits)
    keep = np.setdiff1d(np.arange(est.n), GROUP)
    jll = (GaussianNB(var_smoothing=est.vs).fit(est.Z[keep].astype(np.float64), est.y[keep])
           .predict_joint_log_proba(est.Zt.astype(np.float64)))
    ref = jll[:, 1] - jll[:, 0]
    np.testing.assert_allclose(est.group_logits(GROUP), ref, rtol=0, atol=1e-9 * np.abs(ref - est.f_test).max())


def test_forest_set_is_the_leaf_shares_written_into_scikit_learns_trees(splits):
    """Every tree copied, the leaves' class weights recomputed without the group's bootstrap counts,
    and scikit-learn's own predict_proba of the rewritten forest."""
    train, _, test = splits
    est = estimator("rf", splits)
    model = copy.copy(est.model)
    model.trees_ = []
    for t, tree in enumerate(est.trees):
        tree = copy.deepcopy(tree)
        counts = est.model.bootstrap_counts(t, len(est.X))
        if tree.n_classes_ == 2:
            leaf = tree.apply(est.X[GROUP])
            W = tree.tree_.weighted_n_node_samples.copy()
            W1 = tree.tree_.value[:, 0, 1] * W
            w = np.bincount(leaf, counts[GROUP], minlength=len(W))
            w1 = np.bincount(leaf, counts[GROUP] * est.y[GROUP], minlength=len(W))
            left = W - w
            share = np.where(left > 0, (W1 - w1) / np.where(left > 0, left, 1), W1 / W)
            tree.tree_.value[:, 0, 1], tree.tree_.value[:, 0, 0] = share, 1 - share
        model.trees_.append(tree)
    p = np.clip(model.predict_proba(test)[:, 1], 1e-15, 1 - 1e-15)
    np.testing.assert_allclose(est.group_logits(GROUP), np.log(p / (1 - p)), rtol=1e-9, atol=1e-12)


def test_lightgbm_replay_with_nothing_removed_is_lightgbms_leaves(splits):
    """LightGBM's leaf formula on its float32 gradients and hessians gives its stored values."""
    assert estimator("lgbm", splits).leaf_value_error < 1e-9


def plain_replay(est, removed: np.ndarray) -> np.ndarray:
    """The boosting sequence replayed the plain way, every kept row's score tree by tree."""
    keep = np.setdiff1d(np.arange(len(est.y)), removed)
    y, leaves = est.y[keep], est.leaf_rows(keep)
    init = np.log(y.mean() / (1 - y.mean()))
    score, f = np.full(len(keep), init), np.zeros(len(est.f_test))
    for t in range(est.T):
        p = expit(score)
        g, h = (p - y).astype(np.float32), (p * (1 - p)).astype(np.float32)
        leaf = leaves[:, t].astype(np.intp)
        n = len(est.values[t])
        v = leaf_value(np.bincount(leaf, g, n), np.bincount(leaf, h, n), est.lam[t], est.l1, est.shrink[t])
        if t == 0:                 # tree 0's values carry the init score
            v = v + init
            score = v[leaf]
        else:
            score += v[leaf]
        f += v[est.leaves_test[:, t]]
    return f


def test_lightgbm_set_replay_is_the_plain_replay(splits):
    est = estimator("lgbm", splits)
    est.prepare_sets(None, {"replay_rows": None, "als_sweeps": 1})
    got = est.group_logits(GROUP)
    ref = plain_replay(est, GROUP) - plain_replay(est, np.array([], dtype=np.int64)) + est.f_test
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9 * np.abs(ref - est.f_test).max())
    # a sample of the rows for the knock-on term: close, not equal
    est.prepare_sets(None, {"replay_rows": 1200, "als_sweeps": 1})
    sampled = est.group_logits(GROUP)
    assert np.abs(sampled - ref).max() < 0.2 * np.abs(ref - est.f_test).max()


def test_lightgbm_sets_replayed_together_are_each_the_plain_replay(splits):
    """group_logits_many sums every set's removed rows in one pass over the training rows (blocks
    smaller than the split here); sets given unsorted or with repeats are the same sets, and a set's
    logits do not depend on the sets it shares the pass with (a cluster sends chunks of them)."""
    from musicrec.families.lgbm import replay

    est = estimator("lgbm", splits)
    n = len(est.y)
    sets = [GROUP, np.arange(n // 3, n // 2), np.random.default_rng(1).permutation(n)[:300], np.array([5, 5, 17, 3])]
    empty = plain_replay(est, np.array([], dtype=np.int64))
    block, replay.SUMS_BLOCK = replay.SUMS_BLOCK, 1_000
    try:
        est.prepare_sets(None, {"replay_rows": None, "als_sweeps": 1})
        for got, rows in zip(est.group_logits_many(sets), sets):
            ref = plain_replay(est, np.unique(rows)) - empty + est.f_test
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9 * np.abs(ref - est.f_test).max())
        est.prepare_sets(None, {"replay_rows": 1200, "als_sweeps": 1})
        for got, rows in zip(est.group_logits_many(sets), sets):
            assert np.array_equal(got, est.group_logits(rows))
    finally:
        replay.SUMS_BLOCK = block


def test_lightgbm_replay_is_closer_to_retraining_than_the_sum_of_loo(splits):
    """On groups of rows pulling the same way (the most harmful ones), LightGBM's replay tracks the
    retrained change better than summing single-row estimates (which hold later trees fixed)."""
    from musicrec.influence.losses import loss_change
    from musicrec.influence.retrain import Retrainer

    train, valid, test = splits
    for name in ("lgbm",):
        est = estimator(name, splits)
        est.prepare_sets(valid, {"replay_rows": None, "als_sweeps": 1})
        loo = est.loo()["logloss"]
        r = Retrainer(est.model, train, valid, test)
        set_err, sum_err = [], []
        for k in (50, 150, 400):
            g = np.argsort(loo, kind="stable")[:k]
            retrained = r.without(r.seed, g)["all"]["logloss"]
            predicted = float(loss_change(est.y_test, est.f_test, est.group_logits(g) - est.f_test).mean())
            set_err.append(abs(predicted - retrained))
            sum_err.append(abs(loo[g].sum() - retrained))
        assert np.mean(set_err) < np.mean(sum_err), name


def test_random_ablations_draw_distinct_rows_of_each_share():
    from musicrec.influence.groups import random_ablations

    runs = random_ablations(2500, [0.1, 0.5], 2, np.random.default_rng(3))
    assert [len(r) for _, _, r in runs] == [250, 250, 1250, 1250] and runs[0][1] == "0.1 #0"
    assert all(len(np.unique(r)) == len(r) for _, _, r in runs)
    assert not np.array_equal(np.sort(runs[0][2]), np.sort(runs[1][2]))


def test_naive_bayes_groups_predict_their_retraining_on_a_planted_case(splits):
    """A planted group of flipped labels: removing it lowers each test half's loss, and nb's exact
    set removal predicts the retrained change of every group on each half (the retraining is
    scikit-learn's GaussianNB refitted without the rows on the float64 design)."""
    import dataclasses

    from musicrec.families import make_model
    from musicrec.influence import groups as grouping
    from musicrec.influence.heldout import user_halves
    from musicrec.influence.retrain import Retrainer

    train, valid, test = splits
    planted = np.random.default_rng(9).choice(len(train), 150, replace=False)
    y = train.y.copy()
    y[planted] = 1 - y[planted]
    noisy = dataclasses.replace(train, y=y)
    est = families.get("nb").influence(make_model("nb", small_cfg(), 4).fit(noisy, valid), noisy, test)
    halves = user_halves(test.keys["user"].to_numpy(), np.random.default_rng(0))
    users = np.unique(test.keys["user"].to_numpy(), return_inverse=True)[1]
    groups = [("planted", "flipped", planted)]
    groups += [("random", f"{k} random", np.random.default_rng(k).choice(len(train), k, replace=False))
               for k in (10, 40, 100, 400, 1000)]
    predicted, _ = grouping.predict(est, groups, None, halves, users)
    r = Retrainer(est.model, noisy, valid, test, parts=halves, users=users)
    retrained, _ = grouping.retrain(r, 4, groups, np.arange(len(groups)), halves, users)
    recs = grouping.records(predicted, retrained, 2)
    for rec in recs:
        assert rec["predicted_logloss"] == pytest.approx(rec["delta_logloss"], rel=1e-7, abs=1e-12)
        lo, hi = rec["predicted_logloss_ci95"]
        assert lo <= rec["predicted_logloss"] <= hi
    assert all(x["delta_logloss"] < 0 for x in recs if x["kind"] == "planted")
    s = grouping.summarize(recs, np.random.default_rng(0), "nb")
    assert s["predicted"]["A"]["spearman"]["n"] == len(groups) and s["predicted"]["mean"]["spearman"] == 1.0
    assert s["retrained"] == len(groups) and "sum_of_loo" not in s      # no half LOO given: no sum of LOO


def test_group_trust_statement_follows_the_measured_correlation():
    """Where a family's set predictor is not exact, the statement says to read the retrained change
    unless both halves' intervals show that predictions rank groups."""
    from musicrec.influence.groups import summarize

    rng = np.random.default_rng(3)
    truth = rng.normal(size=40)

    def records(pred):
        return [{"kind": "g", "group": str(i), "half": h, "delta_logloss": t, "predicted_logloss": p,
                 "predictor": "set_model", "sum_of_loo": p, "retrained": True}
                for h in ("A", "B") for i, (t, p) in enumerate(zip(truth, pred))]

    good = summarize(records(truth + 0.01 * rng.normal(size=40)), np.random.default_rng(0), "lgbm")
    bad = summarize(records(rng.normal(size=40)), np.random.default_rng(0), "lgbm")
    assert "ranks groups reliably" in good["trust"] and "replayed" in good["trust"]
    assert "not shown to rank groups reliably" in bad["trust"] and "delta_logloss" in bad["trust"]
    assert "n=40" in bad["trust"] and good["predicted"]["A"]["relative_error"] < 0.05
    # five perfectly ordered groups: the bootstrap interval collapses to [1, 1], which proves nothing
    few = summarize(records(truth)[:5] + records(truth)[40:45], np.random.default_rng(0), "lgbm")
    assert few["predicted"]["A"]["spearman"]["ci95"][0] == 1.0 and few["predicted"]["A"]["spearman"]["n"] == 5
    assert "too few groups retrained to say" in few["trust"] and "reliably (both" not in few["trust"]
    # with a second seed's retraining, the statement gives the ceiling and the agreement with the mean
    from musicrec.influence.groups import group_ceiling, records as group_records, trust
    again = {i: {h: {"logloss": t + rng.normal(), "logloss_ci95": None, "auc": None} for h in ("A", "B")}
             for i, t in enumerate(truth)}
    first = {i: {h: {"logloss": t, "logloss_ci95": None, "auc": None} for h in ("A", "B")} for i, t in enumerate(truth)}
    pred = [{"kind": "g", "group": str(i), "half": h, "predicted_logloss": t, "predictor": "set_model", "sum_of_loo": t}
            for i, t in enumerate(truth) for h in ("A", "B")]
    bad["noise_ceiling"] = group_ceiling(group_records(pred, first, 2, again), (1, 2), rng)
    text = trust("lgbm", bad)
    assert text.startswith(bad["trust"]) and "second seed" in text
    # summarize() adds the same ceiling and statement where the records carry the second seed's retrain
    with_seed = summarize(group_records(pred, first, 2, again), np.random.default_rng(0), "lgbm", seeds=(1, 2))
    assert with_seed["noise_ceiling"]["seeds"] == [1, 2] and "second seed" in with_seed["trust"]
    assert "noise_ceiling" not in summarize(group_records(pred, first, 2), np.random.default_rng(0), "lgbm")
    assert f"Spearman {bad['noise_ceiling']['A']['value']:.2f}" in text
    assert f"Spearman {bad['noise_ceiling']['B']['predicted_vs_mean_of_seeds']['value']:.2f}" in text


def test_group_retraining_fits_its_seconds_or_is_left_out():
    from musicrec.influence.groups import MIN_CHECK, plan_retrains

    cfg = {"retrain": 5, "seconds": 60.0}
    assert plan_retrains(cfg, 69, 2.0, [0.1, 0.3], False) == (5, [0.1, 0.3], None)
    check, curve, why = plan_retrains(cfg, 69, 12.0, [0.1, 0.3], False)   # 5 fits: the all-rows refit + 4
    assert (check, curve) == (4, []) and "4 of 5" in why and "no learning curve" in why
    assert plan_retrains(cfg, 69, 12.0, [], True)[0] == 0 < MIN_CHECK   # 2 per group under two seeds: 2 groups
    assert plan_retrains(cfg, 69, 170.0, [0.1], False)[:2] == (0, [])
    assert plan_retrains({"retrain": 5, "seconds": None}, 69, 170.0, [0.1], False) == (5, [0.1], None)
    assert plan_retrains({"retrain": None, "seconds": 60.0}, 69, 170.0, [], False) == (69, [], None)


def test_naive_bayes_set_that_leaves_a_column_constant_is_still_gaussian_nb_refitted():
    """A column that only the group's rows vary: without them each class's variance of it is
    var_smoothing's epsilon alone, which a downdate of sums of squares cannot resolve (its rounding
    is ~1e16 times larger; the logits came out ~1e6 off); the set predictor sums that column afresh
    and equals the refit, to the refit's own rounding ((x - mu)^2 / epsilon amplifies an ulp of mu)."""
    from sklearn.naive_bayes import GaussianNB

    from conftest import PLANTED_NAMES, make_set
    from musicrec.models import FeatureSet

    train, valid, test = make_set(2500, 11, n_users=1000, n_songs=1000), make_set(800, 12), make_set(1200, 13)
    X = train.X.copy()
    outside = np.setdiff1d(np.arange(len(X)), GROUP)
    X[outside, 3] = 0.25
    planted = FeatureSet(X, train.y, train.keys, PLANTED_NAMES, ["source_system_tab"], train.sources)
    est = estimator("nb", (planted, valid, test))
    flat = np.flatnonzero(np.ptp(est.Z[outside], axis=0) == 0)
    assert len(flat) == 1
    refit = GaussianNB(var_smoothing=est.vs).fit(est.Z[outside].astype(np.float64), est.y[outside])
    np.testing.assert_allclose(est._without_set(GROUP)[2][:, flat], refit.var_[:, flat], rtol=1e-12)
    jll = refit.predict_joint_log_proba(est.Zt.astype(np.float64))
    np.testing.assert_allclose(est.group_logits(GROUP), jll[:, 1] - jll[:, 0], rtol=0, atol=1e-3)


def test_no_group_retrained_makes_no_all_rows_refit():
    """With no group to retrain (influence.groups.seconds below one fit), the all-rows refit the
    check would compare with is not made either: at KKBOX size it is minutes and GBs for nothing."""
    from musicrec.influence import groups as grouping

    class Unfittable:
        def logits(self, seed):
            raise AssertionError("an all-rows refit was made")

    assert grouping.retrain(Unfittable(), 0, [], np.array([], dtype=np.int64), {}, np.array([])) == ({}, 0.0)


def test_als_set_matrices_are_implicits_matrix_without_the_set(splits):
    """The set model drops a set's entries from a layout sorted once; the result is the matrix
    ALSModel.play_matrix builds from scratch (scipy's COO to CSR), and its transpose."""
    from musicrec.families.als.sets import WarmSweeps

    train, valid, _ = splits
    model = estimator("als", splits).model
    sweeper = WarmSweeps(model, model.prepare(train, valid), 1)
    assert sweeper.layouts is not None
    w = np.ones(len(train))
    w[GROUP] = 0.0
    w[1::50] = 0.5
    R, Rt = sweeper.matrices(w)
    user, song = model._ids(train)
    ref = model.play_matrix(user, song, model.entry_plays(train), w)
    for got, want in ((R, ref), (Rt, ref.T.tocsr())):
        assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.indices, want.indices)
        assert np.array_equal(got.data, want.data)


def test_als_set_models_affected_users_are_implicits_exact_solve(splits):
    """The users whose rows a set drops or reweights, solved from their normal equations changed by
    the set's entries alone, against implicit's recalculate_user (Cholesky, float64) of those users
    on the reweighted matrix."""
    from musicrec.families.als.sets import WarmSweeps

    train, valid, _ = splits
    model = estimator("als", splits).model
    sweeper = WarmSweeps(model, model.prepare(train, valid), 1)
    w = np.ones(len(train))
    w[GROUP] = 0.0
    w[1::50] = 0.5
    users, x = sweeper.affected_users(w)
    user, song = model._ids(train)
    assert np.array_equal(users, np.unique(user[w != 1.0]))
    solver = model.implicit_model(dtype=np.float64)
    solver.item_factors = model.item_factors_
    ref = solver.recalculate_user(users, model.play_matrix(user, song, model.entry_plays(train), w)[users])
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-10 * np.abs(ref).max())
    assert np.abs(x - model.user_factors_[users]).max() > 1e-3 * np.abs(ref).max()   # the set moved them


def test_als_set_model_tracks_retraining(splits):
    """Groups that pull the test loss both ways (the rows of lowest and highest LOO), random draws and
    whole users: the predicted change of the test log-loss ranks the retrained change (implicit
    refitted from scratch without the rows, then the calibration)."""
    from scipy.stats import pearsonr, spearmanr

    from musicrec.influence.losses import loss_change
    from musicrec.influence.retrain import Retrainer

    train, valid, test = splits
    est = estimator("als", splits)
    est.prepare_sets(valid, {"replay_rows": None, "als_sweeps": 1})
    loo = est.loo()["logloss"]
    user = train.keys["user"].to_numpy()
    groups = [np.argsort(loo, kind="stable")[:k] for k in (50, 150, 400)]
    groups += [np.argsort(-loo, kind="stable")[:k] for k in (50, 200)]
    groups += [np.random.default_rng(k).choice(len(train), k, replace=False) for k in (100, 300, 800)]
    groups += [np.flatnonzero(np.isin(user, np.unique(user)[i::7])) for i in range(3)]
    r = Retrainer(est.model, train, valid, test)
    logits = list(est.group_logits_many(groups))
    predicted = [float(loss_change(est.y_test, est.f_test, f - est.f_test).mean()) for f in logits]
    retrained = [r.without(r.seed, g)["all"]["logloss"] for g in groups]
    assert np.array_equal(est.group_logits(groups[4]), logits[4])   # the set model built once serves every call
    assert spearmanr(predicted, retrained)[0] >= 0.85 and pearsonr(predicted, retrained)[0] >= 0.95
