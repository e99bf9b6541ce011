"""Stage 05: score every trained model on the held-out test split, recommend, plot, submit.

The synthetic ground truth is read here for the first time: the oracle AUC (true probabilities on
the same test rows) is the ceiling every model is compared with, and the Kaggle-style submission is
scored against the hidden labels of test.csv.
"""
from __future__ import annotations

import json
import logging

import numpy as np
import polars as pl
import scipy.sparse as sp

from musicrec import metrics, plots
from musicrec.config import ConfigError
from musicrec.manifest import StageRun, read_manifest
from musicrec.models import load_feature_set, load_model
from musicrec.models.als import ALSModel
from musicrec.progress import track
from musicrec.recommend import recommend, train_plays
from musicrec.truth import read_truth, truth_for

log = logging.getLogger("musicrec")

STAGE = "05_predict"


def segment_labels(test_keys: pl.DataFrame, train_keys: pl.DataFrame, tabs: np.ndarray,
                   tab_names: dict[int, str]) -> dict[str, np.ndarray]:
    """Per-row segment labels: seen/unseen user and song (in the train split), source tab."""
    seen = {}
    for col in ("user", "song"):
        known = test_keys[col].is_in(train_keys[col].unique().implode()).to_numpy()
        seen[f"{col}_seen"] = np.where(known, "seen", "unseen")
    lookup = np.array([tab_names.get(c, str(c)) for c in range(int(tabs.max()) + 1)], dtype=object)
    seen["source_system_tab"] = lookup[tabs]
    return seen


def song_side_info(frames: list[pl.DataFrame], n_songs: int) -> tuple[np.ndarray, np.ndarray]:
    """Genre and artist code per song code (-1 where a song never appears in the splits)."""
    songs = pl.concat([f.select("song", "genre", "artist") for f in frames]).unique("song")
    genre = np.full(n_songs, -1, dtype=np.int64)
    artist = np.full(n_songs, -1, dtype=np.int64)
    idx = songs["song"].to_numpy()
    genre[idx], artist[idx] = songs["genre"].to_numpy(), songs["artist"].to_numpy()
    return genre, artist


def rank_songs(model: ALSModel, train: pl.DataFrame, test: pl.DataFrame, n_songs: int, pcfg: dict,
               threads: int, side: tuple[np.ndarray, np.ndarray]) -> tuple[pl.DataFrame, dict, dict]:
    """ALS top-k for every test user, scored against the songs each user replayed in test."""
    users = np.sort(test["user"].unique().to_numpy()).astype(np.int64)
    n_users = max(int(users.max()) + 1, model.shape_[0])
    plays = train_plays(train["user"].to_numpy(), train["song"].to_numpy(), (n_users, model.shape_[1]))
    max_k = max(pcfg["max_k"], pcfg["top_k"])
    songs, scores = recommend(model, users, max_k, plays, threads)

    pos = test.filter(pl.col("target") == 1)
    row = np.searchsorted(users, pos["user"].to_numpy())
    relevant = sp.csr_matrix((np.ones(len(row)), (row, pos["song"].to_numpy())), shape=(len(users), n_songs))
    popularity = np.bincount(train["song"].to_numpy(), minlength=n_songs).astype(np.float64)
    n_train_users = train["user"].n_unique()
    genre, artist = side
    ranking = metrics.ranking_metrics(songs, relevant, pcfg["top_k"], popularity, genre, artist, n_train_users)
    # coverage relative to the songs that can be recommended (seen in train), not every song code
    catalogue = int((popularity > 0).sum())
    ranking["coverage"] = float(len(np.unique(songs[:, :pcfg["top_k"]][songs[:, :pcfg["top_k"]] >= 0])) / catalogue)
    ranking["catalogue_songs"] = catalogue
    curves = metrics.ranking_curves(songs, relevant, pcfg["max_k"], popularity, genre, artist, n_train_users)
    k = pcfg["top_k"]
    recs = pl.DataFrame({
        "user": np.repeat(users, k).astype(np.int32),
        "rank": np.tile(np.arange(1, k + 1), len(users)).astype(np.int16),
        "song": songs[:, :k].ravel().astype(np.int32),
        "score": scores[:, :k].ravel(),
    }).filter(pl.col("song") >= 0)
    return recs, ranking, curves


def best_model(train_metrics: dict, choice: str, available: list[str]) -> str:
    if choice != "auto":
        if choice not in available:
            raise ConfigError(f"config key 'predict.submission_model' = {choice!r} is not allowed: that model was "
                              f"not trained (train.models: {', '.join(available)})")
        return choice
    return max(available, key=lambda m: train_metrics["models"][m]["valid"]["auc"] or 0.0)


def run(cfg: dict, force: bool = False) -> dict:
    pcfg = cfg["predict"]
    threads = cfg["train"]["threads"]
    with StageRun(STAGE, cfg, force=force) as st:
        with st.step("read"):
            spec = json.loads(st.input("03_features", "features.json").read_text())
            test = load_feature_set(st.input("03_features", "features_test.parquet"), spec)
            train_metrics = json.loads(st.input("04_train", "metrics.json").read_text())
            names = list(train_metrics["models"])
            for name in names:
                for f in train_metrics["models"][name]["files"]:
                    st.input("04_train", f)
            models = {n: load_model(n, st.dir.parent / "04_train") for n in names}
            train_rows = pl.read_parquet(st.input("02_split", "train.parquet"),
                                         columns=["user", "song", "genre", "artist"])
            test_rows = pl.read_parquet(st.input("02_split", "test.parquet"),
                                        columns=["time_order", "user", "song", "target", "genre", "artist"])
            categories = pl.read_parquet(st.input("01_preprocess", "categories.parquet"))
            n_songs = pl.read_parquet(st.input("01_preprocess", "songs.parquet"), columns=["song"]).height
            truth = read_truth(cfg, st)

        with st.step("predict"):
            y = test.y
            probs = {n: models[n].predict_proba(test)[:, 1]
                     for n in track(list(models), f"{STAGE}: models scored", unit="models", every=0)}
            report: dict = {"rows": len(test), "models": {n: metrics.classification_metrics(y, p)
                                                          for n, p in probs.items()}}
            tt = truth_for(truth, "train", test.keys["time_order"])
            if tt is not None:
                report["oracle"] = {"auc": metrics.oracle_auc(y, tt["p_true"].to_numpy()),
                                    **metrics.classification_metrics(y, tt["p_true"].to_numpy())}
            tabs = categories.filter(pl.col("column") == "source_system_tab")
            seg = segment_labels(test.keys, train_rows, test.column("source_system_tab").astype(np.int64),
                                 dict(zip(tabs["code"].to_list(), tabs["value"].to_list())))
            report["segments"] = {n: metrics.auc_by_segment(y, p, seg) for n, p in probs.items()}
            pred = test.keys.select("time_order", "user", "song").with_columns(pl.Series("target", y))
            if tt is not None:
                pred = pred.with_columns(tt["p_true"].alias("p_true"))
            pred = pred.with_columns(pl.Series(f"p_{n}", p, dtype=pl.Float64) for n, p in probs.items())
            st.write_parquet(pred, "predictions.parquet")

        curves = None
        if "als" in models:
            with st.step("recommend"):
                side = song_side_info([train_rows, test_rows], n_songs)
                recs, ranking, curves = rank_songs(models["als"], train_rows, test_rows, n_songs, pcfg, threads, side)
                users_map = pl.read_parquet(st.input("01_preprocess", "users.parquet"))
                songs_map = pl.read_parquet(st.input("01_preprocess", "songs.parquet"))
                recs = recs.join(users_map, on="user", how="left").join(songs_map, on="song", how="left")
                report["ranking"] = ranking
                st.write_parquet(recs.sort("user", "rank"), "recommendations.parquet")
        else:
            report["ranking"] = None
            log.warning("%s: no ALS model trained, no recommendations", STAGE)

        kaggle_name = "features_kaggle.parquet"
        if kaggle_name in read_manifest(cfg, "03_features")["outputs"]:
            with st.step("submission"):
                kaggle = load_feature_set(st.input("03_features", kaggle_name), spec)
                chosen = best_model(train_metrics, pcfg["submission_model"], names)
                p = models[chosen].predict_proba(kaggle)[:, 1]
                sub = pl.DataFrame({"id": kaggle.keys["id"], "target": p}).sort("id")
                sub.write_csv(st.output("submission.csv"), float_precision=6)
                report["submission"] = {"model": chosen, "rows": sub.height}
                kt = truth_for(truth, "test", sub["id"])
                if kt is not None:
                    report["submission"]["auc_vs_hidden_truth"] = metrics.oracle_auc(kt["label"].to_numpy(),
                                                                                    sub["target"].to_numpy())
                    report["submission"]["oracle_auc"] = metrics.oracle_auc(kt["label"].to_numpy(),
                                                                            kt["p_true"].to_numpy())

        with st.step("plots"):
            oracle = None if tt is None else tt["p_true"].to_numpy()
            figures = [
                lambda: plots.roc_curves(y, probs, st.output("plots/roc.png"), oracle=oracle),
                lambda: plots.calibration_curves(y, probs, st.output("plots/calibration.png"),
                                                 bins=pcfg["calibration_bins"]),
                lambda: plots.confusion_matrices(y, probs, st.output("plots/confusion.png")),
                lambda: plots.auc_by_segment(report["segments"], st.output("plots/auc_by_segment.png")),
            ]
            if "lgbm" in models:
                figures.append(lambda: plots.feature_importance(*models["lgbm"].importance(),
                                                                st.output("plots/lgbm_importance.png")))
            if curves is not None:
                figures.append(lambda: plots.ranking_curves(curves, st.output("plots/ranking_curves.png")))
            for draw in track(figures, f"{STAGE}: plots drawn", unit="plots", every=0):
                draw()
        st.write_json(report, "metrics.json")
        st.info.update(models=names, rows=len(test))
        for n, m in report["models"].items():
            log.info("%s: %-5s test AUC %.4f logloss %.4f", STAGE, n, m["auc"] or 0, m["logloss"])
        if "oracle" in report:
            log.info("%s: oracle AUC %.4f", STAGE, report["oracle"]["auc"])
    return report
