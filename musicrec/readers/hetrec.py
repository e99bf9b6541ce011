"""Reader for hetrec2011-lastfm-2k: user x artist play counts without time (`format: hetrec`).

`user_artists.dat` (userID, artistID, weight = plays; tab-separated, CRLF) and `artists.dat`
(id, name, url, pictureURL). Every pair is a row whose item is the artist; there is nothing to
label (no time, no replay), so every row has target 1 and an extra `plays` column: stage 02 holds
out a seeded share of each user's pairs, 04 trains the ranking models only and 05 ranks artists.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from musicrec.errors import InputError
from musicrec.outputs.quality import Quality
from musicrec.readers.schema import CATEGORICAL, OUTPUT_ORDER, WIDE_CODES

log = logging.getLogger("musicrec")

USER_ARTISTS = "user_artists.dat"
ARTISTS = "artists.dat"
UNKNOWN = "unknown"


def locate(path: str) -> tuple[Path, Path | None]:
    """user_artists.dat (the path itself, or inside the folder) and artists.dat beside it when present."""
    p = Path(path)
    ua = p / USER_ARTISTS if p.is_dir() else p
    if not ua.is_file():
        raise InputError(path, "data.listens.path", f"format hetrec needs {USER_ARTISTS} (the file or its folder)")
    names = ua.parent / ARTISTS
    return ua, (names if names.is_file() else None)


def scan_pairs(ua: Path) -> pl.LazyFrame:
    lf = pl.scan_csv(ua, separator="\t", has_header=True, infer_schema=False, quote_char=None)
    cols = lf.collect_schema().names()
    for need in ("userID", "artistID", "weight"):
        if need not in [c.strip() for c in cols]:
            raise InputError(ua, need, f"hetrec user_artists.dat needs columns userID, artistID, weight "
                                       f"(found {', '.join(cols)})")
    lf = lf.rename({c: c.strip() for c in cols})
    return lf.with_row_index("line").select(
        "line", pl.col("userID").str.strip_chars().alias("user"), pl.col("artistID").str.strip_chars().alias("track"),
        pl.col("weight").str.strip_chars().cast(pl.Int64, strict=False).alias("plays"),
        pl.col("weight").alias("raw_weight"))


def read_names(names: Path | None) -> pl.DataFrame:
    if names is None:
        return pl.DataFrame(schema={"track": pl.String, "artist_name": pl.String, "url": pl.String})
    df = pl.read_csv(names, separator="\t", has_header=True, infer_schema=False, quote_char=None,
                     truncate_ragged_lines=True)
    df = df.rename({c: c.strip() for c in df.columns})
    return df.select(pl.col("id").str.strip_chars().alias("track"), pl.col("name").alias("artist_name"),
                     pl.col("url").str.strip_chars().alias("url")).unique("track", keep="first", maintain_order=True)


def read(cfg: dict, st) -> dict:
    """Stage 01 for format hetrec: one row per (user, artist) pair, target 1, plays = the count."""
    ua, names_file = locate(cfg["data"]["listens"]["path"])
    st.external_input(ua)
    if names_file is not None:
        st.external_input(names_file)
    with st.step("read hetrec pairs"):
        rows = scan_pairs(ua).collect()
    reason = (pl.when(pl.col("user").is_null() | (pl.col("user") == "")).then(pl.lit("missing user"))
              .when(pl.col("track").is_null() | (pl.col("track") == "")).then(pl.lit("missing artist"))
              .when(pl.col("plays").is_null()).then(pl.lit("weight is not an integer"))
              .when(pl.col("plays") <= 0).then(pl.lit("weight is not positive"))
              .when(~pl.struct("user", "track").is_first_distinct()).then(pl.lit("repeats an earlier (user, artist)"))
              .otherwise(None))
    rows = rows.with_columns(reason.alias("reason"))
    rejects = rows.filter(pl.col("reason").is_not_null())
    kept = rows.filter(pl.col("reason").is_null())
    if kept.height == 0:
        raise InputError(ua, None, f"no usable (user, artist, weight) row among {rows.height}")
    names = read_names(names_file)
    kept = kept.join(names, on="track", how="left", maintain_order="left")
    users_v = kept["user"].unique(maintain_order=True)
    items_v = kept["track"].unique(maintain_order=True)
    artist_v = pl.concat([kept["track"], pl.Series([UNKNOWN])]).unique().sort()
    n = kept.height
    unknown = {c: pl.lit(0, pl.Int32 if c in WIDE_CODES else pl.Int16).alias(c) for c in CATEGORICAL if c != "artist"}
    inter = kept.select(
        pl.int_range(pl.len(), dtype=pl.Int32).alias("time_order"),
        pl.col("user").cast(pl.Enum(users_v)).to_physical().cast(pl.Int32).alias("user"),
        pl.col("track").cast(pl.Enum(items_v)).to_physical().cast(pl.Int32).alias("song"),
        pl.lit(1, pl.Int8).alias("target"),
        *unknown.values(),
        pl.col("track").cast(pl.Enum(artist_v)).to_physical().cast(pl.Int32).alias("artist"),
        pl.lit(0, pl.Int16).alias("bd"), pl.lit(None, pl.Int16).alias("registration_year"),
        pl.lit(None, pl.Int32).alias("membership_days"), pl.lit(None, pl.Int32).alias("song_length"),
        pl.lit(None, pl.Int16).alias("isrc_year"),
        pl.lit(0, pl.Int8).alias("genre_count"), pl.lit(0, pl.Int8).alias("composer_count"),
        pl.lit(0, pl.Int8).alias("lyricist_count"), pl.lit(1, pl.Int8).alias("member_missing"),
        pl.lit(1, pl.Int8).alias("bd_missing"), pl.col("artist_name").is_null().cast(pl.Int8).alias("song_meta_missing"),
        pl.lit(1, pl.Int8).alias("song_extra_missing"),
        pl.col("plays"),
    ).select("time_order", "user", "song", "target",
             *[c for c in OUTPUT_ORDER if c not in ("time_order", "user", "song")], "plays")
    songs = (pl.DataFrame({"song": np.arange(len(items_v), dtype=np.int32), "song_id": items_v})
             .join(names.rename({"track": "song_id"}), on="song_id", how="left", maintain_order="left")
             .join(kept.group_by("track").agg(pl.col("plays").sum().alias("plays"), pl.len().alias("listeners"))
                   .rename({"track": "song_id"}), on="song_id", how="left", maintain_order="left"))
    users = (pl.DataFrame({"user": np.arange(len(users_v), dtype=np.int32), "msno": users_v})
             .join(kept.group_by("user").agg(pl.col("plays").sum().alias("plays"), pl.len().alias("artists"))
                   .rename({"user": "msno"}), on="msno", how="left", maintain_order="left"))
    vocab = {c: pl.Series([UNKNOWN]) for c in CATEGORICAL}
    vocab["artist"] = artist_v
    categories = pl.concat([pl.DataFrame({"column": c, "code": np.arange(len(v), dtype=np.int32), "value": v})
                            for c, v in vocab.items()])
    by_reason = rejects.group_by("reason").len().sort("reason")
    note = "not in hetrec user_artists.dat (KKBOX-only column)"
    quality = {
        "source": "listens", "format": "hetrec",
        "rows": {"in": rows.height, "out": n, "rejected": rejects.height},
        "rejected_by_reason": dict(zip(by_reason["reason"].to_list(), by_reason["len"].to_list())),
        "unlabellable": {"pairs": n, "reason": "play counts without time: no replay can be labelled; every pair is a "
                                               "positive for ranking (02 holds out a seeded share of each user's "
                                               "pairs, 04 trains the ranking models only)"},
        "test_rows": None,
        "columns": {c: {"missing_before": 1.0, "missing_after": 0.0, "filled_with": UNKNOWN, "note": note}
                    for c in CATEGORICAL if c != "artist"},
        "coverage": {"rows_without_member": 1.0,
                     "rows_without_song_metadata": round(float(inter["song_meta_missing"].mean()), 6),
                     "rows_without_song_extra": 1.0},
        "distinct": {"users": users.height, "songs": songs.height, "artists": songs.height},
        "plays": {"total": int(kept["plays"].sum()), "median_per_pair": float(kept["plays"].median())},
    }
    log.info("01_preprocess: hetrec rows in %d = pairs %d + rejected %d (%d users, %d artists)", rows.height, n,
             rejects.height, users.height, songs.height)
    return {"interactions": inter, "kaggle_test": None,
            "rejects": rejects.select("line", "reason", pl.col("user").alias("msno"), pl.col("track").alias("song_id"),
                                      "raw_weight"),
            "users": users, "songs": songs, "categories": categories,
            "quality": Quality.validated(quality, "quality.json (hetrec reader)")}
