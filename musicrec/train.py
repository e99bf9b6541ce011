"""Stage 04: fit every configured model family on the train split and save it in its own format.

models.json says which family made each model and which files hold it (stages 05 and 06 load the
models through it); metrics.json holds their train and validation quality.
"""
from __future__ import annotations

import json
import logging
import time

import numpy as np

from musicrec import families
from musicrec.manifest import StageRun
from musicrec.metrics import classification_metrics
from musicrec.models import load_feature_set
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


def run(cfg: dict, force: bool = False) -> TrainMetrics:
    tcfg = cfg["train"]
    with StageRun(STAGE, cfg, force=force) as st:
        with st.step("read"):
            spec, data = load_splits(st)
        train, valid = data["train"], data["valid"]
        log.info("%s: train %d x %d, valid %d rows", STAGE, *train.X.shape, len(valid))
        # train-split metrics on a seeded subsample: scoring 7M rows per model costs minutes, not insight
        sample = stream(cfg, STAGE, "train_score_sample").permutation(len(train))[:TRAIN_SCORE_ROWS]
        scored = {"train": train.take(np.sort(sample)) if len(train) > TRAIN_SCORE_ROWS else train, "valid": valid}
        metrics = TrainMetrics(TrainRows(len(train), len(valid), len(scored["train"])), len(train.names), {})
        manifest = ModelsManifest({}, len(train.names))
        names = list(tcfg["models"])
        if untimed(cfg):
            names = [n for n in names if families.get(n).ranker]
            log.info("%s: untimed play counts: training the ranking families only (%s; popularity in 05); "
                     "the classifiers need labelled events", STAGE, ", ".join(names) or "none configured")
        for name in track(names, f"{STAGE}: models fitted", unit="models", every=0):
            family = families.get(name)
            model = family.make(tcfg, model_seed(cfg, name))
            with st.step(f"fit {name}"):
                t0 = time.perf_counter()
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
                                                 params=model.init_args(), info=model.info())
            metrics.models[name] = entry
            if entry.valid is not None:
                log.info("%s: %s valid AUC %.4f logloss %.4f (fit %.1fs)", STAGE, name, entry.valid.auc or 0,
                         entry.valid.logloss, fit_s)
        manifest.write(st.output("models.json"))
        metrics.write(st.output("metrics.json"))
        st.info.update(models=names)
    return metrics
