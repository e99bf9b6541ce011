"""Stage 04: fit every configured model family on the train split and save it in its own format.

models.json says which family made each model and which files hold it (stages 05 and 06 load the
models through it); metrics.json holds their train and validation quality.
"""
from __future__ import annotations

import io
import json
import logging
import time

import numpy as np
import polars as pl

from musicrec import families
from musicrec.engine import open_engine
from musicrec.manifest import StageRun
from musicrec.metrics import classification_metrics
from musicrec.models import FeatureSet, load_feature_set
from musicrec.outputs.train import (Classification, FitMetrics, ModelsManifest, TrainedModel, TrainMetrics,
                                    TrainRows)
from musicrec.progress import track
from musicrec.rng import model_seed, stream
from musicrec.sources import untimed

log = logging.getLogger("musicrec")

STAGE = "04_train"
TRAIN_SCORE_ROWS = 500_000


def load_splits(st: StageRun, names=("train", "valid")) -> tuple[dict, dict]:
    spec = json.loads(st.input("03_features", "features.json").read_text())
    return spec, {n: load_feature_set(st.input("03_features", f"features_{n}.parquet"), spec) for n in names}


def fits_on_cluster(model) -> bool:
    """The model's family trains it on the engine's workers (its `engine` argument says dask)."""
    return getattr(model, "engine", "local") == "dask" and hasattr(model, "fit_on_engine")


def read_rows(path, spec: dict, rows: np.ndarray) -> FeatureSet:
    """Some rows of a features parquet, streamed (the file is never whole in memory), as load_feature_set reads them."""
    buf = io.BytesIO()
    (pl.scan_parquet(path).with_row_index("_row").filter(pl.col("_row").is_in(pl.Series(rows).implode()))
     .drop("_row").collect(engine="streaming").write_parquet(buf))
    buf.seek(0)
    return load_feature_set(buf, spec)


def run(cfg: dict, force: bool = False) -> TrainMetrics:
    tcfg = cfg["train"]
    with StageRun(STAGE, cfg, force=force) as st:
        names = list(tcfg["models"])
        if untimed(cfg):
            names = [n for n in names if families.get(n).ranker]
            log.info("%s: untimed play counts: training the ranking families only (%s; popularity in 05); "
                     "the classifiers need labelled events", STAGE, ", ".join(names) or "none configured")
        models = {name: families.get(name).make(tcfg, model_seed(cfg, name)) for name in names}
        on_client = not names or not all(fits_on_cluster(m) for m in models.values())
        train_path = st.input("03_features", "features_train.parquet")
        with st.step("read"):
            # the train split is read here only for a model fitted here (the cluster's workers read their own rows)
            spec, data = load_splits(st, ("train", "valid") if on_client else ("valid",))
        valid = data["valid"]
        n_train = len(data["train"]) if on_client else pl.scan_parquet(train_path).select(pl.len()).collect().item()
        log.info("%s: train %d x %d, valid %d rows", STAGE, n_train, len(valid.names), len(valid))
        # train-split metrics on a seeded subsample: scoring 7M rows per model costs minutes, not insight
        sample = np.sort(stream(cfg, STAGE, "train_score_sample").permutation(n_train)[:TRAIN_SCORE_ROWS])
        train = data.get("train")
        if train is not None:
            scored = {"train": train.take(sample) if n_train > TRAIN_SCORE_ROWS else train, "valid": valid}
        else:
            with st.step("read the train-score sample"):
                scored = {"train": read_rows(train_path, spec, sample), "valid": valid}
        metrics = TrainMetrics(TrainRows(n_train, len(valid), len(scored["train"])), len(valid.names), {})
        manifest = ModelsManifest({}, len(valid.names))
        for name in track(names, f"{STAGE}: models fitted", unit="models", every=0):
            model = models[name]
            with st.step(f"fit {name}"):
                t0 = time.perf_counter()
                if fits_on_cluster(model):
                    with open_engine(cfg, st) as eng:
                        model.fit_on_engine(eng, train_path, valid, st.input("03_features", "features_valid.parquet"))
                else:
                    model.fit(train, valid)
                fit_s = time.perf_counter() - t0
            entry = FitMetrics(round(fit_s, 3))
            if not untimed(cfg):   # untimed: every row a positive, nothing to classify
                with st.step(f"score {name}"):
                    entry.train, entry.valid = (Classification(**classification_metrics(d.y, model.predict_proba(d)[:, 1]))
                                                for d in (scored["train"], scored["valid"]))
            files = model.save(st.tmp)
            for f in files:
                st.output(f)
            manifest.models[name] = TrainedModel(family=name, origin=families.origin(name), files=files,
                                                 params=model.init_args(), info=model.info(),
                                                 fit_seconds=round(fit_s, 3))
            metrics.models[name] = entry
            if entry.valid is not None:
                log.info("%s: %s valid AUC %.4f logloss %.4f (fit %.1fs)", STAGE, name, entry.valid.auc or 0,
                         entry.valid.logloss, fit_s)
        manifest.write(st.output("models.json"))
        metrics.write(st.output("metrics.json"))
        st.info.update(models=names)
    return metrics
