"""Stage 03: feature engineering on the split rows (the stage's `run`; each family has its own module).

All parts are stacked into one frame (train, valid, test, then the Kaggle test rows when stage 01
wrote them) whose labels are kept on train rows only, so no code below can read a valid/test label.
Label-free families (counts, shares, time, ALS) sum an `in_pool` flag: train rows always, the other
parts too when `features.use_test_interactions` is true. Target statistics use train labels only,
out-of-fold on train. Each family lives in its own module and returns Float32 columns plus docs.
"""
from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Callable, ContextManager

import numpy as np
import polars as pl

from musicrec.config import ALS_FEATURES
from musicrec.features.als import als_features
from musicrec.features.clusters import Taste
from musicrec.features.counts import count_features
from musicrec.features.keys import KeyCodes
from musicrec.features.target import (
    BIAS_CLUSTER_EFFECTS,
    BIAS_CLUSTER_ITERATIONS,
    BIAS_EFFECTS,
    BIAS_ITERATIONS,
    TE_CLUSTER_KEYS,
    TE_KEYS,
    assign_folds,
    bias_features,
    target_features,
)
from musicrec.features.temporal import time_features
from musicrec.manifest import StageRun, read_manifest
from musicrec.rng import seed, stream
from musicrec.sources import untimed

log = logging.getLogger("musicrec")

STAGE = "03_features"
PARTS = ("train", "valid", "test")
KAGGLE = "kaggle"
KEYS = ("time_order", "user", "song")
TARGET = "target"
KAGGLE_ID = "id"
BASE_CATEGORICAL = ("source_system_tab", "source_screen_name", "source_type", "city", "gender",
                    "registered_via", "language", "genre", "isrc_country")
BASE_NUMERIC = ("bd", "song_length", "membership_days", "registration_year", "isrc_year", "genre_count",
                "composer_count", "lyricist_count", "member_missing", "bd_missing", "song_meta_missing",
                "song_extra_missing")
ID_COLS = ("artist", "composer", "lyricist")  # used as keys, never exposed as features
WORK_COLS = (*KEYS, *ID_COLS, *BASE_CATEGORICAL, *BASE_NUMERIC)

Step = Callable[[str], ContextManager]


def stack(parts: dict[str, pl.DataFrame], folds: np.ndarray, k: int, use_test: bool) -> pl.DataFrame:
    """All rows in part order with part, y (train label, else 0), labelled, in_pool and fold columns."""
    frames = []
    for i, (name, df) in enumerate(parts.items()):
        train = name == "train"
        frames.append(df.select(
            *WORK_COLS,
            pl.lit(i, pl.Int8).alias("part"),
            (pl.col(TARGET).cast(pl.Int32) if train else pl.lit(0, pl.Int32)).alias("y"),
            pl.lit(int(train), pl.Int8).alias("labelled"),
            pl.lit(int(train or use_test), pl.Int8).alias("in_pool"),
            (pl.lit(pl.Series(folds)) if train else pl.lit(k)).cast(pl.Int8).alias("fold"),
        ))
    return pl.concat(frames)


def base_features(work: pl.DataFrame) -> tuple[pl.DataFrame, list[dict]]:
    """Stage 01 columns passed through: category codes as they are, numbers as Float32.

    Stage 01 leaves genre/composer/lyricist counts empty for songs without metadata; an empty
    number becomes NaN (like every other unknown number here) and its doc says so.
    """
    frame = work.select(*BASE_CATEGORICAL, pl.col(*BASE_NUMERIC).cast(pl.Float32).fill_null(float("nan")))
    has_null = work.select(pl.col(*BASE_NUMERIC).has_nulls()).row(0, named=True)
    docs = [{"name": c, "description": "stage 01 category code", "nan": False} for c in BASE_CATEGORICAL]
    docs += [{"name": c, "nan": has_null[c],
              "description": "stage 01 value" + ("; NaN where stage 01 left it empty" if has_null[c] else "")}
             for c in BASE_NUMERIC]
    return frame, docs


def build_features(parts: dict[str, pl.DataFrame], cfg: dict,
                   step: Step = lambda name: nullcontext()) -> tuple[dict[str, pl.DataFrame], list[dict]]:
    """Feature columns for every part (same rows, same order) and one spec per feature."""
    fcfg = cfg["features"]
    k = fcfg["target_stats"]["folds"]
    folds = assign_folds(parts["train"].height, k, stream(cfg, STAGE, "target_folds"))
    work = stack(parts, folds, k, fcfg["use_test_interactions"])
    keys = KeyCodes(work)
    families: list[tuple[str, tuple[str, str], pl.DataFrame, list[dict]]] = []

    def add(source: str, fn: Callable, *args) -> None:
        """Run one family and remember where its features come from (features.json names it)."""
        families.append((source, (fn.__module__, fn.__qualname__), *fn(*args)))

    with step("base"):
        add("base", base_features, work)
    with step("counts"):
        counts, count_docs, shares, share_docs = count_features(work, keys)
        origin = (count_features.__module__, count_features.__qualname__)
        families += [("count", origin, counts, count_docs), ("share", origin, shares, share_docs)]
    with step("time"):
        add("time", time_features, work, keys, fcfg["recent_windows"])
    del keys  # the cached group ids are as large as several feature columns
    fitted: dict = {}
    if fcfg[ALS_FEATURES]["enabled"]:
        with step(ALS_FEATURES):
            seeds = (seed(cfg, STAGE, "als_song"), seed(cfg, STAGE, "als_artist"))
            add(ALS_FEATURES, als_features, work, fcfg[ALS_FEATURES], seeds, fitted)
    te_keys, bias_effects, bias_iterations, taste = TE_KEYS, BIAS_EFFECTS, BIAS_ITERATIONS, None
    if fcfg["clusters"]["enabled"]:
        with step("taste clusters"):
            taste = Taste(work, fcfg["clusters"], stream(cfg, STAGE, "clusters"), fitted.get("user_factors"))
            add("cluster", taste.label_free)  # collaborative, label-free: exclude_sources [cluster]
            work = work.with_columns(pl.Series("song_cluster", taste.song_cluster),
                                     pl.Series("user_cluster", taste.user_cluster))
            te_keys, bias_effects = TE_KEYS | TE_CLUSTER_KEYS, BIAS_EFFECTS | BIAS_CLUSTER_EFFECTS
            bias_iterations = BIAS_CLUSTER_ITERATIONS
    del fitted
    keys = KeyCodes(work)
    te_keys, bias_effects = informative(te_keys, keys), informative(bias_effects, keys)
    with step("target stats"):
        smoothing = fcfg["target_stats"]["smoothing"]
        add("target_stat", target_features, work, keys, k, smoothing, te_keys)
        add("target_stat", bias_features, work, keys, k, smoothing, bias_effects, bias_iterations)
        if taste is not None:
            add("target_stat", taste.regression, work, k, fcfg["clusters"]["ridge"])
    del keys, taste
    features = pl.concat([frame for _, _, frame, _ in families], how="horizontal")
    specs = [{"name": d["name"], "dtype": str(features.schema[d["name"]]), "source": source,
              "categorical": source == "base" and d["name"] in BASE_CATEGORICAL,
              "nan": d["nan"], "description": d["description"], "module": origin[0], "function": origin[1]}
             for source, origin, _, docs in families for d in docs]
    assert [s["name"] for s in specs] == features.columns
    with step("drop redundant"):
        base = [name for source, _, frame, _ in families if source == "base" for name in frame.columns]
        drop = [c for c in redundant_columns(features) if c not in base]   # the prior and 05's segments read them
        if drop:
            features = features.drop(drop)
            specs = [s for s in specs if s["name"] not in drop]
    offsets = np.cumsum([0, *(df.height for df in parts.values())])
    return {name: features.slice(offsets[i], parts[name].height) for i, name in enumerate(parts)}, specs


def redundant_columns(features: pl.DataFrame) -> list[str]:
    """Columns that tell no row from another (one value everywhere) or repeat an earlier column exactly.

    A source without some KKBOX column (a listen log has no age, genre or source tab) makes dozens
    of features constant or copies of another (the count per user and source tab is the count per
    user): they change no prediction of naive Bayes or the scaled logistic regression, but cost
    every model's time at 7M rows and dilute the forests' feature sampling. Logged by name; the
    stage still keeps the base columns (the raw member, song and context fields) among them.
    """
    floats = [c for c, t in features.schema.items() if t.is_float()]
    stats = features.select(pl.all().min().name.suffix("|min"), pl.all().max().name.suffix("|max"),
                             pl.all().null_count().name.suffix("|null"),
                             *(pl.col(c).is_nan().sum().alias(f"{c}|nan") for c in floats)).row(0, named=True)
    n = features.height
    constant = [c for c in features.columns
                if (stats[f"{c}|null"] + stats.get(f"{c}|nan", 0) == n)
                or (stats[f"{c}|null"] == 0 and stats.get(f"{c}|nan", 0) == 0 and stats[f"{c}|min"] == stats[f"{c}|max"])]
    rest = [c for c in features.columns if c not in constant]
    sums = features.select(pl.col(rest).hash(0).sum()).row(0)
    first: dict[int, list[str]] = {}
    duplicate: dict[str, str] = {}
    for c, h in zip(rest, sums):
        same = next((o for o in first.get(h, []) if features[o].equals(features[c])), None)
        if same is None:
            first.setdefault(h, []).append(c)
        else:
            duplicate[c] = same
    if constant:
        log.info("%s: %d constant features left out: %s", STAGE, len(constant), ", ".join(constant))
    if duplicate:
        log.info("%s: %d features equal to an earlier one left out: %s", STAGE, len(duplicate),
                 ", ".join(f"{c} (= {o})" for c, o in duplicate.items()))
    return constant + list(duplicate)


def informative(groupings: dict[str, tuple[str, ...]], keys: KeyCodes) -> dict[str, tuple[str, ...]]:
    """The groupings that partition the rows in a new way once one-level columns are set aside.

    A column a source lacks (a listen log has no genre, age or source tab) is one level: alone, its
    target statistic or bias is the same for every row up to fold-to-fold noise, which the test rows
    (fitted on all of train) sit outside of -- naive Bayes and a scaled logistic regression read that
    noise as a strong signal; paired with the user or song, it repeats that key's statistic, which
    naive Bayes counts twice. Such groupings are left out (the first of equal ones is kept), and logged.
    """
    kept, seen = {}, set()
    for name, cols in groupings.items():
        varying = frozenset(c for c in cols if keys((c,))[1] > 1)
        if varying and varying not in seen:
            kept[name] = cols
            seen.add(varying)
    if len(kept) < len(groupings):
        log.info("%s: no new grouping once one-level columns are set aside, no target statistic or bias: %s",
                 STAGE, ", ".join(name for name in groupings if name not in kept))
    return kept


def with_keys(part: pl.DataFrame, features: pl.DataFrame, kaggle: bool) -> pl.DataFrame:
    """Key columns (time_order, user, song, then target or the Kaggle id) followed by the features."""
    return pl.concat([part.select(*KEYS, KAGGLE_ID if kaggle else TARGET), features], how="horizontal")


def feature_table(specs: list[dict]) -> dict:
    return {"keys": list(KEYS), "target": TARGET, "kaggle_id": KAGGLE_ID, "features": specs}


def has_kaggle(cfg: dict) -> bool:
    manifest = read_manifest(cfg, "01_preprocess") or {}
    return "kaggle_test.parquet" in manifest.get("outputs", {})


def keys_only(st: StageRun) -> dict:
    """Untimed play counts (hetrec): no labelled event, so no feature; the splits' keys and plays pass through
    for the ranking models of stage 04."""
    for name in PARTS:
        part = pl.read_parquet(st.input("02_split", f"{name}.parquet"))
        st.write_parquet(part.select(*KEYS, "plays", TARGET), f"features_{name}.parquet")
    table = {"keys": [*KEYS, "plays"], "target": TARGET, "kaggle_id": KAGGLE_ID, "features": []}
    st.write_json(table, "features.json")
    log.info("%s: hetrec play counts: no features (the classification models need labelled events); "
             "keys and plays passed to the ranking models", STAGE)
    return table


def run(cfg: dict, force: bool = False) -> dict:
    with StageRun(STAGE, cfg, force=force) as st:
        if untimed(cfg):
            return keys_only(st)
        with st.step("read"):
            parts = {name: pl.read_parquet(st.input("02_split", f"{name}.parquet")) for name in PARTS}
            if has_kaggle(cfg):
                parts[KAGGLE] = pl.read_parquet(st.input("01_preprocess", "kaggle_test.parquet"))
            for name, df in parts.items():
                log.info("%s: %s has %d rows", STAGE, name, df.height)
        features, specs = build_features(parts, cfg, st.step)
        with st.step("write"):
            for name, df in parts.items():
                st.write_parquet(with_keys(df, features[name], name == KAGGLE), f"features_{name}.parquet")
            table = feature_table(specs)
            st.write_json(table, "features.json")
        by_source: dict[str, int] = {}
        for s in specs:
            by_source[s["source"]] = by_source.get(s["source"], 0) + 1
        st.info.update(features=len(specs), by_source=by_source,
                       use_test_interactions=cfg["features"]["use_test_interactions"],
                       rows={name: df.height for name, df in parts.items()})
        log.info("%s: %d features (%s)", STAGE, len(specs), ", ".join(f"{k} {v}" for k, v in by_source.items()))
    return table
