"""Each family's bare library fit on the arrays stage 04 fits on, beside 04's time for that family.

The bare fit calls the library directly (GaussianNB.fit, LogisticRegression.fit,
RandomForestClassifier.fit, lightgbm.train, implicit's AlternatingLeastSquares.fit) with the model's
parameters, on the design matrix the family prepares (musicrec's Model.prepare). What 04 spends beyond
it (reading, the design, bookkeeping, scoring) is 04's overhead, which the kkbox budget caps at 1.3x.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits


def _nb(model, prepared):
    from sklearn.naive_bayes import GaussianNB

    _, X, y = prepared
    GaussianNB(var_smoothing=model.var_smoothing).fit(X, y)


def _lr(model, prepared):
    from sklearn.linear_model import LogisticRegression

    _, X, y = prepared
    with threadpool_limits(1, "blas"):
        LogisticRegression(C=model.C, solver=model.solver, max_iter=model.max_iter, tol=model.tol).fit(X, y)


def _rf(model, prepared):
    from sklearn.ensemble import RandomForestClassifier

    _, X, y = prepared
    RandomForestClassifier(n_estimators=model.n_estimators, max_samples=model.max_samples,
                           min_samples_leaf=model.min_samples_leaf, max_depth=model.max_depth,
                           max_features=model.max_features, n_jobs=model.n_jobs,
                           random_state=model.random_state).fit(X, y)


def _lgbm(model, prepared):
    import lightgbm as lgb

    _, _, dtrain, dvalid = prepared
    callbacks = [lgb.early_stopping(model.early_stopping_rounds, first_metric_only=True, verbose=False)] if dvalid else []
    lgb.train(model.params(), dtrain, num_boost_round=model.n_estimators, valid_sets=[dvalid] if dvalid else [],
              callbacks=callbacks)


def _als(model, prepared):
    from implicit.als import AlternatingLeastSquares

    from musicrec.families.als.model import confidence_matrix, signed_label_matrix

    train, _ = prepared
    user, song = model._ids(train)
    shape = (int(user.max()) + 1, int(song.max()) + 1)
    R = (signed_label_matrix(user, song, train.y, shape, None) if model.weighting == "signed" else
         confidence_matrix(user, song, model.entry_plays(train), shape, model.weighting, model.bm25_k1, model.bm25_b))
    R = R.astype(np.float32)
    with threadpool_limits(1, "blas"):
        AlternatingLeastSquares(factors=model.factors, regularization=model.regularization, alpha=model.alpha,
                                iterations=model.iterations, random_state=model.random_state, use_gpu=False,
                                num_threads=model.n_jobs).fit(R, show_progress=False)


BARE = {"nb": _nb, "lr": _lr, "rf": _rf, "lgbm": _lgbm, "als": _als}


def bare_fits(out: Path) -> dict:
    """Seconds of each built-in family's bare library fit next to stage 04's fit_seconds for it, and
    04's wall time next to the sum of the bare fits. The designs are built before the clock; LightGBM's
    Datasets are lazy, so lightgbm.train bins them inside it, as a bare use of the library does."""
    from musicrec import config
    from musicrec.families import make_model
    from musicrec.models import load_feature_set
    from musicrec.rng import model_seed

    cfg = config.load(out / "bench_config.yaml")
    spec = json.loads((out / "03_features" / "features.json").read_text())
    train = load_feature_set(out / "03_features" / "features_train.parquet", spec)
    valid = load_feature_set(out / "03_features" / "features_valid.parquet", spec)
    fitted = json.loads((out / "04_train" / "metrics.json").read_text())["models"]
    result = {}
    for name in [n for n in cfg["train"]["models"] if n in BARE]:
        model = make_model(name, cfg["train"], model_seed(cfg, name))
        prepared = model.prepare(train, valid)
        t0 = time.perf_counter()
        BARE[name](model, prepared)
        bare = time.perf_counter() - t0
        result[name] = {"bare_fit_s": round(bare, 2), "stage_04_fit_s": fitted[name]["fit_seconds"]}
        print(f"bare {name}: {bare:.1f} s; stage 04: {fitted[name]['fit_seconds']} s", flush=True)
        del prepared
    return result
