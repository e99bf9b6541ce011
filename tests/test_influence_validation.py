"""Influence bookkeeping: metric changes, validation, removal curves, held-out halves, groups."""

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import roc_auc_score

from musicrec import families
from musicrec.influence import groups as grouping
from musicrec.influence.heldout import half_influence, user_halves
from musicrec.influence.losses import auc, auc_gradient, logloss, loss_change, metric_changes
from musicrec.influence.noise import oracle_posterior
from musicrec.influence.retrain import Retrainer
from musicrec.influence.stats import ceiling, correlation, detector, share_of_ceiling
from musicrec.influence.removal import guarded_size, iterative_removal, removal_curves, rescore
from musicrec.influence.validate import compare, validate_model

from conftest import estimator

ROWS = np.array([3, 50, 177, 400, 901, 1333, 2000, 2499])


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


def test_auc_equals_scikit_learns_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 2_000)
    for f in (rng.normal(0, 1, 2_000), rng.integers(0, 7, 2_000).astype(float), np.zeros(2_000)):
        assert auc(y, f) == pytest.approx(roc_auc_score(y, f), rel=1e-12, abs=1e-15)
    with pytest.raises(ValueError, match="both classes"):
        auc(np.ones(5), np.arange(5.0))


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
    """Our Retrainer with the model fit replaced by a record of which rows were left out: the
    log-loss change of each part is minus the number of removed rows."""

    def __init__(self, n):
        self.name = "recording"
        self.train = np.zeros(n)
        self.removed = []
        self.fits = 0

    def without(self, seed, removed, own=False):
        self.removed.append(np.sort(removed))
        return {p: {"logloss": -float(len(removed)), "auc": 0.0} for p in ("all", "A", "B")}


class KeepingRetrainer(Retrainer):
    """The real Retrainer, keeping a copy of every removal mask it was asked to fit."""

    masks: list

    def fit_without(self, seed, removed):
        self.masks = getattr(self, "masks", []) + [np.asarray(removed).copy()]
        return super().fit_without(seed, removed)


@pytest.mark.parametrize("name", ["lr", "rf"])
def test_iterative_removal_re_estimates_after_each_step(name, splits):
    train, valid, test = splits
    est = estimator(name, splits)
    scores = est.loo()["logloss"]
    r = KeepingRetrainer(est.model, train, valid, test)
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
    if name == "rf":
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
        X = est.Z[keep].astype(np.float64)    # the model's float32 design, in float64
        nb = GaussianNB(var_smoothing=est.vs).fit(X, est.y[keep])
        jll = nb.predict_joint_log_proba(est.Zt.astype(np.float64))
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


def test_compare_by_hand():
    c = compare(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 5.0]), np.random.default_rng(0))
    assert c["spearman"]["value"] == pytest.approx(1.0) and c["spearman"]["n"] == 4
    assert c["max_abs_err"] == 1.0 and c["max_rel_err"] == 0.2
    assert c["top10_overlap"] == 1.0 and c["n"] == 4


def test_correlation_interval_covers_the_true_value():
    """Bivariate normal samples with rho = 0.6: the 95% interval covers rho in ~95% of 200 draws."""
    rng = np.random.default_rng(1)
    cover = 0
    for _ in range(200):
        x = rng.normal(size=(60, 2))
        a, b = x[:, 0], 0.6 * x[:, 0] + 0.8 * x[:, 1]
        c = correlation(a, b, rng, "pearson", draws=400)
        cover += c["ci95"][0] <= 0.6 <= c["ci95"][1]
        assert c["n"] == 60
    assert 0.88 <= cover / 200 <= 0.99


def test_correlation_over_millions_of_pairs_uses_fisher_z_with_spearman_variance():
    """Above MAX_DRAWN / MIN_DRAWS pairs: a closed-form interval, as wide as the bootstrap's."""
    from scipy.stats import spearmanr

    from musicrec.influence import stats

    rng = np.random.default_rng(4)
    x = rng.normal(size=(stats.MAX_DRAWN // stats.MIN_DRAWS + 1, 2))
    a, b = x[:, 0], 0.6 * x[:, 0] + 0.8 * x[:, 1]
    big = correlation(a, b, rng, "spearman")
    assert big["interval"] == "fisher_z" and big["n"] == len(a)
    assert big["value"] == pytest.approx(spearmanr(a, b).statistic, abs=1e-9)
    true = 6 / np.pi * np.arcsin(0.6 / 2)             # Spearman's rho of a bivariate normal
    assert big["ci95"][0] <= true <= big["ci95"][1]
    sub = correlation(a[:20_000], b[:20_000], rng, "spearman", draws=300)   # bootstrap at n = 20,000
    width = lambda c: c["ci95"][1] - c["ci95"][0]   # noqa: E731
    assert width(big) * np.sqrt(len(a) / 20_000) == pytest.approx(width(sub), rel=0.25)


def test_a_noise_ceiling_that_may_be_zero_is_not_measurable():
    rng = np.random.default_rng(2)
    a = rng.normal(size=12)
    c = ceiling(a, a + rng.normal(size=12) * 3, rng)
    assert not c["measurable"] and share_of_ceiling({"value": 0.5}, c) == "not measurable"
    c = ceiling(a, a + rng.normal(size=12) * 0.01, rng)
    assert c["measurable"] and share_of_ceiling({"value": 0.5}, c) == pytest.approx(0.5 / c["value"])


def test_removal_curves_select_on_one_half_and_score_on_the_other():
    scores_a = np.array([0.5, -3.0, 2.0, -1.0, 0.0, 4.0, -2.0, 1.0, 3.0, -0.5])
    influence = {"A": scores_a, "B": -scores_a}
    r = RecordingRetrainer(10)
    out = removal_curves(r, 0, influence, [0.2], np.random.default_rng(0))
    random20, harmful_b, harmful_a, helpful_b, helpful_a = r.removed
    assert len(random20) == 2
    # scored on A: selected by B's influence (most negative of -scores_a = largest scores_a)
    assert harmful_b.tolist() == [5, 8] and harmful_a.tolist() == [1, 6]
    assert helpful_b.tolist() == [1, 6] and helpful_a.tolist() == [5, 8]
    assert out["harmful"]["0.2"]["rows"] == 2 and out["harmful"]["0.2"]["mean"]["logloss"] == -2.0


def test_held_out_halves_are_disjoint_by_user_and_influence_adds_up(splits):
    train, valid, test = splits
    users = test.keys["user"].to_numpy()
    halves = user_halves(users, np.random.default_rng(3))
    assert len(np.intersect1d(halves["A"], halves["B"])) == 0
    assert len(halves["A"]) + len(halves["B"]) == len(users)
    assert not set(users[halves["A"]]) & set(users[halves["B"]])          # no user in both
    assert halves["A"].tolist() == user_halves(users, np.random.default_rng(3))["A"].tolist()
    for name in ("nb", "lr", "rf", "lgbm", "als"):
        est = estimator(name, splits)
        loo = est.loo()["logloss"]
        inf = half_influence(est, loo, halves)
        # B derived from the whole and A equals B estimated directly
        np.testing.assert_allclose(inf["B"], est.loo_on(halves["B"]), rtol=1e-6, atol=1e-9 * np.abs(loo).max())
        # and A is the influence on half A's own loss: the estimator built on those test rows alone
        alone = families.get(name).influence(est.model, train, test.take(halves["A"])).loo()["logloss"]
        np.testing.assert_allclose(inf["A"], alone, rtol=1e-6, atol=1e-9 * np.abs(alone).max())


def test_detector_lift_and_oracle_by_hand():
    flipped = np.zeros(100, dtype=bool)
    flipped[[0, 1, 2, 3, 50, 60, 70, 80, 90, 99]] = True            # 10%
    scores = -np.arange(100, dtype=float)                             # row 0 most suspect
    d = detector(scores, flipped, np.random.default_rng(0))
    assert d["lift_5pct"]["value"] == pytest.approx((4 / 5) / 0.1)
    assert d["lift_10pct"]["value"] == pytest.approx((4 / 10) / 0.1)
    lo, hi = d["lift_10pct"]["ci95"]
    assert lo < 4 < hi
    # oracle: a replay observed where the truth says 5% replay is most likely flipped
    post = oracle_posterior(np.array([0.05, 0.95, 0.5]), np.array([1, 1, 1]), 0.1)
    assert post[0] > post[2] > post[1] and post[2] == pytest.approx(0.1)


def test_nb_retraining_deletes_the_rows_it_leaves_out(splits):
    """Weight 0 is not removal for GaussianNB (its variance floor counts every row it is given):
    the Retrainer's naive Bayes without some rows is GaussianNB fitted on the other rows."""
    from sklearn.naive_bayes import GaussianNB

    train, valid, test = splits
    est = estimator("nb", splits)
    rows = np.arange(0, len(train), 7)
    keep = np.setdiff1d(np.arange(len(train)), rows)
    model, _, new = Retrainer(est.model, train, valid, test, prepared=est.retrain_inputs()).fit_without(0, rows)
    Z = est.Z.astype(np.float64)
    jll = GaussianNB(var_smoothing=est.vs).fit(Z[keep], est.y[keep]).predict_joint_log_proba(est.Zt.astype(np.float64))
    np.testing.assert_allclose(new, jll[:, 1] - jll[:, 0], rtol=1e-9, atol=1e-9)


def test_removal_curves_alone_with_no_sampled_rows(splits):
    """influence.validate.rows 0 with removal fractions: the removal curves run, no exact check."""
    train, valid, test = splits
    est = estimator("lr", splits)
    loo = est.loo()
    halves = user_halves(test.keys["user"].to_numpy(), np.random.default_rng(0))
    vcfg = {"rows": {"lr": 0}, "full_retrain": False, "removal_fractions": [0.05], "removal_step": 0.0,
            "removal_step_until": 0.05, "seconds": 5.0, "min_rows": 5, "removal_set_block": 0.0,
            "removal_random_repeats": 1}
    report = validate_model(est, loo, Retrainer(est.model, train, valid, test, parts=halves), vcfg, (0, 1),
                            np.random.default_rng(0), half_influence(est, loo["logloss"], halves))
    assert report.report.exact is None and len(report.sample_rows) == 0 and report.exact_logloss is None
    assert report.report.removal["harmful"]["0.05"]["rows"] == round(0.05 * len(train))


def test_lgbm_test_logits_are_lightgbms_own(splits):
    """The estimator sums its test logits from the leaves: they must be LightGBM's predictions."""
    est = estimator("lgbm", splits)
    assert np.array_equal(est.f_test, est.booster.predict(est.Xt, raw_score=True))


def test_lgbm_uncached_leaves_give_the_same_influence(splits, monkeypatch):
    """Above CACHE_BYTES the train leaves are predicted again block by block, on threads."""
    from musicrec.families.lgbm import influence as lgbm
    cached = estimator("lgbm", splits).loo()
    monkeypatch.setattr(lgbm, "CACHE_BYTES", 0)
    monkeypatch.setattr(lgbm, "BLOCK", 64)
    monkeypatch.setattr(lgbm, "PREDICT_BLOCK", 50)
    est = estimator("lgbm", splits)
    assert not est.cache
    again = est.loo()
    for k in cached:
        np.testing.assert_allclose(again[k], cached[k], rtol=1e-12, atol=1e-18)
    rows = np.array([3, 50])
    np.testing.assert_allclose(est.refit(rows)["logloss"], est.exact(rows)["logloss"], rtol=1e-9)


def test_group_ceiling_scores_predictions_against_the_mean_of_both_seeds():
    rng = np.random.default_rng(3)
    truth = rng.normal(size=(30, 2))      # 30 groups, halves A and B; the even ones were retrained twice
    checked = range(0, 30, 2)
    first, second = ({k: {h: {"logloss": truth[k, j] + rng.normal() * 0.5, "logloss_ci95": None, "auc": None}
                          for j, h in enumerate("AB")} for k in checked} for _ in range(2))
    predicted = [{"half": h, "predicted_logloss": truth[k, j]} for k in range(30) for j, h in enumerate("AB")]
    out = grouping.group_ceiling(grouping.records(predicted, first, 2, second), (1, 2), rng)
    for j, h in enumerate("AB"):
        a, b = ([d[k][h]["logloss"] for k in checked] for d in (first, second))
        assert out[h]["value"] == pytest.approx(spearmanr(a, b).statistic)
        vs_mean = out[h]["predicted_vs_mean_of_seeds"]
        assert vs_mean["n"] == 15
        assert vs_mean["value"] == pytest.approx(spearmanr(truth[list(checked), j], np.add(a, b) / 2).statistic)
