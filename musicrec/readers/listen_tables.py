"""Labelled events -> stage 01's tables in the KKBOX layout (interactions, users, songs, categories).

Codes are renumbered in order of first appearance, as the KKBOX reader numbers users and songs, so
stages 02-06 cannot tell a listen log from KKBOX by its codes; what a log lacks is 'unknown'
(category) or missing (number) and is described in quality.json's `columns`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from musicrec.listen_schema import DAY
from musicrec.readers.schema import CATEGORICAL, OUTPUT_ORDER, WIDE_CODES

UNKNOWN = "unknown"
STREAMING = "streaming"
# KKBOX columns a listen log has no counterpart for (categorical -> "unknown", numeric -> missing)
ABSENT_CATEGORICAL = tuple(c for c in CATEGORICAL if c != "artist")
ABSENT_NUMERIC = ("song_length", "isrc_year")


def first_appearance(codes: np.ndarray) -> np.ndarray:
    """The distinct codes in order of first appearance."""
    return pl.Series(codes).unique(maintain_order=True).to_numpy()


def renumber(order: np.ndarray, size: int) -> np.ndarray:
    """old code -> new code, where order[new] = old (codes not in order map to -1)."""
    new = np.full(size, -1, dtype=np.int32)
    new[order] = np.arange(len(order), dtype=np.int32)
    return new


def interactions_frame(ev: dict) -> pl.LazyFrame:
    """Events in the KKBOX interaction layout; what a log lacks is 'unknown' (category) or missing (number)."""
    unknown = {c: pl.lit(0, pl.Int32 if c in WIDE_CODES else pl.Int16).alias(c) for c in ABSENT_CATEGORICAL}
    lf = pl.LazyFrame({k: ev[k] for k in ("user", "song", "target", "artist", "registration_year",
                                          "membership_days", "song_meta_missing")})
    return lf.select(
        pl.int_range(pl.len(), dtype=pl.Int32).alias("time_order"),
        pl.col("user").cast(pl.Int32),
        pl.col("song").cast(pl.Int32),
        pl.col("target").cast(pl.Int8),
        *unknown.values(),
        pl.col("artist").cast(pl.Int32),
        pl.lit(0, pl.Int16).alias("bd"),  # KKBOX's own "not given" (bd_missing = 1); 03 keys groups on it
        pl.lit(None, pl.Int32).alias("song_length"),
        pl.lit(None, pl.Int16).alias("isrc_year"),
        # the log's own member facts: year first seen, days since first seen at this first listen
        pl.col("registration_year").cast(pl.Int16),
        pl.col("membership_days").cast(pl.Int32),
        pl.lit(0, pl.Int8).alias("genre_count"),
        pl.lit(0, pl.Int8).alias("composer_count"),
        pl.lit(0, pl.Int8).alias("lyricist_count"),
        pl.lit(0, pl.Int8).alias("member_missing"),
        pl.lit(1, pl.Int8).alias("bd_missing"),
        pl.col("song_meta_missing").cast(pl.Int8),
        pl.lit(1, pl.Int8).alias("song_extra_missing"),
    ).select("time_order", "user", "song", "target",
             *[c for c in OUTPUT_ORDER if c not in ("time_order", "user", "song")])


def encode(derived: dict, interactions_path: Path) -> dict:
    """The encoded tables; the interactions are streamed to `interactions_path` (their entry is that path).

    `events` holds the user and song codes of every event in time order (for the synthetic truth),
    `artist_missing` the events whose track has no artist name.
    """
    users, tracks = derived["users"], derived["tracks"]
    ev = derived.pop("keys").sorted_columns()
    user_order, track_order = first_appearance(ev["user"]), first_appearance(ev["track"])
    old_user, old_track = ev.pop("user"), ev.pop("track")
    # per-user and per-track facts, gathered onto every event by its (old) code
    user_first = users["first_seen"].to_numpy()
    reg_year = pl.from_epoch(users["first_seen"], "s").dt.year().cast(pl.Int16).to_numpy()
    artist_filled = tracks["artist_name"].fill_null(UNKNOWN)
    artist_vocab = artist_filled.gather(track_order).unique().sort()
    artist_code = artist_filled.cast(pl.Enum(artist_vocab), strict=False).to_physical().fill_null(0).cast(pl.Int32)
    artist_missing_track = tracks["artist_name"].is_null().to_numpy()
    ev["user"] = renumber(user_order, users.height)[old_user]
    ev["song"] = renumber(track_order, tracks.height)[old_track]
    ev["artist"] = artist_code.to_numpy()[old_track]
    ev["registration_year"] = reg_year[old_user]
    ev["membership_days"] = ((ev["first"] - user_first[old_user]) // DAY).astype(np.int32)
    ev["song_meta_missing"] = artist_missing_track[old_track].astype(np.int8)
    del old_user, old_track
    artist_missing = int(ev["song_meta_missing"].sum(dtype=np.int64))
    interactions_frame(ev).sink_parquet(interactions_path, compression="zstd", statistics=True, engine=STREAMING)
    msno = users["user"].gather(user_order)
    users_out = (users.select(pl.col("user").alias("msno"), "listens", "tracks", "first_seen")[user_order]
                 .select(pl.int_range(pl.len(), dtype=pl.Int32).alias("user"), "msno", "listens", "tracks",
                         pl.from_epoch("first_seen", "s")))
    songs_out = (tracks[track_order]
                 .select(pl.int_range(pl.len(), dtype=pl.Int32).alias("song"), pl.col("track").alias("song_id"),
                         "artist_name", "album", "track_name", "listens", "listeners", pl.from_epoch("first_seen", "s")))
    vocab = {"user": msno, "song": songs_out["song_id"], "artist": artist_vocab}
    for col in ABSENT_CATEGORICAL:
        vocab[col] = pl.Series(col, [UNKNOWN])
    categories = pl.concat([
        pl.DataFrame({"column": col, "code": np.arange(len(vocab[col]), dtype=np.int32), "value": vocab[col]})
        for col in CATEGORICAL])
    return {"interactions": Path(interactions_path), "users": users_out, "songs": songs_out,
            "categories": categories, "artists": len(artist_vocab), "artist_missing": artist_missing,
            "events": {"user": ev["user"], "song": ev["song"], "target": ev["target"]}}
