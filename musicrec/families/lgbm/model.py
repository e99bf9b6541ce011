"""LightGBM gradient boosting with early stopping on the validation split.

Categorical features are handed over as contiguous integer codes inside a float matrix (stage 01
codes are contiguous per column); a polars Categorical passed through Arrow would abort LightGBM.
"""
from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np

from musicrec.models.base import FeatureSet, Model, two_columns


def set_row_weights(dataset: lgb.Dataset, weight) -> None:
    """Row weights of a Dataset that may already be built (and trained on) before.

    Dataset.set_weight turns all-ones weights into None and then leaves a built Dataset's previous
    weights in place, so a built Dataset gets its weights written with set_field, ones included.
    """
    if dataset._handle is None:
        dataset.set_weight(None if weight is None else np.asarray(weight, dtype=np.float64))
        return
    n = dataset.num_data()
    dataset.set_field("weight", np.ones(n, dtype=np.float32) if weight is None else np.asarray(weight, np.float32))


class LightGBMModel(Model):
    name = "lgbm"

    def __init__(self, num_leaves=63, learning_rate=0.1, n_estimators=500, early_stopping_rounds=30,
                 min_child_samples=100, feature_fraction=0.8, lambda_l2=1.0, max_bin=255, exclude_sources=(),
                 engine="local", n_jobs=2, random_state=0):
        self.num_leaves, self.learning_rate, self.n_estimators = num_leaves, learning_rate, n_estimators
        self.early_stopping_rounds, self.min_child_samples = early_stopping_rounds, min_child_samples
        self.feature_fraction, self.lambda_l2, self.max_bin = feature_fraction, lambda_l2, max_bin
        self.exclude_sources, self.n_jobs, self.random_state = tuple(exclude_sources), n_jobs, random_state
        self.engine = engine   # where stage 04 fits it; fit() and every refit (stage 06) run here

    def params(self) -> dict:
        """LightGBM parameters; bagging stays off so a row is in every tree's data (influence needs it).

        Exclusive feature bundling is off: LightGBM checks that bundled features never conflict on
        a sample of the rows only, so at millions of rows a few rows can train with another feature's
        value in place of their own and fall in a different leaf at training than at prediction.
        """
        return {
            "objective": "binary", "metric": ["binary_logloss", "auc"], "first_metric_only": True,
            "num_leaves": self.num_leaves, "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_child_samples, "feature_fraction": self.feature_fraction,
            "lambda_l2": self.lambda_l2, "cat_l2": 10.0, "max_bin": self.max_bin, "bagging_fraction": 1.0, "bagging_freq": 0,
            "num_threads": self.n_jobs, "seed": self.random_state, "deterministic": True,
            "force_col_wise": True, "enable_bundle": False, "verbose": -1,
        }

    def _columns(self, data: FeatureSet) -> list[str]:
        return [n for n in data.names if data.sources.get(n) not in self.exclude_sources]

    def _matrix(self, data: FeatureSet) -> np.ndarray:
        idx = [data.names.index(n) for n in self.features_]
        return data.X if len(idx) == data.X.shape[1] else data.X[:, idx]

    def prepare(self, train: FeatureSet, valid: FeatureSet | None = None):
        """LightGBM Datasets, binned once: retraining with other row weights reuses the bins."""
        self.features_ = self._columns(train)
        self.categorical_ = [n for n in self.features_ if n in train.categorical]
        dtrain = lgb.Dataset(self._matrix(train), label=train.y, feature_name=self.features_,
                             categorical_feature=self.categorical_, free_raw_data=False,
                             params={"max_bin": self.max_bin, "verbose": -1})
        dvalid = None
        if valid is not None and self.early_stopping_rounds:
            dvalid = lgb.Dataset(self._matrix(valid), label=valid.y, reference=dtrain, free_raw_data=False)
        return self.features_, self.categorical_, dtrain, dvalid

    def fit_prepared(self, prepared, sample_weight=None, init=None) -> "LightGBMModel":
        self.features_, self.categorical_, dtrain, dvalid = prepared
        set_row_weights(dtrain, sample_weight)
        callbacks, valid_sets = [], []
        if dvalid is not None:
            valid_sets = [dvalid]
            callbacks = [lgb.early_stopping(self.early_stopping_rounds, first_metric_only=True, verbose=False)]
        self.booster_ = lgb.train(self.params(), dtrain, num_boost_round=self.n_estimators, valid_sets=valid_sets,
                                  callbacks=callbacks, keep_training_booster=False)
        if self.booster_.best_iteration > 0:  # keep only the trees early stopping chose
            best = self.booster_.best_iteration
            self.booster_ = lgb.Booster(model_str=self.booster_.model_to_string(num_iteration=best))
        return self

    def fit_on_engine(self, eng, train_path: Path, valid: FeatureSet, valid_path: Path | None = None) -> "LightGBMModel":
        """Stage 04 with `engine: dask`: data-parallel LightGBM on the engine's workers, which read the splits'
        parquet files themselves (musicrec.families.lgbm.dask_fit); the booster is saved like a local fit's."""
        from musicrec.families.lgbm.dask_fit import fit_on_cluster

        return fit_on_cluster(self, eng, train_path, valid, valid_path)

    def predict_raw(self, data: FeatureSet) -> np.ndarray:
        return self.booster_.predict(self._matrix(data), raw_score=True, num_threads=self.n_jobs)

    def predict_proba(self, data: FeatureSet) -> np.ndarray:
        return two_columns(1.0 / (1.0 + np.exp(-self.predict_raw(data))))

    def predict_logit(self, data: FeatureSet) -> np.ndarray:
        return self.predict_raw(data)

    def save(self, folder: Path) -> list[str]:
        self.booster_.save_model(folder / "lgbm.txt")
        (folder / "lgbm.json").write_text(json.dumps({
            "features": self.features_, "categorical": self.categorical_,
            "init": self.init_args(),
            "params": self.params()}, indent=2) + "\n")
        return ["lgbm.txt", "lgbm.json"]

    @classmethod
    def load(cls, folder: Path) -> "LightGBMModel":
        meta = json.loads((folder / "lgbm.json").read_text())
        m = cls(**meta["init"])  # the influence stage needs the learning rate and regularisation back
        m.features_, m.categorical_ = meta["features"], meta["categorical"]
        m.booster_ = lgb.Booster(model_file=str(folder / "lgbm.txt"))
        return m

    def info(self) -> dict:
        return {"trees": self.booster_.num_trees(), "features": len(self.features_)}

    def importance(self) -> tuple[list[str], np.ndarray]:
        return self.features_, self.booster_.feature_importance(importance_type="gain")
