"""Each model family: learns a planted signal, save/load round trip, sample weights behave."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from conftest import make_set, small_cfg
from musicrec import families
from musicrec.families import load_model, make_model


@pytest.fixture(scope="module")
def data():
    return make_set(4000, 1), make_set(1500, 2)


@pytest.mark.parametrize("name", list(families.BUILTIN))
def test_family_learns_and_round_trips(name, data, tmp_path):
    train, valid = data
    model = make_model(name, small_cfg(), random_state=3).fit(train, valid)
    p = model.predict_proba(valid)
    assert p.shape == (len(valid), 2) and np.allclose(p.sum(axis=1), 1.0)
    assert np.all((p >= 0) & (p <= 1))
    auc = roc_auc_score(valid.y, p[:, 1])
    floor = {"prior": 0.52, "als": 0.55, "rf": 0.7}.get(name, 0.75)
    assert auc > floor, (name, auc)
    files = model.save(tmp_path)
    assert all((tmp_path / f).is_file() for f in files)
    again = load_model(name, tmp_path)
    assert np.array_equal(again.predict_proba(valid), p)


def test_native_formats(data, tmp_path):
    train, valid = data
    make_model("lgbm", small_cfg(), 0).fit(train, valid).save(tmp_path)
    assert (tmp_path / "lgbm.txt").read_text().startswith("tree")
    make_model("als", small_cfg(), 0).fit(train, valid).save(tmp_path)
    z = np.load(tmp_path / "als.npz")
    assert z["user_factors"].shape[1] == z["item_factors"].shape[1] == 4


@pytest.mark.parametrize("name", ["prior", "nb", "lr", "als"])
def test_zero_weight_equals_deleting_the_rows(name, data):
    train, valid = data
    drop = np.zeros(len(train), dtype=bool)
    drop[::7] = True
    w = (~drop).astype(np.float64)
    a = make_model(name, small_cfg(), 5).fit(train, valid, sample_weight=w)
    b = make_model(name, small_cfg(), 5)
    if name in ("nb", "lr"):  # the design (scaler) is part of the feature map: keep it fitted on all rows
        b.design_ = a.design_
        b.estimator_ = b.make_estimator().fit(a.design_.transform(train.take(~drop), a.dtype), train.y[~drop])
    else:
        b.fit(train.take(~drop), valid)
    tol = {"lr": 1e-5, "als": 1e-4, "nb": 1e-5}.get(name, 1e-12)  # nb: a float32 design
    np.testing.assert_allclose(a.predict_proba(valid), b.predict_proba(valid), atol=tol)


def test_lgbm_can_leave_out_a_feature_family(data):
    train, valid = data
    t = small_cfg()
    t["lgbm"]["exclude_sources"] = ["als", "time"]
    model = make_model("lgbm", t, 0).fit(train, valid)
    assert model.features_ == ["source_system_tab", "x1", "x2"]
    assert model.categorical_ == ["source_system_tab"]


def test_als_falls_back_for_unseen_users_and_songs(data):
    train, valid = data
    model = make_model("als", small_cfg(), 0).fit(train, valid)
    user = np.array([0, 10_000, 0]); song = np.array([0, 0, 10_000])
    score, known = model.scores(user, song)
    assert known.tolist() == [True, False, False] and score[1] == score[2] == 0.0


def test_forest_draws_stay_coupled_when_a_row_is_removed(data):
    train, valid = data
    full = make_model("rf", small_cfg(), 9).fit(train, valid)
    w = np.ones(len(train))
    w[17] = 0.0
    without = make_model("rf", small_cfg(), 9).fit(train, valid, sample_weight=w)
    X = full.design_.transform(valid, np.float32)
    drawn = [full.bootstrap_counts(t, len(train))[17] > 0 for t in range(len(full.trees_))]
    assert 0 < sum(drawn) < len(drawn)
    for t, was_drawn in enumerate(drawn):
        same = np.array_equal(full.trees_[t].predict_proba(X), without.trees_[t].predict_proba(X))
        if not was_drawn:
            assert same, t  # a tree that never saw the row is bit-for-bit the same tree


def test_lgbm_prepared_data_can_be_retrained_with_other_weights(data):
    train, valid = data
    w = np.ones(len(train))
    w[::5] = 0.0
    prep = make_model("lgbm", small_cfg(), 1).prepare(train, valid)
    weighted = make_model("lgbm", small_cfg(), 1).fit_prepared(prep, w).predict_proba(valid)
    again = make_model("lgbm", small_cfg(), 1).fit_prepared(prep, None).predict_proba(valid)
    assert np.array_equal(weighted, make_model("lgbm", small_cfg(), 1).fit(train, valid, sample_weight=w).predict_proba(valid))
    assert np.array_equal(again, make_model("lgbm", small_cfg(), 1).fit(train, valid).predict_proba(valid))


@pytest.mark.parametrize("name", ["nb", "lr"])
def test_columns_without_variation_are_left_out_of_the_design(name, data):
    """A constant or all-NaN column moves no prediction; it is left out, the rest is unchanged."""
    from dataclasses import replace

    from musicrec.models.sklearn_base import varying

    train, valid = data
    def widen(d, nan_share=0.0):
        extra = np.column_stack([np.full(len(d), 7.0), np.full(len(d), np.nan),
                                 np.where(np.arange(len(d)) % 5 == 0, np.nan, 3.0)]).astype(np.float32)
        return replace(d, X=np.hstack([d.X, extra]), names=[*d.names, "const", "all_nan", "const_or_nan"],
                       sources={**d.sources, "const": "count", "all_nan": "count", "const_or_nan": "count"})
    wide_train, wide_valid = widen(train), widen(valid)
    assert varying(wide_train) == set(train.names) | {"const_or_nan"}   # NaN against 3.0 tells rows apart
    plain = make_model(name, small_cfg(), random_state=3).fit(train, valid)
    wide = make_model(name, small_cfg(), random_state=3).fit(wide_train, wide_valid)
    assert "const" not in wide.design_.columns and "all_nan" not in wide.design_.columns
    assert wide.design_.columns == [*plain.design_.columns, "const_or_nan"]
    assert np.corrcoef(wide.predict_proba(wide_valid)[:, 1], plain.predict_proba(valid)[:, 1])[0, 1] > 0.99


def test_nb_zero_weights_delete_rows_as_gaussiannb_on_the_rest(data):
    """The refit without rows swaps them out of a view instead of copying the design: it must be
    GaussianNB fitted on the other rows (the independent reference), and leave the design as it was."""
    from sklearn.naive_bayes import GaussianNB

    train, valid = data
    model = make_model("nb", small_cfg(), 1)
    model.dtype = np.float64    # as stage 06 refits it (float32 sums would differ by order at 1e-7)
    prep = model.prepare(train, valid)
    design, X, y = prep
    before = X.copy()
    w = np.ones(len(X))
    gone = np.array([0, 5, 17, len(X) - 3, len(X) - 1])
    w[gone] = 0.0
    fitted = model.fit_prepared(prep, w).estimator_
    ref = GaussianNB(var_smoothing=model.var_smoothing).fit(np.delete(X, gone, axis=0), np.delete(y, gone))
    assert np.array_equal(X, before)
    for attr in ("class_count_", "theta_", "var_", "class_prior_"):
        np.testing.assert_allclose(getattr(fitted, attr), getattr(ref, attr), rtol=1e-12)


def test_designs_sharing_columns_fit_numpys_statistics():
    """Each column's median, mean and std are read once per split and shared by the designs that use
    it (rf's design holds nb's and lr's columns): a design fitted after another equals numpy's own."""
    import polars as pl

    from musicrec.models.base import FeatureSet
    from musicrec.models.design import NumericDesign

    rng = np.random.default_rng(0)
    X = rng.normal(3, 2, (5_001, 30)).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    X[:, 7] = np.nan
    names = [f"c{i}" for i in range(30)]
    data = FeatureSet(X, np.zeros(len(X)), pl.DataFrame({"row": np.arange(len(X))}), names)
    NumericDesign(names[10:], "none").fit(data)                 # some columns' statistics first
    design = NumericDesign(names[::2], "standard").fit(data)    # half of them already known
    Z = X[:, ::2].astype(np.float64)
    median = np.nan_to_num(np.nanmedian(Z, axis=0), nan=0.0)
    filled = np.where(np.isnan(Z), median, Z)
    np.testing.assert_array_equal(design.median_, median)
    np.testing.assert_allclose(design.mean_, filled.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(design.std_, np.where(filled.std(axis=0) > 0, filled.std(axis=0), 1.0), rtol=1e-12)


@pytest.mark.parametrize("scale", ["standard", "quantile"])
def test_design_made_per_block_gives_numpys_products_on_the_held_design(scale):
    """lr's test design is made a block at a time when used: its products equal numpy's on the whole
    design that transform() holds, and do not depend on the threads."""
    import polars as pl

    from musicrec.models.base import FeatureSet
    from musicrec.models.design import DesignRows, NumericDesign

    rng = np.random.default_rng(1)
    X = rng.normal(3, 2, (2_345, 12)).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    names = [f"c{i}" for i in range(12)]
    data = FeatureSet(X, np.zeros(len(X)), pl.DataFrame({"row": np.arange(len(X))}), names)
    design = NumericDesign(names[1:], scale).fit(data)
    held = design.transform(data, intercept=True)
    M, V, w = rng.normal(size=(held.shape[1], 3)), rng.normal(size=(len(X), 2)), rng.random(len(X))
    one, two = DesignRows(design, data, rows=500), DesignRows(design, data, rows=500, threads=2)
    assert one.shape == held.shape
    np.testing.assert_allclose(one @ M, held @ M, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(one @ M[:, 0], held @ M[:, 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(one.t_dot(V), held.T @ V, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(one.gram(w), held.T @ (w[:, None] * held), rtol=1e-12, atol=1e-10)
    for product in (lambda d: d @ M, lambda d: d.t_dot(V), lambda d: d.gram(w)):
        np.testing.assert_array_equal(product(one), product(two))
