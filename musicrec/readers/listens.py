"""Reader for raw listening logs (ListenBrainz, Last.fm 1K, any listen table): listens -> labelled events.

KKBOX's target is "the user played the song again within a month of the first observed listen".
A raw log holds what that label is made from, so this reader derives it: one event per first
listen of a (user, track) pair, target 1 when the same user plays the track again more than
`same_play_seconds` and at most `window_days` after that first listen. A pair whose window runs
past the log's last listen cannot be labelled (a replay may still come) and is counted, not kept.
Every listen is one of: an event, a repeat (any later listen of its pair, same-play duplicates
included), an unlabellable first listen, or a rejected row -- and the four add up to the rows read.

The log itself is never loaded: polars scans it lazily and the streaming engine aggregates it to
one row per (user, track) pair, so memory follows the number of pairs, not of listens.
"""
from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from musicrec.readers import listen_formats
from musicrec.readers.schema import CATEGORICAL, OUTPUT_ORDER, WIDE_CODES

log = logging.getLogger("musicrec")

UNKNOWN = "unknown"
DAY = 86_400
STREAMING = "streaming"
GENERATOR = "musicrec.synthetic.listens"  # source.json marker of generated logs (their truth is read)
# KKBOX columns a listen log has no counterpart for (categorical -> "unknown", numeric -> missing)
ABSENT_CATEGORICAL = tuple(c for c in CATEGORICAL if c != "artist")
ABSENT_NUMERIC = ("song_length", "isrc_year")


def reject_reason() -> pl.Expr:
    return (pl.when(pl.col("user").is_null()).then(pl.lit("missing user"))
            .when(pl.col("track").is_null()).then(pl.lit("missing track"))
            .when(pl.col("time").is_null()).then(pl.lit("missing or unparseable time"))
            .otherwise(None).alias("reason"))


def pair_table(listens: pl.LazyFrame, same_play_s: float) -> pl.LazyFrame:
    """One row per (user, track): first and last listen, listens, same-play duplicates, first real replay."""
    t = pl.col("time")
    first = t.min()
    return listens.group_by("user", "track").agg(
        first.alias("first"),
        t.max().alias("last"),
        pl.len().cast(pl.Int64).alias("listens"),
        ((t <= first + same_play_s).sum() - 1).cast(pl.Int64).alias("same_play"),
        t.filter(t > first + same_play_s).min().alias("replay_at"),
    )


def track_table(listens: pl.LazyFrame) -> pl.LazyFrame:
    """Per track: names (alphabetically first where a track was submitted under several), plays, listeners."""
    return listens.group_by("track").agg(
        pl.col("artist").min().alias("artist_name"),
        pl.col("album").min().alias("album"),
        pl.col("track_name").min().alias("track_name"),
        pl.len().cast(pl.Int64).alias("listens"),
        pl.col("user").n_unique().cast(pl.Int64).alias("listeners"),
        pl.col("time").min().alias("first_seen"),
    )


def label(pairs: pl.DataFrame, log_end: int, window_s: float) -> pl.DataFrame:
    """labellable: the whole window lies inside the log; target: a replay inside the window."""
    end = pl.col("first") + window_s
    return pairs.with_columns(
        (end <= log_end).alias("labellable"),
        (pl.col("replay_at").is_not_null() & (pl.col("replay_at") <= end)).cast(pl.Int8).alias("target"),
    )


def derive_events(listens: pl.LazyFrame, window_days: float, same_play_s: float) -> dict:
    """The labelled events and every count of the listen accounting (see module doc)."""
    with_reason = listens.with_columns(reject_reason())
    rejects = with_reason.filter(pl.col("reason").is_not_null()).collect(engine=STREAMING)
    ok = with_reason.filter(pl.col("reason").is_null()).drop("reason")
    pairs = pair_table(ok, same_play_s).collect(engine=STREAMING)
    tracks = track_table(ok).collect(engine=STREAMING)
    if pairs.height == 0:
        return {"rejects": rejects, "pairs": pairs, "tracks": tracks, "log_end": None}
    log_end = int(pairs["last"].max())
    pairs = label(pairs, log_end, window_days * DAY)
    return {"rejects": rejects, "pairs": pairs, "tracks": tracks, "log_end": log_end,
            "log_start": int(pairs["first"].min())}


def wilson(k: int, n: int, z: float = 1.959964) -> list[float] | None:
    """95% Wilson score interval of a rate k/n (None when n = 0)."""
    if n == 0:
        return None
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return [round(mid - half, 6), round(mid + half, 6)]


def iso(ts: int | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def accounting(derived: dict, lcfg: dict) -> dict:
    """listens in = events + repeats + unlabellable + rejected, each counted."""
    pairs, rejects = derived["pairs"], derived["rejects"]
    lab = pairs.filter(pl.col("labellable")) if pairs.height else pairs
    unl = pairs.filter(~pl.col("labellable")) if pairs.height else pairs
    repeats = int(pairs["listens"].sum() - pairs.height) if pairs.height else 0
    counts = {"in": int(pairs["listens"].sum() if pairs.height else 0) + rejects.height,
              "events": lab.height, "repeats": repeats,
              "same_play_merged": int(pairs["same_play"].sum()) if pairs.height else 0,
              "unlabellable": unl.height, "rejected": rejects.height}
    assert counts["in"] == counts["events"] + counts["repeats"] + counts["unlabellable"] + counts["rejected"]
    replayed = int(lab["target"].sum()) if lab.height else 0
    by_reason = rejects.group_by("reason").len().sort("reason")
    return {
        "listens": counts,
        "rejected_by_reason": dict(zip(by_reason["reason"].to_list(), by_reason["len"].to_list())),
        "unlabellable": {
            "pairs": unl.height,
            "reason": f"first listen less than window_days={lcfg['window_days']:g} days before the log's "
                      f"last listen ({iso(derived['log_end'])}): a replay could still follow",
            "replayed_before_log_end": int(unl["replay_at"].is_not_null().sum()) if unl.height else 0,
        },
        "target": {"events": lab.height, "replayed": replayed,
                   "rate": round(replayed / lab.height, 6) if lab.height else None,
                   "interval95": wilson(replayed, lab.height)},
        "log": {"first_listen": iso(derived.get("log_start")), "last_listen": iso(derived["log_end"]),
                "window_days": lcfg["window_days"], "same_play_seconds": lcfg["same_play_seconds"]},
    }


def vocabularies(events: pl.DataFrame) -> dict[str, pl.Series]:
    """Users and tracks in order of first appearance; categories sorted (as the KKBOX reader does)."""
    vocab = {"user": events["user"].unique(maintain_order=True), "song": events["track"].unique(maintain_order=True)}
    for col in ABSENT_CATEGORICAL:
        vocab[col] = pl.Series(col, [UNKNOWN])
    vocab["artist"] = events["artist_name"].unique().sort()
    return vocab


def interactions_frame(events: pl.DataFrame, vocab: dict) -> pl.DataFrame:
    """Events in the KKBOX interaction layout; what a log lacks is 'unknown' (category) or missing (number)."""
    def code(col: str, values: pl.Series, dtype) -> pl.Expr:
        return pl.col(col).cast(pl.Enum(values)).to_physical().cast(dtype)

    unknown = {c: pl.lit(0, pl.Int32 if c in WIDE_CODES else pl.Int16).alias(c) for c in ABSENT_CATEGORICAL}
    df = events.select(
        pl.int_range(pl.len(), dtype=pl.Int32).alias("time_order"),
        code("user", vocab["user"], pl.Int32).alias("user"),
        code("track", vocab["song"], pl.Int32).alias("song"),
        pl.col("target").cast(pl.Int8),
        *unknown.values(),
        code("artist_name", vocab["artist"], pl.Int32).alias("artist"),
        pl.lit(0, pl.Int16).alias("bd"),  # KKBOX's own "not given" (bd_missing = 1); 03 keys groups on it
        pl.lit(None, pl.Int32).alias("song_length"),
        pl.lit(None, pl.Int16).alias("isrc_year"),
        # the log's own member facts: year first seen, days since first seen at this first listen
        pl.from_epoch("user_first_seen", "s").dt.year().cast(pl.Int16).alias("registration_year"),
        ((pl.col("first") - pl.col("user_first_seen")) // DAY).cast(pl.Int32).alias("membership_days"),
        pl.lit(0, pl.Int8).alias("genre_count"),
        pl.lit(0, pl.Int8).alias("composer_count"),
        pl.lit(0, pl.Int8).alias("lyricist_count"),
        pl.lit(0, pl.Int8).alias("member_missing"),
        pl.lit(1, pl.Int8).alias("bd_missing"),
        pl.col("artist_missing").cast(pl.Int8).alias("song_meta_missing"),
        pl.lit(1, pl.Int8).alias("song_extra_missing"),
    )
    return df.select("time_order", "user", "song", "target",
                     *[c for c in OUTPUT_ORDER if c not in ("time_order", "user", "song")])


def column_notes(n_events: int, artist_missing: int) -> dict:
    """quality.json's `columns`: what each KKBOX column holds for a listen log."""
    note = "not in a listen log (KKBOX-only column)"
    out = {c: {"missing_before": 1.0, "missing_after": 0.0, "filled_with": UNKNOWN, "note": note}
           for c in ABSENT_CATEGORICAL}
    out |= {c: {"missing_before": 1.0, "missing_after": 1.0, "filled_with": None, "note": note + "; left missing"}
            for c in ABSENT_NUMERIC}
    out["bd"] = {"missing_before": 1.0, "missing_after": 0.0, "filled_with": 0, "note": note + "; 0 = not given "
                 "(as in KKBOX's members.csv), bd_missing = 1"}
    out["artist"] = {"missing_before": round(artist_missing / max(n_events, 1), 6), "missing_after": 0.0,
                     "filled_with": UNKNOWN, "note": "artist name of the track in the log"}
    out["registration_year"] = {"missing_before": 0.0, "missing_after": 0.0, "filled_with": None,
                                "note": "year of the user's first listen in the log"}
    out["membership_days"] = {"missing_before": 0.0, "missing_after": 0.0, "filled_with": None,
                              "note": "days from the user's first listen in the log to this event"}
    return out


def build(derived: dict, lcfg: dict) -> dict:
    """The stage-01 outputs (same keys as musicrec.readers.kkbox.preprocess) from the derived pairs."""
    pairs, tracks = derived["pairs"], derived["tracks"]
    quality = {"source": "listens", "format": lcfg["format"], **accounting(derived, lcfg)}
    if pairs.height == 0 or not pairs["labellable"].any():
        raise_empty(lcfg, quality)
    users = (pairs.group_by("user").agg(pl.col("first").min().alias("user_first_seen"),
                                        pl.col("listens").sum().alias("listens"), pl.len().alias("tracks")))
    events = (pairs.filter(pl.col("labellable")).sort("first", "user", "track")
              .join(users.select("user", "user_first_seen"), on="user", how="left", maintain_order="left")
              .join(tracks.select("track", "artist_name"), on="track", how="left", maintain_order="left")
              .with_columns(pl.col("artist_name").is_null().alias("artist_missing"),
                            pl.col("artist_name").fill_null(UNKNOWN)))
    vocab = vocabularies(events)
    interactions = interactions_frame(events, vocab)
    code = pl.DataFrame({"user": np.arange(len(vocab["user"]), dtype=np.int32), "msno": vocab["user"]})
    users_out = code.join(users.rename({"user": "msno"}), on="msno", how="left", maintain_order="left").with_columns(
        pl.from_epoch("user_first_seen", "s").alias("first_seen")).drop("user_first_seen")
    songs_out = (pl.DataFrame({"song": np.arange(len(vocab["song"]), dtype=np.int32), "song_id": vocab["song"]})
                 .join(tracks.rename({"track": "song_id"}), on="song_id", how="left", maintain_order="left")
                 .with_columns(pl.from_epoch("first_seen", "s")))
    categories = pl.concat([
        pl.DataFrame({"column": col, "code": np.arange(len(vocab[col]), dtype=np.int32), "value": vocab[col]})
        for col in CATEGORICAL])
    n = interactions.height
    artist_missing = int(events["artist_missing"].sum())
    quality |= {
        "rows": {"in": quality["listens"]["in"], "out": n, "rejected": quality["listens"]["rejected"],
                 "repeats": quality["listens"]["repeats"], "unlabellable": quality["listens"]["unlabellable"]},
        "test_rows": None,
        "columns": column_notes(n, artist_missing),
        "coverage": {"rows_without_member": 0.0, "rows_without_song_metadata": round(artist_missing / n, 6),
                     "rows_without_song_extra": 1.0},
        "distinct": {"users": code.height, "songs": songs_out.height, "artists": len(vocab["artist"])},
    }
    rejects = derived["rejects"].select("line", "reason", pl.col("user").alias("msno"),
                                        pl.col("track").alias("song_id"), "time")
    return {"interactions": interactions, "kaggle_test": None, "rejects": rejects, "users": users_out,
            "songs": songs_out, "categories": categories, "quality": quality}


def raise_empty(lcfg: dict, quality: dict) -> None:
    from musicrec.errors import InputError

    c = quality["listens"]
    raise InputError(lcfg["path"], "listens", f"no labellable event: {c['in']} listens give {c['events']} events "
                                              f"({c['unlabellable']} first listens within window_days="
                                              f"{lcfg['window_days']:g} of the log end, {c['rejected']} rejected)")


def generator_truth(lcfg: dict, files: list[Path]) -> Path | None:
    """truth.parquet of musicrec.synthetic.listens when the log is one it wrote (source.json beside it)."""
    path = Path(lcfg["path"])
    folder = (path if path.is_dir() else files[0].parent).parent
    marker = folder / "source.json"
    if not marker.is_file() or json.loads(marker.read_text()).get("generator") != GENERATOR:
        return None
    truth = folder / "truth.parquet"
    return truth if truth.is_file() else None


def events_truth(interactions: pl.DataFrame, users: pl.DataFrame, songs: pl.DataFrame,
                 truth: pl.DataFrame) -> pl.DataFrame:
    """The generator's p_true and label per event, keyed like the KKBOX truth (file 'train', row = time_order)."""
    keyed = (interactions.select("time_order", "user", "song", "target")
             .join(users.select("user", "msno"), on="user", how="left")
             .join(songs.select("song", "song_id"), on="song", how="left")
             .join(truth.rename({"user": "msno", "track": "song_id"}), on=["msno", "song_id"], how="left"))
    return keyed.sort("time_order").select(pl.lit("train").alias("file"), pl.col("time_order").cast(pl.Int64).alias("row"),
                                           "p_true", pl.col("label").cast(pl.Int8), pl.lit(False).alias("flipped"),
                                           pl.col("target"))


def read(cfg: dict, st) -> dict:
    """Stage 01 for `data.source: listens`: scan the log, derive labelled events, return the outputs."""
    lcfg = cfg["data"]["listens"]
    if lcfg["format"] == "hetrec":  # play counts without time: a reader of its own
        from musicrec.readers import hetrec

        return hetrec.read(cfg, st)
    with st.step("scan listens"):
        listens, files = listen_formats.scan(lcfg)
        for f in files:
            st.external_input(f)
        log.info("01_preprocess: %s log, %d file(s) under %s", lcfg["format"], len(files), lcfg["path"])
    with st.step("derive events (streaming)"):
        derived = derive_events(listens, lcfg["window_days"], lcfg["same_play_seconds"])
    with st.step("encode"):
        out = build(derived, lcfg)
    truth_path = generator_truth(lcfg, files)
    if truth_path is not None:
        with st.step("synthetic truth"):
            st.external_input(truth_path)
            t = events_truth(out["interactions"], out["users"], out["songs"], pl.read_parquet(truth_path))
            st.write_parquet(t.drop("target"), "truth.parquet")
            same = t.filter(pl.col("label").is_not_null())
            out["quality"]["synthetic_truth"] = {
                "file": str(truth_path), "events_with_truth": same.height,
                "label_equals_target": round(float((same["label"] == same["target"]).mean()), 6) if same.height else None}
    c = out["quality"]["listens"]
    log.info("01_preprocess: listens in %d = events %d + repeats %d + unlabellable %d + rejected %d",
             c["in"], c["events"], c["repeats"], c["unlabellable"], c["rejected"])
    return out
