"""Every influence estimator against its library: refits, brute-force retraining, saved models."""
import dataclasses

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from musicrec import families
from musicrec.families import load_model, make_model
from musicrec.families.nb import reference as nb_reference
from musicrec.influence.reference import library_loo
from musicrec.influence.retrain import Retrainer
from musicrec.influence.stats import detector

from conftest import estimator, small_cfg


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
    Z, Zt = est.Z.astype(np.float64), est.Zt.astype(np.float64)   # the model's float32 design, in float64
    jll = GaussianNB(var_smoothing=est.vs).fit(Z[keep], est.y[keep]).predict_joint_log_proba(Zt)
    np.testing.assert_allclose(est.refit_logits(17)[0], jll[:, 1] - jll[:, 0], rtol=1e-9, atol=1e-9)


def test_lr_newton_step_ranks_like_exact_retraining(splits):
    est = estimator("lr", splits)
    rows = np.arange(0, 2500, 125)
    # scikit-learn's LogisticRegression refitted without each row (newton-cholesky, tol 1e-10)
    retrained = library_loo(families.get(est.name).reference(est), rows, {"all": np.arange(len(est.y_test))})["all"]
    loo = est.loo()["logloss"][rows]
    assert spearmanr(loo, retrained["logloss"])[0] > 0.98
    assert np.abs(loo - retrained["logloss"]).max() < 0.05 * np.abs(retrained["logloss"]).max()
    own = est.refit(rows)["logloss"]   # the estimator's own exact refit (fast path) is the same optimum
    np.testing.assert_allclose(own, retrained["logloss"], rtol=1e-5, atol=1e-9 * np.abs(own).max())


def test_lr_estimator_optimum_is_scikit_learns(splits):
    """The point every lr estimate starts from is scikit-learn's own optimum of the same objective."""
    from sklearn.linear_model import LogisticRegression

    est = estimator("lr", splits)
    lib = LogisticRegression(C=est.C, solver="newton-cholesky", tol=1e-12, max_iter=200).fit(est.X, est.y)
    theta = np.concatenate([lib.coef_.ravel(), lib.intercept_])
    assert np.abs(est.theta - theta).max() <= 1e-8 * np.abs(theta).max()


@pytest.mark.parametrize("block, threads", [(1, 1), (3, 2), (16, 2)])
def test_nb_column_block_fit_is_gaussian_nbs_whole_fit(splits, block, threads):
    """The reference fits GaussianNB a block of columns at a time; assembled, it is GaussianNB
    fitted on the whole design (the epsilon from the block with the largest variance)."""
    from sklearn.naive_bayes import GaussianNB

    est = estimator("nb", splits)
    Z = est.Z.astype(np.float64)
    whole = GaussianNB(var_smoothing=est.vs).fit(Z, est.y)
    blocks = nb_reference.ColumnBlockNB(est.vs, block, threads).fit(est.Z, est.y)
    assert blocks.epsilon_ == pytest.approx(whole.epsilon_, rel=1e-13)   # summation order: an ulp
    np.testing.assert_array_equal(blocks.class_count_, whole.class_count_)
    np.testing.assert_allclose(blocks.theta_, whole.theta_, rtol=1e-13, atol=0)
    np.testing.assert_allclose(blocks.var_, whole.var_, rtol=1e-13, atol=0)
    Zt = est.Zt.astype(np.float64)
    np.testing.assert_allclose(blocks.predict_joint_log_proba(Zt), whole.predict_joint_log_proba(Zt), rtol=1e-12)


def test_nb_library_loo_is_gaussian_nb(splits):
    est = estimator("nb", splits)
    lib = library_loo(families.get(est.name).reference(est), ROWS, {"all": np.arange(len(est.y_test))})
    own = est.exact(ROWS)["logloss"]
    assert np.abs(own - lib["all"]["logloss"]).max() <= 1e-9 * np.abs(lib["all"]["logloss"]).max()
    np.testing.assert_allclose(est.loo()["self"][ROWS], lib["self"], rtol=1e-6)


def test_nb_library_logit_change_is_the_difference_of_gaussian_nb_fits(splits):
    """The library reference's logit change, written in the two fits' parameter changes, is the
    plain difference of their joint log-likelihoods (up to that difference's rounding)."""
    est = estimator("nb", splits)
    keep = np.ones(est.n, dtype=bool)
    base = nb_reference.gaussian_nb(est, keep)
    keep[[5, 99]] = False
    fit = nb_reference.gaussian_nb(est, keep)
    direct = nb_reference.nb_logits(fit, est.Zt) - nb_reference.nb_logits(base, est.Zt)
    np.testing.assert_allclose(nb_reference.nb_logit_change(base, fit, est.Zt), direct, rtol=1e-6, atol=1e-12)


def test_retrainer_uses_the_saved_models_arguments_not_the_config(splits, tmp_path):
    """Stage 04 trained with one config; the config is edited afterwards; 06 must retrain the
    saved model, not what the config says now."""
    train, valid, test = splits
    cfg = small_cfg()
    cfg["lr"]["C"] = 0.05
    cfg["rf"].update(n_estimators=7, min_samples_leaf=11)
    for name in ("lr", "rf", "lgbm"):
        make_model(name, cfg, 4).fit(train, valid).save(tmp_path)
    cfg["lr"]["C"], cfg["rf"]["n_estimators"], cfg["lgbm"]["num_leaves"] = 3.0, 30, 7   # edited afterwards
    lr = load_model("lr", tmp_path)
    r = Retrainer(lr, train, valid, test)
    base = r.base_model(r.seed)
    assert base.C == 0.05 and base.random_state == 4
    est = families.get("lr").influence(lr, train, test)
    theta = np.concatenate([base.estimator_.coef_.ravel(), base.estimator_.intercept_])
    assert np.abs(theta - est.theta).max() <= 1e-6 * np.abs(est.theta).max()  # the analysed optimum
    rf = load_model("rf", tmp_path)
    again = Retrainer(rf, train, valid, test).base_model(4)
    assert len(again.trees_) == 7 and again.min_samples_leaf == 11
    assert np.array_equal(again.predict_proba(test), rf.predict_proba(test))   # the same forest
    lgbm = load_model("lgbm", tmp_path)
    fresh = Retrainer(lgbm, train, valid, test).base_model(4)
    assert fresh.num_leaves == lgbm.num_leaves == small_cfg()["lgbm"]["num_leaves"]
    assert fresh.booster_.num_trees() == lgbm.booster_.num_trees()


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
    r = Retrainer(est.model, train, valid, test)
    got = r.without(4, np.array([50]), own=True)["self"]
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
    loo = families.get(name).influence(model, noisy, test).loo()
    assert detector(loo["own_loss"], flipped, rng)["lift_10pct"]["value"] > 2.5
    assert detector(loo["self"], flipped, rng)["lift_10pct"]["value"] > 2.0


def test_lgbm_reproduces_lightgbm_leaf_values(splits):
    est = estimator("lgbm", splits)
    assert est.leaf_value_error < 1e-6  # LightGBM keeps gradients in float32


@pytest.mark.parametrize("name", ["nb", "lr", "rf", "lgbm", "als"])
def test_a_saved_and_loaded_model_gives_the_same_influence(name, splits, tmp_path):
    """Stage 06 works from the files of stage 04: every setting the estimator reads must survive."""
    train, valid, test = splits
    model = make_model(name, small_cfg(), 4).fit(train, valid)
    model.save(tmp_path)
    again = families.get(name).influence(load_model(name, tmp_path), train, test)
    before = families.get(name).influence(model, train, test).loo()
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


def test_lr_reference_with_a_blocked_hessian_is_scikit_learns_fit(splits):
    """The reference's Hessian summed over row blocks (no design-sized temporary) leaves scikit-learn's
    newton-cholesky fit as it is, to the rounding of the Hessian's sums."""
    from sklearn.linear_model import LogisticRegression, _linear_loss

    from musicrec.families.lr.reference import chunked_hessian

    est = estimator("lr", splits)
    w = np.ones(len(est.X))
    w[[3, 40]] = 0.0
    plain = LogisticRegression(C=est.C, solver="newton-cholesky", tol=1e-10).fit(est.X, est.y, sample_weight=w)
    original = _linear_loss.sandwich_dot
    with chunked_hessian(rows=997):
        assert _linear_loss.sandwich_dot is not original
        blocked = LogisticRegression(C=est.C, solver="newton-cholesky", tol=1e-10).fit(est.X, est.y, sample_weight=w)
    assert _linear_loss.sandwich_dot is original
    np.testing.assert_allclose(blocked.coef_, plain.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(blocked.intercept_, plain.intercept_, rtol=1e-10, atol=1e-12)
