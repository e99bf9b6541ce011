"""Stage 05's rankings: top-k lists of every ranking family and of the popularity baseline for each
test user, scored against the songs that user replayed in test, with intervals over users."""
from __future__ import annotations

import logging

import numpy as np
import polars as pl
import scipy.sparse as sp

from musicrec import families, metrics
from musicrec.outputs.common import Interval
from musicrec.outputs.predict import Ranking
from musicrec.recommend import popularity_scores, recommend_popular, train_plays

log = logging.getLogger("musicrec")

POPULARITY = "popularity"
SIMILAR_SAMPLE = 20  # the most listened train songs, and as many seeded random ones
SIMILAR_K = 10


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


def rankers(models: dict) -> list[str]:
    """The trained models whose family ranks songs, in training order."""
    return [n for n in models if families.get(n).ranker]


def score_lists(songs: np.ndarray, relevant: sp.csr_matrix, train: pl.DataFrame, n_songs: int, pcfg: dict,
                side: tuple[np.ndarray, np.ndarray]) -> tuple[Ranking, dict]:
    """Ranking metrics at top_k and the curves up to max_k of one model's lists."""
    popularity = np.bincount(train["song"].to_numpy(), minlength=n_songs).astype(np.float64)
    n_train_users = train["user"].n_unique()
    genre, artist = side
    k = pcfg["top_k"]
    at_k = metrics.ranking_metrics(songs, relevant, k, popularity, genre, artist, n_train_users)
    plain = {key.removesuffix(f"@{k}"): v for key, v in at_k.items()}
    # coverage relative to the songs that can be recommended (seen in train), not every song code
    catalogue = int((popularity > 0).sum())
    plain["coverage"] = float(len(np.unique(songs[:, :k][songs[:, :k] >= 0])) / catalogue)
    curves = metrics.ranking_curves(songs, relevant, pcfg["max_k"], popularity, genre, artist, n_train_users)
    return Ranking(k=k, catalogue_songs=catalogue, **plain), curves


def add_intervals(ranking: dict[str, Ranking], lists: dict[str, np.ndarray], relevant: sp.csr_matrix, k: int,
                  rng: np.random.Generator) -> None:
    """Bootstrap 95% intervals over the test users of each model's precision@k and NDCG@k, and of
    every other model's difference from the popularity baseline on the same users (paired), so that
    "ALS beats popularity" is read with its uncertainty."""
    per_user = {name: metrics.per_user_accuracy(songs, relevant, k) for name, songs in lists.items()}
    base = per_user.get(POPULARITY)
    for name, values in per_user.items():
        r = ranking[name]
        r.precision_ci95 = metrics.mean_ci(values[f"precision@{k}"], rng).ci95
        r.ndcg_ci95 = metrics.mean_ci(values[f"ndcg@{k}"], rng).ci95
        if base is not None and name != POPULARITY:
            r.minus_popularity = {m.removesuffix(f"@{k}"): metrics.mean_ci(v - base[m], rng) for m, v in values.items()}


def log_ranking(stage: str, ranking: dict[str, Ranking]) -> None:
    def ci(c: list | None) -> str:
        return f"[{c[0]:.4f}, {c[1]:.4f}]" if c else "[–]"

    for name, r in ranking.items():
        line = (f"{stage}: ranking {name:<10} ndcg@{r.k} {r.ndcg or 0:.4f} {ci(r.ndcg_ci95)} "
                f"precision@{r.k} {r.precision or 0:.4f} ({r.users} users)")
        diff: Interval | None = (r.minus_popularity or {}).get("ndcg")
        if diff is not None and diff.value is not None:
            line += f"; minus popularity: ndcg@{r.k} {diff.value:+.4f} {ci(diff.ci95)}"
        log.info(line)


def rank_songs(models: dict, train: pl.DataFrame, test: pl.DataFrame, n_songs: int, pcfg: dict,
               threads: int, side: tuple[np.ndarray, np.ndarray],
               rng: np.random.Generator) -> tuple[pl.DataFrame | None, dict[str, Ranking], dict]:
    """Top-k lists of every ranking family (when trained) and of the popularity baseline for every
    test user, each scored against the songs that user replayed in test. Returns the first ranking
    family's lists as a table (or None), the ranking metrics per model (precision and NDCG with
    bootstrap intervals over users, and the paired difference from popularity) and the curves."""
    users = np.sort(test["user"].unique().to_numpy()).astype(np.int64)
    ranking_models = {n: models[n] for n in rankers(models)}
    n_users = max([int(users.max()) + 1, int(train["user"].max()) + 1,
                   *(m.shape_[0] for m in ranking_models.values())])
    plays = train_plays(train["user"].to_numpy(), train["song"].to_numpy(), (n_users, n_songs))
    max_k = max(pcfg["max_k"], pcfg["top_k"])
    relevant = relevant_matrix(test, users, n_songs)
    lists = {name: model.recommend(users, max_k, plays[:, :model.shape_[1]], threads)
             for name, model in ranking_models.items()}
    pop = pcfg["popularity"]
    counts = train["plays"].to_numpy() if "plays" in train.columns else 1 + train["target"].to_numpy()
    scores = popularity_scores(train["user"].to_numpy(), train["song"].to_numpy(), counts, n_songs,
                               pop["method"], pop["beta"])
    lists[POPULARITY] = recommend_popular(scores, users, max_k, plays)
    ranking, curves = {}, {}
    for name, (songs, _) in lists.items():
        ranking[name], curves[name] = score_lists(songs, relevant, train, n_songs, pcfg, side)
    add_intervals(ranking, {name: songs for name, (songs, _) in lists.items()}, relevant, pcfg["top_k"], rng)
    recs = None
    if ranking_models:
        k = pcfg["top_k"]
        songs, scores_k = lists[next(iter(ranking_models))]
        recs = pl.DataFrame({
            "user": np.repeat(users, k).astype(np.int32),
            "rank": np.tile(np.arange(1, k + 1), len(users)).astype(np.int16),
            "song": songs[:, :k].ravel().astype(np.int32),
            "score": scores_k[:, :k].ravel(),
        }).filter(pl.col("song") >= 0)
    return recs, ranking, curves


def similar_table(model, train: pl.DataFrame, songs_map: pl.DataFrame, rng: np.random.Generator,
                  threads: int) -> pl.DataFrame:
    """Item-item neighbours of a ranking model (model.similar) for a sample of train songs, with names."""
    listeners = train.group_by("song").agg(pl.col("user").n_unique().alias("n")).sort(["n", "song"],
                                                                                     descending=[True, False])
    listeners = listeners.filter(pl.col("song") < model.shape_[1])
    top = listeners["song"].head(SIMILAR_SAMPLE).to_numpy()
    rest = np.setdiff1d(listeners["song"].to_numpy(), top)
    sample = np.concatenate([top, np.sort(rng.choice(rest, min(SIMILAR_SAMPLE, len(rest)), replace=False))])
    ids, cos = model.similar(sample, SIMILAR_K, threads)
    k = ids.shape[1]
    out = pl.DataFrame({"song": np.repeat(sample, k).astype(np.int32),
                        "sampled_as": np.repeat(np.where(np.isin(sample, top), "most listened", "random"), k),
                        "rank": np.tile(np.arange(1, k + 1), len(sample)).astype(np.int16),
                        "similar": ids.ravel().astype(np.int32), "cosine": cos.ravel()}).filter(pl.col("similar") >= 0)
    names = songs_map.select("song", *[c for c in ("song_id", "track_name", "artist_name") if c in songs_map.columns])
    return (out.join(names, on="song", how="left")
            .join(names.rename({c: f"similar_{c}" for c in names.columns if c != "song"}).rename({"song": "similar"}),
                  on="similar", how="left").sort("song", "rank"))
