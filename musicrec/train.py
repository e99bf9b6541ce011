"""Stage 04: fit every configured model family on the train split and save it in its own format."""
from __future__ import annotations

import json
import logging
import time

import numpy as np

from musicrec.config import MODEL_NAMES
from musicrec.manifest import StageRun
from musicrec.metrics import classification_metrics
from musicrec.models import load_feature_set, make_model
from musicrec.progress import track
from musicrec.rng import model_seed, stage_rng
from musicrec.sources import untimed

log = logging.getLogger("musicrec")

STAGE = "04_train"
TRAIN_SCORE_ROWS = 500_000
RANKING_MODELS = ("als",)


def load_splits(st: StageRun, names=("train", "valid")) -> tuple[dict, dict]:
    spec = json.loads(st.input("03_features", "features.json").read_text())
    return spec, {n: load_feature_set(st.input("03_features", f"features_{n}.parquet"), spec) for n in names}


def run(cfg: dict, force: bool = False) -> dict:
    tcfg = cfg["train"]
    with StageRun(STAGE, cfg, force=force) as st:
        with st.step("read features"):
            spec, data = load_splits(st)
        train, valid = data["train"], data["valid"]
        log.info("%s: train %d x %d, valid %d rows", STAGE, *train.X.shape, len(valid))
        # train-split metrics on a seeded subsample: scoring 7M rows per model costs minutes, not insight
        sample = stage_rng(cfg, 4, len(MODEL_NAMES)).permutation(len(train))[:TRAIN_SCORE_ROWS]
        scored = {"train": train.take(np.sort(sample)) if len(train) > TRAIN_SCORE_ROWS else train, "valid": valid}
        report = {"rows": {"train": len(train), "valid": len(valid), "train_scored": len(scored["train"])},
                  "features": len(train.names), "models": {}}
        names = list(tcfg["models"])
        if untimed(cfg):
            names = [n for n in names if n in RANKING_MODELS]
            log.info("%s: hetrec play counts: training the ranking models only (ALS here, popularity in 05); "
                     "the classification models (prior, nb, lr, rf, lgbm) need labelled events", STAGE)
        for name in track(names, f"{STAGE}: models fitted", unit="models", every=0):
            model = make_model(name, tcfg, model_seed(cfg, name))
            with st.step(f"fit {name}"):
                t0 = time.perf_counter()
                model.fit(train, valid)
                fit_s = time.perf_counter() - t0
            with st.step(f"score {name}"):
                entry = {} if untimed(cfg) else {  # untimed: every row a positive, nothing to classify
                    split: classification_metrics(d.y, model.predict_proba(d)[:, 1]) for split, d in scored.items()}
            files = model.save(st.tmp)
            for f in files:
                st.output(f)
            entry.update(fit_seconds=round(fit_s, 3), files=files, info=model.info())
            report["models"][name] = entry
            if "valid" in entry:
                log.info("%s: %s valid AUC %.4f logloss %.4f (fit %.1fs)", STAGE, name, entry["valid"]["auc"] or 0,
                         entry["valid"]["logloss"], fit_s)
        st.write_json(report, "metrics.json")
        st.info.update(models=names)
    return report
