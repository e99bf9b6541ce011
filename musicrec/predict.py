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
from musicrec.recommend import popularity_scores, recommend, recommend_popular, similar_songs, train_plays
from musicrec.rng import stage_rng
from musicrec.sources import untimed
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


def relevant_matrix(test: pl.DataFrame, users: np.ndarray, n_songs: int) -> sp.csr_matrix:
    """Users x songs: the songs each test user replayed in test (the ranking's relevant items)."""
    pos = test.filter(pl.col("target") == 1)
    row = np.searchsorted(users, pos["user"].to_numpy())
    return sp.csr_matrix((np.ones(len(row)), (row, pos["song"].to_numpy())), shape=(len(users), n_songs))


def add_intervals(ranking: dict, lists: dict[str, np.ndarray], relevant: sp.csr_matrix, k: int,
                  rng: np.random.Generator) -> None:
    """Bootstrap 95% intervals over the test users of each model's precision@k and NDCG@k, and of
    every other model's difference from the popularity baseline on the same users (paired), so that
    "ALS beats popularity" is read with its uncertainty."""
    per_user = {name: metrics.per_user_accuracy(songs, relevant, k) for name, songs in lists.items()}
    base = per_user.get("popularity")
    for name, values in per_user.items():
        for metric, v in values.items():
            ranking[name][f"{metric}_ci95"] = metrics.mean_ci(v, rng)["ci95"]
        if base is not None and name != "popularity":
            ranking[name]["minus_popularity"] = {m: metrics.mean_ci(v - base[m], rng) for m, v in values.items()}


def log_ranking(ranking: dict, k: int) -> None:
    def ci(c: list | None) -> str:
        return f"[{c[0]:.4f}, {c[1]:.4f}]" if c else "[–]"

    for name, r in ranking.items():
        line = (f"{STAGE}: ranking {name:<10} ndcg@{k} {r[f'ndcg@{k}'] or 0:.4f} {ci(r.get(f'ndcg@{k}_ci95'))} "
                f"precision@{k} {r[f'precision@{k}'] or 0:.4f} ({r['users']} users)")
        diff = r.get("minus_popularity", {}).get(f"ndcg@{k}")
        if diff and diff["value"] is not None:
            line += f"; minus popularity: ndcg@{k} {diff['value']:+.4f} {ci(diff['ci95'])}"
        log.info(line)


def score_lists(songs: np.ndarray, relevant: sp.csr_matrix, train: pl.DataFrame, n_songs: int, pcfg: dict,
                side: tuple[np.ndarray, np.ndarray]) -> tuple[dict, dict]:
    """Ranking metrics at top_k and the curves up to max_k of one model's lists."""
    popularity = np.bincount(train["song"].to_numpy(), minlength=n_songs).astype(np.float64)
    n_train_users = train["user"].n_unique()
    genre, artist = side
    k = pcfg["top_k"]
    ranking = metrics.ranking_metrics(songs, relevant, k, popularity, genre, artist, n_train_users)
    # coverage relative to the songs that can be recommended (seen in train), not every song code
    catalogue = int((popularity > 0).sum())
    ranking["coverage"] = float(len(np.unique(songs[:, :k][songs[:, :k] >= 0])) / catalogue)
    ranking["catalogue_songs"] = catalogue
    curves = metrics.ranking_curves(songs, relevant, pcfg["max_k"], popularity, genre, artist, n_train_users)
    return ranking, curves


def rank_songs(models: dict, train: pl.DataFrame, test: pl.DataFrame, n_songs: int, pcfg: dict,
               threads: int, side: tuple[np.ndarray, np.ndarray],
               rng: np.random.Generator) -> tuple[pl.DataFrame | None, dict, dict]:
    """Top-k lists of ALS (when trained) and of the popularity baseline for every test user, each
    scored against the songs that user replayed in test. Returns ALS's lists (or None), the ranking
    metrics per model (precision and NDCG with bootstrap intervals over users, and ALS's paired
    difference from popularity) and the curves per model."""
    users = np.sort(test["user"].unique().to_numpy()).astype(np.int64)
    n_users = max(int(users.max()) + 1, int(train["user"].max()) + 1)
    if "als" in models:
        n_users = max(n_users, models["als"].shape_[0])
    plays = train_plays(train["user"].to_numpy(), train["song"].to_numpy(), (n_users, n_songs))
    max_k = max(pcfg["max_k"], pcfg["top_k"])
    relevant = relevant_matrix(test, users, n_songs)
    lists = {}
    if "als" in models:
        als_plays = plays[:, :models["als"].shape_[1]]
        lists["als"] = recommend(models["als"], users, max_k, als_plays, threads)
    pop = pcfg["popularity"]
    counts = train["plays"].to_numpy() if "plays" in train.columns else 1 + train["target"].to_numpy()
    scores = popularity_scores(train["user"].to_numpy(), train["song"].to_numpy(), counts, n_songs,
                               pop["method"], pop["beta"])
    lists["popularity"] = recommend_popular(scores, users, max_k, plays, threads)
    ranking, curves = {}, {}
    for name, (songs, _) in lists.items():
        ranking[name], curves[name] = score_lists(songs, relevant, train, n_songs, pcfg, side)
    add_intervals(ranking, {name: songs for name, (songs, _) in lists.items()}, relevant, pcfg["top_k"], rng)
    recs = None
    if "als" in lists:
        k = pcfg["top_k"]
        songs, scores_k = lists["als"]
        recs = pl.DataFrame({
            "user": np.repeat(users, k).astype(np.int32),
            "rank": np.tile(np.arange(1, k + 1), len(users)).astype(np.int16),
            "song": songs[:, :k].ravel().astype(np.int32),
            "score": scores_k[:, :k].ravel(),
        }).filter(pl.col("song") >= 0)
    return recs, ranking, curves


def best_model(train_metrics: dict, choice: str, available: list[str]) -> str:
    if choice != "auto":
        if choice not in available:
            raise ConfigError(f"config key 'predict.submission_model' = {choice!r} is not allowed: that model was "
                              f"not trained (train.models: {', '.join(available)})")
        return choice
    return max(available, key=lambda m: train_metrics["models"][m]["valid"]["auc"] or 0.0)


SIMILAR_SAMPLE = 20  # the most listened train songs, and as many seeded random ones
SIMILAR_K = 10


def similar_table(model: ALSModel, train: pl.DataFrame, songs_map: pl.DataFrame, rng: np.random.Generator,
                  threads: int) -> pl.DataFrame:
    """Item-item neighbours from the ALS factors for a sample of train songs, with the songs' names."""
    listeners = train.group_by("song").agg(pl.col("user").n_unique().alias("n")).sort(["n", "song"],
                                                                                     descending=[True, False])
    listeners = listeners.filter(pl.col("song") < model.shape_[1])
    top = listeners["song"].head(SIMILAR_SAMPLE).to_numpy()
    rest = np.setdiff1d(listeners["song"].to_numpy(), top)
    sample = np.concatenate([top, np.sort(rng.choice(rest, min(SIMILAR_SAMPLE, len(rest)), replace=False))])
    ids, cos = similar_songs(model, sample, SIMILAR_K, threads)
    k = ids.shape[1]
    out = pl.DataFrame({"song": np.repeat(sample, k).astype(np.int32),
                        "sampled_as": np.repeat(np.where(np.isin(sample, top), "most listened", "random"), k),
                        "rank": np.tile(np.arange(1, k + 1), len(sample)).astype(np.int16),
                        "similar": ids.ravel().astype(np.int32), "cosine": cos.ravel()}).filter(pl.col("similar") >= 0)
    names = songs_map.select("song", *[c for c in ("song_id", "track_name", "artist_name") if c in songs_map.columns])
    return (out.join(names, on="song", how="left")
            .join(names.rename({c: f"similar_{c}" for c in names.columns if c != "song"}).rename({"song": "similar"}),
                  on="similar", how="left").sort("song", "rank"))


def trained_models(st: StageRun) -> tuple[dict, list[str], dict]:
    """04's metrics, the names of the models it trained, and the models (each file checked as an input)."""
    train_metrics = json.loads(st.input("04_train", "metrics.json").read_text())
    names = list(train_metrics["models"])
    for name in names:
        for f in train_metrics["models"][name]["files"]:
            st.input("04_train", f)
    return train_metrics, names, {n: load_model(n, st.dir.parent / "04_train") for n in names}


def rank_only(cfg: dict, st: StageRun) -> dict:
    """Untimed play counts (hetrec): the ranking models' top-k lists (with names) and ranking metrics only."""
    pcfg, threads = cfg["predict"], cfg["train"]["threads"]
    with st.step("read"):
        train_metrics, names, models = trained_models(st)
        cols = ["user", "song", "target", "genre", "artist", "plays"]
        train_rows = pl.read_parquet(st.input("02_split", "train.parquet"), columns=cols)
        test_rows = pl.read_parquet(st.input("02_split", "test.parquet"), columns=["time_order", *cols])
        songs_map = pl.read_parquet(st.input("01_preprocess", "songs.parquet"))
        users_map = pl.read_parquet(st.input("01_preprocess", "users.parquet"), columns=["user", "msno"])
    with st.step("recommend"):
        side = song_side_info([train_rows, test_rows], songs_map.height)
        test_pos = test_rows.with_columns(pl.lit(1, pl.Int8).alias("target"))  # every held-out pair is relevant
        recs, ranking, curves = rank_songs(models, train_rows, test_pos, songs_map.height, pcfg, threads, side,
                                           stage_rng(cfg, 5, 1))
        if recs is not None:
            recs = (recs.join(users_map, on="user", how="left")
                    .join(songs_map.select("song", pl.col("song_id").alias("artist_id"), "artist_name"), on="song",
                          how="left"))
            st.write_parquet(recs.sort("user", "rank"), "recommendations.parquet")
            st.write_parquet(similar_table(models["als"], train_rows, songs_map, stage_rng(cfg, 5), threads),
                             "similar_songs.parquet")
    with st.step("plots"):
        plots.ranking_curves(curves, st.output("plots/ranking_curves.png"))
    report = {"rows": test_rows.height, "models": {},
              "note": "play counts without time: no labelled event, so no classification metric; ranking "
                      "against a seeded per-user holdout of pairs",
              "ranking": ranking}
    st.write_json(report, "metrics.json")
    st.info.update(models=names, rows=test_rows.height)
    k = pcfg["top_k"]
    log_ranking(ranking, k)
    return report


def run(cfg: dict, force: bool = False) -> dict:
    pcfg = cfg["predict"]
    threads = cfg["train"]["threads"]
    with StageRun(STAGE, cfg, force=force) as st:
        if untimed(cfg):
            return rank_only(cfg, st)
        with st.step("read"):
            spec = json.loads(st.input("03_features", "features.json").read_text())
            test = load_feature_set(st.input("03_features", "features_test.parquet"), spec)
            train_metrics, names, models = trained_models(st)
            train_rows = pl.read_parquet(st.input("02_split", "train.parquet"),
                                         columns=["user", "song", "target", "genre", "artist"])
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

        with st.step("recommend"):
            side = song_side_info([train_rows, test_rows], n_songs)
            recs, ranking, curves = rank_songs(models, train_rows, test_rows, n_songs, pcfg, threads, side,
                                               stage_rng(cfg, 5, 1))
            report["ranking"] = ranking
            if recs is not None:
                users_map = pl.read_parquet(st.input("01_preprocess", "users.parquet"))
                songs_map = pl.read_parquet(st.input("01_preprocess", "songs.parquet"))
                recs = recs.join(users_map, on="user", how="left").join(songs_map, on="song", how="left")
                st.write_parquet(recs.sort("user", "rank"), "recommendations.parquet")
                st.write_parquet(similar_table(models["als"], train_rows, songs_map, stage_rng(cfg, 5), threads),
                                 "similar_songs.parquet")
            else:
                log.warning("%s: no ALS model trained, no recommendations (popularity ranking only)", STAGE)
            log_ranking(ranking, pcfg["top_k"])

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
