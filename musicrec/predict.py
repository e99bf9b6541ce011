"""Stage 05: score every trained model on the held-out test split, recommend, plot, submit.

The synthetic ground truth is read here for the first time: the oracle (true probabilities on the
same test rows) is the ceiling every model is compared with, and the Kaggle-style submission is
scored against the hidden labels of test.csv.
"""
from __future__ import annotations

import json
import logging

import numpy as np
import polars as pl

from musicrec import families, metrics, plots
from musicrec.config import ConfigError
from musicrec.families.trained import load_trained
from musicrec.manifest import StageRun, read_manifest
from musicrec.models import load_feature_set
from musicrec.outputs.predict import PredictMetrics, Submission
from musicrec.outputs.train import Classification, TrainMetrics
from musicrec.progress import track
from musicrec.ranking import log_ranking, rank_songs, rankers, similar_table, song_side_info
from musicrec.rng import stream
from musicrec.sources import untimed
from musicrec.stats import hanley_mcneil_interval, wilson_interval
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


def quality_on_test(y: np.ndarray, p: np.ndarray) -> Classification:
    """Classification metrics of one model on the test rows, with the AUC's 95% interval (Hanley &
    McNeil's standard error) and the accuracy's (Wilson)."""
    q = Classification(**metrics.classification_metrics(y, p))
    n_pos = int((y == 1).sum())
    if q.auc is not None:
        q.auc_ci95 = hanley_mcneil_interval(q.auc, n_pos, len(y) - n_pos)
    q.accuracy_ci95 = wilson_interval(int(round(q.accuracy * len(y))), len(y))
    return q


def best_model(train_metrics: TrainMetrics, choice: str, available: list[str]) -> str:
    """The model behind submission.csv: the configured one, or the best validation AUC in 04."""
    if choice != "auto":
        if choice not in available:
            raise ConfigError(f"config key 'predict.submission_model' = {choice!r} is not allowed: that model was "
                              f"not trained (train.models: {', '.join(available)})")
        return choice
    return max(available, key=lambda m: train_metrics.models[m].valid.auc or 0.0)


def write_rankings(cfg: dict, st: StageRun, models: dict, recs, train_rows, songs_map, users_map,
                   song_names=None) -> None:
    """recommendations.parquet (the first ranking family's lists, with the names of `song_names`,
    default songs_map) and similar_songs.parquet."""
    if recs is None:
        log.warning("%s: no ranking family trained, no recommendations (popularity ranking only)", STAGE)
        return
    names = songs_map if song_names is None else song_names
    st.write_parquet(recs.join(users_map, on="user", how="left").join(names, on="song", how="left")
                     .sort("user", "rank"), "recommendations.parquet")
    first = models[rankers(models)[0]]
    st.write_parquet(similar_table(first, train_rows, songs_map, stream(cfg, STAGE, "similar_songs"),
                                   cfg["train"]["threads"]), "similar_songs.parquet")


def rank_only(cfg: dict, st: StageRun) -> PredictMetrics:
    """Untimed play counts (hetrec): the ranking models' top-k lists (with names) and ranking metrics only."""
    pcfg, threads = cfg["predict"], cfg["train"]["threads"]
    with st.step("read"):
        _, models = load_trained(st)
        cols = ["user", "song", "target", "genre", "artist", "plays"]
        train_rows = pl.read_parquet(st.input("02_split", "train.parquet"), columns=cols)
        test_rows = pl.read_parquet(st.input("02_split", "test.parquet"), columns=["time_order", *cols])
        songs_map = pl.read_parquet(st.input("01_preprocess", "songs.parquet"))
        users_map = pl.read_parquet(st.input("01_preprocess", "users.parquet"), columns=["user", "msno"])
    with st.step("recommend"):
        side = song_side_info([train_rows, test_rows], songs_map.height)
        test_pos = test_rows.with_columns(pl.lit(1, pl.Int8).alias("target"))  # every held-out pair is relevant
        recs, ranking, curves = rank_songs(models, train_rows, test_pos, songs_map.height, pcfg, threads, side,
                                           stream(cfg, STAGE, "ranking_intervals"))
        artists = songs_map.select("song", pl.col("song_id").alias("artist_id"), "artist_name")
        write_rankings(cfg, st, models, recs, train_rows, songs_map, users_map, artists)
    with st.step("plots"):
        plots.ranking_curves(curves, st.output("plots/ranking_curves.png"))
    report = PredictMetrics(rows=test_rows.height, models={}, ranking=ranking,
                            note="play counts without time: no labelled event, so no classification metric; "
                                 "ranking against a seeded per-user holdout of pairs")
    report.write(st.output("metrics.json"))
    st.info.update(models=list(models), rows=test_rows.height)
    log_ranking(STAGE, ranking)
    return report


def submission(cfg: dict, st: StageRun, spec: dict, models: dict, train_metrics: TrainMetrics,
               truth) -> Submission:
    """submission.csv for Kaggle's test rows, from the chosen model; scored where the truth is known."""
    kaggle = load_feature_set(st.input("03_features", "features_kaggle.parquet"), spec)
    chosen = best_model(train_metrics, cfg["predict"]["submission_model"], list(models))
    p = models[chosen].predict_proba(kaggle)[:, 1]
    sub = pl.DataFrame({"id": kaggle.keys["id"], "target": p}).sort("id")
    sub.write_csv(st.output("submission.csv"), float_precision=6)
    out = Submission(model=chosen, rows=sub.height)
    kt = truth_for(truth, "test", sub["id"])
    if kt is not None:
        labels = kt["label"].to_numpy()
        out.auc_vs_hidden_truth = metrics.auc(labels, sub["target"].to_numpy())
        out.oracle_auc = metrics.auc(labels, kt["p_true"].to_numpy())
    return out


def run(cfg: dict, force: bool = False) -> PredictMetrics:
    pcfg = cfg["predict"]
    threads = cfg["train"]["threads"]
    with StageRun(STAGE, cfg, force=force) as st:
        if untimed(cfg):
            return rank_only(cfg, st)
        with st.step("read"):
            spec = json.loads(st.input("03_features", "features.json").read_text())
            test = load_feature_set(st.input("03_features", "features_test.parquet"), spec)
            _, models = load_trained(st)
            train_metrics = TrainMetrics.read(st.input("04_train", "metrics.json"))
            train_rows = pl.read_parquet(st.input("02_split", "train.parquet"),
                                         columns=["user", "song", "target", "genre", "artist"])
            test_rows = pl.read_parquet(st.input("02_split", "test.parquet"),
                                        columns=["time_order", "user", "song", "target", "genre", "artist"])
            categories = pl.read_parquet(st.input("01_preprocess", "categories.parquet"))
            songs_map = pl.read_parquet(st.input("01_preprocess", "songs.parquet"))
            users_map = pl.read_parquet(st.input("01_preprocess", "users.parquet"))
            truth = read_truth(cfg, st)

        with st.step("predict"):
            y = test.y
            classifiers = [n for n in models if families.get(n).classifier]
            probs = {n: models[n].predict_proba(test)[:, 1]
                     for n in track(classifiers, f"{STAGE}: models scored", unit="models", every=0)}
            report = PredictMetrics(rows=len(test), models={n: quality_on_test(y, p) for n, p in probs.items()},
                                    ranking={})
            tt = truth_for(truth, "train", test.keys["time_order"])
            if tt is not None:
                report.oracle = quality_on_test(y, tt["p_true"].to_numpy())
            tabs = categories.filter(pl.col("column") == "source_system_tab")
            seg = segment_labels(test.keys, train_rows, test.column("source_system_tab").astype(np.int64),
                                 dict(zip(tabs["code"].to_list(), tabs["value"].to_list())))
            report.segments = {n: metrics.auc_by_segment(y, p, seg) for n, p in probs.items()}
            pred = test.keys.select("time_order", "user", "song").with_columns(pl.Series("target", y))
            if tt is not None:
                pred = pred.with_columns(tt["p_true"].alias("p_true"))
            pred = pred.with_columns(pl.Series(f"p_{n}", p, dtype=pl.Float64) for n, p in probs.items())
            st.write_parquet(pred, "predictions.parquet")

        with st.step("recommend"):
            side = song_side_info([train_rows, test_rows], songs_map.height)
            recs, report.ranking, curves = rank_songs(models, train_rows, test_rows, songs_map.height, pcfg, threads,
                                                      side, stream(cfg, STAGE, "ranking_intervals"))
            write_rankings(cfg, st, models, recs, train_rows, songs_map, users_map)
            log_ranking(STAGE, report.ranking)

        if "features_kaggle.parquet" in read_manifest(cfg, "03_features")["outputs"]:
            with st.step("submission"):
                report.submission = submission(cfg, st, spec, {n: models[n] for n in classifiers}, train_metrics,
                                               truth)

        with st.step("plots"):
            draw_plots(st, y, probs, report, models, curves, None if tt is None else tt["p_true"].to_numpy(), pcfg)
        report.write(st.output("metrics.json"))
        st.info.update(models=list(models), rows=len(test))
        for n, m in report.models.items():
            log.info("%s: %-5s test AUC %.4f logloss %.4f", STAGE, n, m.auc or 0, m.logloss)
        if report.oracle is not None:
            log.info("%s: oracle AUC %.4f", STAGE, report.oracle.auc)
    return report


def draw_plots(st: StageRun, y, probs: dict, report: PredictMetrics, models: dict, curves: dict, oracle,
               pcfg: dict) -> None:
    figures = [
        lambda: plots.roc_curves(y, probs, st.output("plots/roc.png"), oracle=oracle),
        lambda: plots.calibration_curves(y, probs, st.output("plots/calibration.png"), bins=pcfg["calibration_bins"]),
        lambda: plots.confusion_matrices(y, probs, st.output("plots/confusion.png")),
        lambda: plots.auc_by_segment(report.segments, st.output("plots/auc_by_segment.png")),
        lambda: plots.ranking_curves(curves, st.output("plots/ranking_curves.png")),
    ]
    for name, model in models.items():
        importance = model.importance()
        if importance is not None:
            figures.append(lambda name=name, importance=importance: plots.feature_importance(
                *importance, st.output(f"plots/{name}_importance.png")))
    for draw in track(figures, f"{STAGE}: plots drawn", unit="plots", every=0):
        draw()
