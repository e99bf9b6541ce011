"""Reader for raw listening logs (ListenBrainz, Last.fm 1K, any listen table): listens -> labelled events.

KKBOX's target is "the user played the song again within a month of the first observed listen".
A raw log holds what that label is made from, so this reader derives it: one event per first
listen of a (user, track) pair, target 1 when the same user plays the track again more than
`same_play_seconds` and at most `window_days` after that first listen. A pair whose window runs
past the log's last listen cannot be labelled (a replay may still come) and is counted, not kept.
Every listen is one of: an event, a repeat (any later listen of its pair, same-play duplicates
included), an unlabellable first listen, a rejected row, or (with `user_sample` < 1) a listen of a
user left out of the sample -- and these add up to the rows read.

Out of core: the log is never loaded. Polars scans it lazily; memory is bounded by the number of
users and tracks and by one bucket of listens, not by the log's length:
1. a streaming group-by per user (first/last valid listen, listens, rejected rows); the rejected
   rows themselves are collected only when there are any;
2. one streaming pass codes every valid listen to integers (the user's rank among the sorted user
   ids; the track id and its (artist, album, track name) variant as categorical codes, the track
   code then turned into the lexical rank of the id) and writes them partitioned by user code into
   buckets of about ROWS_PER_BUCKET listens;
3. per bucket, the (user, track) pair table on integer keys gives its counts and labelled events,
   kept as one packed 64-bit integer per event (first listen, user, track, target), and its share
   of the track table (listens, first seen, listeners, name variants);
4. the packed events are sorted once (time, then user, then track, as before on the strings), the
   codes renumbered in order of first appearance, and the interactions table is streamed to parquet.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from musicrec.progress import track as progress
from musicrec.readers import listen_formats
from musicrec.readers.schema import CATEGORICAL, OUTPUT_ORDER, WIDE_CODES

log = logging.getLogger("musicrec")

UNKNOWN = "unknown"
DAY = 86_400
STREAMING = "streaming"
GENERATOR = "musicrec.synthetic.listens"  # source.json marker of generated logs (their truth is read)
ROWS_PER_BUCKET = 8_000_000  # listens per bucket of the per-pair group-by (bounds its memory)
MAX_KEY_BITS = 64  # events pack into one uint64 when time span, user and track codes fit (else a frame sort)
# KKBOX columns a listen log has no counterpart for (categorical -> "unknown", numeric -> missing)
ABSENT_CATEGORICAL = tuple(c for c in CATEGORICAL if c != "artist")
ABSENT_NUMERIC = ("song_length", "isrc_year")
NAMES = ("artist", "album", "track_name")
NULL_NAME = "\u2400"  # stands for a missing name inside a name variant (never in real names)
FNV_OFFSET, FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)


def reject_reason() -> pl.Expr:
    return (pl.when(pl.col("user").is_null()).then(pl.lit("missing user"))
            .when(pl.col("track").is_null()).then(pl.lit("missing track"))
            .when(pl.col("time").is_null()).then(pl.lit("missing or unparseable time"))
            .otherwise(None).alias("reason"))


def pair_table(listens: pl.DataFrame, same_play_s: float) -> pl.DataFrame:
    """One row per (user, track): first and last listen, listens, same-play duplicates, first real replay.

    Sort-based and vectorised: after sorting by (user, track, time) a pair is a run of rows; its
    same-play listens are the run's prefix within `same_play_s` of the first, its first real replay
    the row right after that prefix (missing when the prefix is the whole run).
    """
    s = listens.select("user", "track", "time").sort("user", "track", "time")
    user, track, t = s["user"].to_numpy(), s["track"].to_numpy(), s["time"].to_numpy()
    n = len(t)
    new = np.ones(n, dtype=bool)
    new[1:] = (user[1:] != user[:-1]) | (track[1:] != track[:-1])
    start = np.flatnonzero(new)
    end = np.append(start[1:], n)
    first = t[start]
    near = t <= first[np.cumsum(new) - 1] + same_play_s  # the same play as the first listen
    k = np.add.reduceat(near.astype(np.int64), start) if n else np.zeros(0, np.int64)
    after = start + k
    has_replay = after < end
    return pl.DataFrame({
        "user": user[start], "track": track[start], "first": first, "last": t[end - 1],
        "listens": (end - start).astype(np.int64), "same_play": k - 1,
        "replay_at": t[np.minimum(after, max(n - 1, 0))], "has_replay": has_replay,
    }).with_columns(pl.when(pl.col("has_replay")).then(pl.col("replay_at")).alias("replay_at")).drop("has_replay")


def label(pairs: pl.DataFrame, log_end: int, window_s: float) -> pl.DataFrame:
    """labellable: the whole window lies inside the log; target: a replay inside the window."""
    end = pl.col("first") + window_s
    return pairs.with_columns(
        (end <= log_end).alias("labellable"),
        (pl.col("replay_at").is_not_null() & (pl.col("replay_at") <= end)).cast(pl.Int8).alias("target"),
    )


def fnv1a(values: pl.Series, salt: str) -> np.ndarray:
    """64-bit FNV-1a of `salt` + each string's UTF-8 bytes: a stable hash, the same on every machine.

    Vectorised over the strings: one numpy step per byte position (bounded by the longest id).
    """
    data = pl.DataFrame({"v": values}).select(
        pl.concat_str(pl.lit(salt), pl.col("v").cast(pl.String).fill_null(""))).to_series()
    lengths = data.str.len_bytes().to_numpy().astype(np.int64)
    raw = np.frombuffer(data.str.join("").item().encode("utf-8"), dtype=np.uint8) if data.len() else np.zeros(0, np.uint8)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if data.len() else np.zeros(0, np.int64)
    h = np.full(data.len(), FNV_OFFSET, dtype=np.uint64)
    for j in range(int(lengths.max()) if data.len() else 0):
        live = lengths > j
        byte = raw[starts[live] + j].astype(np.uint64)
        h[live] = (h[live] ^ byte) * FNV_PRIME
    return h


def sample_mask(users: pl.Series, share: float, seed: int) -> np.ndarray:
    """Which users are in a seeded `share` of them: hash(seed, user id) / 2^64 < share."""
    if share >= 1.0:
        return np.ones(users.len(), dtype=bool)
    u = fnv1a(users, f"{seed}:").astype(np.float64) / 2.0 ** 64
    return u < share


def code_expr(col: str, values: pl.Series, strict: bool = True) -> pl.Expr:
    """String -> its index in `values` (an Enum cast: a hash lookup, streams); not strict: others -> null."""
    return pl.col(col).cast(pl.Enum(values), strict=strict).to_physical().cast(pl.Int32).alias(col)


def bits(n: int) -> int:
    return max(int(n).bit_length(), 1)


class EventKeys:
    """Labelled events packed as (first - log_start, user, track, target) in one uint64 each, or a frame
    of the four columns when they do not fit in 64 bits (sorted the same way)."""

    def __init__(self, log_start: int, span: int, n_users: int, n_tracks: int, max_bits: int = 64):
        self.log_start = log_start
        self.tb, self.ub = bits(n_tracks), bits(n_users)
        self.packed = bits(span) + self.ub + self.tb + 1 <= max_bits
        self.parts: list = []

    def add(self, events: pl.DataFrame) -> None:
        if not self.packed:
            self.parts.append(events.select("first", "user", "track", "target"))
            return
        f = (events["first"].to_numpy() - self.log_start).astype(np.uint64)
        u = events["user"].to_numpy().astype(np.uint64)
        t = events["track"].to_numpy().astype(np.uint64)
        y = events["target"].to_numpy().astype(np.uint64)
        self.parts.append((f << np.uint64(self.ub + self.tb + 1)) | (u << np.uint64(self.tb + 1))
                          | (t << np.uint64(1)) | y)

    def sorted_columns(self) -> dict[str, np.ndarray]:
        """first (int64), user, track (int32), target (int8) of every event, sorted by (first, user, track)."""
        if not self.packed:
            df = pl.concat(self.parts).sort("first", "user", "track") if self.parts else None
            self.parts = []
            if df is None:
                return {"first": np.zeros(0, np.int64), "user": np.zeros(0, np.int32),
                        "track": np.zeros(0, np.int32), "target": np.zeros(0, np.int8)}
            return {"first": df["first"].to_numpy().astype(np.int64), "user": df["user"].to_numpy().astype(np.int32),
                    "track": df["track"].to_numpy().astype(np.int32), "target": df["target"].to_numpy().astype(np.int8)}
        key = np.concatenate(self.parts) if self.parts else np.zeros(0, np.uint64)
        self.parts = []
        key.sort()
        one = np.uint64(1)
        out = {"target": (key & one).astype(np.int8),
               "track": ((key >> one) & np.uint64((1 << self.tb) - 1)).astype(np.int32),
               "user": ((key >> np.uint64(self.tb + 1)) & np.uint64((1 << self.ub) - 1)).astype(np.int32)}
        key >>= np.uint64(self.ub + self.tb + 1)
        out["first"] = key.astype(np.int64) + self.log_start
        return out


def user_pass(with_reason: pl.LazyFrame) -> pl.DataFrame:
    """Per user (null: rows without one): first and last valid listen, valid listens, rejected rows."""
    valid = pl.col("reason").is_null()
    t = pl.col("time").filter(valid)
    return with_reason.group_by("user").agg(t.min().alias("first_seen"), t.max().alias("last"),
                                            valid.sum().cast(pl.Int64).alias("listens"),
                                            (~valid).sum().cast(pl.Int64).alias("rejected")).collect(engine=STREAMING)


def lexical_ranks(names: pl.Series) -> np.ndarray:
    """rank[code] = position of the string with that code in sorted (byte) order; missing codes last."""
    order = names.arg_sort(nulls_last=True).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def derive_events(listens: pl.LazyFrame, window_days: float, same_play_s: float, scratch: Path, *,
                  user_sample: float = 1.0, seed: int = 0, buckets: int | None = None,
                  max_key_bits: int | None = None) -> dict:
    """The labelled events (sorted in time, integer codes) and every count of the listen accounting.

    Two streaming passes over the log: per user (and rejected rows), then every valid listen coded to
    integers (user: its rank among the sorted user ids; track id: a categorical code, turned into the
    id's lexical rank; artist, album and track name: one categorical code per variant) and written to
    `scratch`, bucketed by user. Each bucket then gives its pair table and its share of the track
    table (a track's names are the alphabetically first of each over its distinct variants). `buckets` defaults to one per
    ROWS_PER_BUCKET listens; the result does not depend on it. `scratch` is removed at the end.
    """
    with_reason = listens.with_columns(reject_reason())
    per_user = user_pass(with_reason)
    n_rejected = int(per_user["rejected"].sum()) if per_user.height else 0
    rejects = (with_reason.filter(pl.col("reason").is_not_null()).collect(engine=STREAMING) if n_rejected
               else pl.DataFrame(schema=with_reason.collect_schema()))
    users_all = per_user.filter(pl.col("user").is_not_null() & (pl.col("listens") > 0)).drop("rejected").sort("user")
    counts = {"in": rejects.height, "rejected": rejects.height, "events": 0, "repeats": 0, "same_play_merged": 0,
              "unlabellable": 0}
    derived = {"rejects": rejects, "counts": counts, "log_end": None, "log_start": None,
               "unlabellable_replayed": 0, "replayed": 0}
    if users_all.height == 0:
        return derived
    keep = sample_mask(users_all["user"], user_sample, seed)
    users = users_all.filter(pl.Series(keep))
    sampled_out = int(users_all["listens"].sum() - users["listens"].sum())
    counts["in"] += int(users_all["listens"].sum())
    if user_sample < 1.0:
        counts["sampled_out"] = sampled_out
        derived["sample"] = {"share": user_sample, "seed": seed, "users_in": users_all.height,
                             "users_kept": users.height, "listens_sampled_out": sampled_out}
    log_end = int(users_all["last"].max())  # the log's own end, sampled or not
    derived["log_end"] = log_end
    if users.height == 0:
        return derived
    log_start = int(users["first_seen"].min())
    derived["log_start"] = log_start
    ok = with_reason.filter(pl.col("reason").is_null())
    if user_sample < 1.0:
        ok = ok.filter(pl.col("user").is_in(users["user"].implode()))
    n_users, n_valid = users.height, int(users["listens"].sum())
    if buckets is None:
        buckets = max(1, math.ceil(n_valid / ROWS_PER_BUCKET))
    buckets = min(buckets, n_users)
    scratch = Path(scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    log.info("listens: %d users, %d listens -> %d bucket(s) by user", n_users, n_valid, buckets)
    # one shared code per track id and per (artist, album, track name) variant: two hash lookups a listen
    tcats, vcats = pl.Categories.random(), pl.Categories.random()
    alive = [pl.Series("t", [], dtype=pl.Categorical(tcats)),  # keep the codes' strings while needed
             pl.Series("v", [], dtype=pl.Categorical(vcats))]
    variant = pl.concat_str([pl.col(c).fill_null(NULL_NAME) for c in NAMES], separator=listen_formats.TRACK_SEP)
    coded = ok.select(code_expr("user", users["user"]), "time",
                      pl.col("track").cast(pl.Categorical(tcats)).to_physical().alias("track"),
                      variant.cast(pl.Categorical(vcats)).to_physical().alias("variant"))
    coded.with_columns((pl.col("user") % buckets).alias("bucket")).sink_parquet(
        pl.PartitionBy(scratch, key="bucket", include_key=False), engine=STREAMING, mkdir=True)
    track_ids, variants = tcats.to_series(), vcats.to_series()
    del alive
    lex = lexical_ranks(track_ids)  # track code -> rank of its id in sorted order (the events' tie order)
    n_codes = len(track_ids)
    keys = EventKeys(log_start, log_end - log_start, n_users, n_codes,
                     MAX_KEY_BITS if max_key_bits is None else max_key_bits)
    pair_tracks = np.zeros(n_users, dtype=np.int64)  # distinct tracks per user
    # per track, indexed by the lexical rank of its id: listens, listeners, first seen; its name variants
    t_listens = np.zeros(n_codes, dtype=np.int64)
    t_listeners = np.zeros(n_codes, dtype=np.int64)
    t_first = np.full(n_codes, np.iinfo(np.int64).max, dtype=np.int64)
    seen = pl.DataFrame(schema={"track": pl.Int64, "variant": pl.UInt32})
    window_s = window_days * DAY
    for b in progress(range(buckets), "pairs per bucket", unit="buckets"):
        folder = scratch / f"bucket={b}"
        if not folder.is_dir():
            continue
        part = pl.read_parquet(folder / "*.parquet", hive_partitioning=False)
        shutil.rmtree(folder)
        part = part.with_columns(pl.Series("track", lex[part["track"].to_numpy()]))
        tr = part.group_by("track").agg(pl.len().cast(pl.Int64).alias("listens"), pl.col("time").min().alias("first"))
        i = tr["track"].to_numpy()
        t_listens[i] += tr["listens"].to_numpy()
        t_first[i] = np.minimum(t_first[i], tr["first"].to_numpy())
        seen = pl.concat([seen, part.select("track", "variant").unique()]).unique()
        pairs = label(pair_table(part, same_play_s), log_end, window_s)
        del part, tr
        n_pairs, n_listens = pairs.height, int(pairs["listens"].sum())
        lab = pairs.filter(pl.col("labellable"))
        unl = pairs.filter(~pl.col("labellable"))
        counts["events"] += lab.height
        counts["repeats"] += n_listens - n_pairs
        counts["same_play_merged"] += int(pairs["same_play"].sum())
        counts["unlabellable"] += unl.height
        derived["unlabellable_replayed"] += int(unl["replay_at"].is_not_null().sum())
        derived["replayed"] += int(lab["target"].sum())
        pair_tracks += np.bincount(pairs["user"].to_numpy(), minlength=n_users)
        t_listeners += np.bincount(pairs["track"].to_numpy(), minlength=n_codes)
        keys.add(lab)
        del pairs, lab, unl
    shutil.rmtree(scratch, ignore_errors=True)
    assert counts["in"] == (counts["events"] + counts["repeats"] + counts["unlabellable"] + counts["rejected"]
                            + counts.get("sampled_out", 0))
    # a track's names: the alphabetically first of each over its variants (= over its listens)
    parts = (seen.with_columns(variants.gather(seen["variant"]).str.split_exact(listen_formats.TRACK_SEP, 2)
                               .struct.rename_fields(list(NAMES)).alias("v")).unnest("v")
             .with_columns(pl.when(pl.col(c) != NULL_NAME).then(pl.col(c)).alias(c) for c in NAMES)
             .group_by("track").agg(pl.col(c).min() for c in NAMES))
    # one row per lexical rank r (the track id of rank r)
    tracks = (pl.DataFrame({"track": track_ids.gather(np.argsort(lex)), "rank": np.arange(n_codes, dtype=np.int64),
                            "listens": t_listens, "listeners": t_listeners,
                            "first_seen": np.where(t_listens > 0, t_first, 0)})
              .join(parts.rename({"track": "rank", "artist": "artist_name"}), on="rank", how="left",
                    maintain_order="left")
              .select("track", "artist_name", "album", "track_name", "listens", "listeners", "first_seen"))
    derived |= {"keys": keys, "tracks": tracks,
                "users": users.with_columns(pl.Series("tracks", pair_tracks).cast(pl.UInt32)),
                "n_pairs": counts["events"] + counts["unlabellable"]}
    return derived


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
    """listens in = events + repeats + unlabellable + rejected (+ sampled_out), each counted."""
    counts, rejects = dict(derived["counts"]), derived["rejects"]
    events, replayed = counts["events"], derived["replayed"]
    by_reason = rejects.group_by("reason").len().sort("reason")
    out = {
        "listens": counts,
        "rejected_by_reason": dict(zip(by_reason["reason"].to_list(), by_reason["len"].to_list())),
        "unlabellable": {
            "pairs": counts["unlabellable"],
            "reason": f"first listen less than window_days={lcfg['window_days']:g} days before the log's "
                      f"last listen ({iso(derived['log_end'])}): a replay could still follow",
            "replayed_before_log_end": derived["unlabellable_replayed"],
        },
        "target": {"events": events, "replayed": replayed,
                   "rate": round(replayed / events, 6) if events else None,
                   "interval95": wilson(replayed, events)},
        "log": {"first_listen": iso(derived.get("log_start")), "last_listen": iso(derived["log_end"]),
                "window_days": lcfg["window_days"], "same_play_seconds": lcfg["same_play_seconds"]},
    }
    if "sample" in derived:
        out["user_sample"] = derived["sample"] | {
            "note": "users drawn by a seeded hash of the user id (FNV-1a of 'seed:user'); the log's last "
                    "listen is still the whole log's"}
    return out


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


def build(derived: dict, lcfg: dict, interactions_path: Path) -> dict:
    """The stage-01 outputs (same keys as musicrec.readers.kkbox.preprocess) from the derived events.

    The interactions table is streamed to `interactions_path` (its entry in the result is that path);
    `events` holds the user and song codes of every event in time order (for the synthetic truth).
    """
    quality = {"source": "listens", "format": lcfg["format"], **accounting(derived, lcfg)}
    if derived.get("n_pairs", 0) == 0 or quality["listens"]["events"] == 0:
        raise_empty(lcfg, quality)
    users, tracks = derived["users"], derived["tracks"]
    ev = derived.pop("keys").sorted_columns()
    n = len(ev["first"])
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
    quality |= {
        "rows": {"in": quality["listens"]["in"], "out": n, "rejected": quality["listens"]["rejected"],
                 "repeats": quality["listens"]["repeats"], "unlabellable": quality["listens"]["unlabellable"]},
        "test_rows": None,
        "columns": column_notes(n, artist_missing),
        "coverage": {"rows_without_member": 0.0, "rows_without_song_metadata": round(artist_missing / n, 6),
                     "rows_without_song_extra": 1.0},
        "distinct": {"users": users_out.height, "songs": songs_out.height, "artists": len(vocab["artist"])},
    }
    if "sampled_out" in quality["listens"]:
        quality["rows"]["sampled_out"] = quality["listens"]["sampled_out"]
    rejects = derived["rejects"].select("line", "reason", pl.col("user").alias("msno"),
                                        pl.col("track").alias("song_id"), "time")
    return {"interactions": Path(interactions_path), "kaggle_test": None, "rejects": rejects, "users": users_out,
            "songs": songs_out, "categories": categories, "quality": quality,
            "events": {"user": ev["user"], "song": ev["song"], "target": ev["target"]}}


def raise_empty(lcfg: dict, quality: dict) -> None:
    from musicrec.errors import InputError

    c = quality["listens"]
    raise InputError(lcfg["path"], "listens", f"no labellable event: {c['in']} listens give {c['events']} events "
                                              f"({c['unlabellable']} first listens within window_days="
                                              f"{lcfg['window_days']:g} of the log end, {c['rejected']} rejected"
                                              + (f", {c['sampled_out']} of users left out by user_sample"
                                                 if c.get("sampled_out") else "") + ")")


def generator_truth(lcfg: dict, files: list[Path]) -> Path | None:
    """truth.parquet of musicrec.synthetic.listens when the log is one it wrote (source.json beside it)."""
    path = Path(lcfg["path"])
    folder = (path if path.is_dir() else files[0].parent).parent
    marker = folder / "source.json"
    if not marker.is_file() or json.loads(marker.read_text()).get("generator") != GENERATOR:
        return None
    truth = folder / "truth.parquet"
    return truth if truth.is_file() else None


def events_truth(events: dict, users: pl.DataFrame, songs: pl.DataFrame, truth_path: Path) -> pl.LazyFrame:
    """The generator's p_true and label per event, keyed like the KKBOX truth (file 'train', row = time_order).

    The truth is read in batches and matched to the events by (user, song) code pairs through one sort
    of the events' pair keys, so memory stays a few bytes per event.
    """
    n, n_songs = len(events["user"]), songs.height
    pk = events["user"].astype(np.int64) * n_songs + events["song"]
    order = np.argsort(pk, kind="stable")
    pk = pk[order]
    p_true = np.zeros(n, dtype=np.float64)
    label_ = np.zeros(n, dtype=np.int8)
    has = np.zeros(n, dtype=bool)
    t = (pl.scan_parquet(truth_path)
         .select(code_expr("user", users["msno"], strict=False), code_expr("track", songs["song_id"], strict=False),
                 "p_true", pl.col("label").cast(pl.Int8))
         .drop_nulls(["user", "track"]))  # pairs without an event (unlabellable, or sampled out)
    for batch in t.collect_batches(engine=STREAMING):
        key = batch["user"].to_numpy().astype(np.int64) * n_songs + batch["track"].to_numpy()
        pos = np.minimum(np.searchsorted(pk, key), max(n - 1, 0))
        hit = pk[pos] == key
        rows = order[pos[hit]]
        p_true[rows] = batch["p_true"].to_numpy()[hit]
        label_[rows] = batch["label"].to_numpy()[hit]
        has[rows] = True
    del pk, order
    present = pl.col("has")
    return pl.LazyFrame({"p_true": p_true, "label": label_, "has": has, "target": events["target"]}).select(
        pl.lit("train").alias("file"), pl.int_range(pl.len(), dtype=pl.Int64).alias("row"),
        pl.when(present).then(pl.col("p_true")).alias("p_true"),
        pl.when(present).then(pl.col("label")).alias("label"), pl.lit(False).alias("flipped"), "target")


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
    with st.step("derive events (streaming, bucketed)"):
        derived = derive_events(listens, lcfg["window_days"], lcfg["same_play_seconds"], st.tmp / "listens-buckets",
                                user_sample=lcfg["user_sample"], seed=cfg["seed"])
    with st.step("encode"):
        out = build(derived, lcfg, st.output("interactions.parquet"))
        st.rows["interactions.parquet"] = out["quality"]["rows"]["out"]
    events = out.pop("events")
    truth_path = generator_truth(lcfg, files)
    if truth_path is not None:
        with st.step("synthetic truth"):
            st.external_input(truth_path)
            t = events_truth(events, out["users"], out["songs"], truth_path)
            t.drop("target").sink_parquet(st.output("truth.parquet"), compression="zstd", statistics=True,
                                          engine=STREAMING)
            st.rows["truth.parquet"] = len(events["user"])
            agree = t.filter(pl.col("label").is_not_null()).select(
                pl.len().alias("n"), (pl.col("label") == pl.col("target")).mean().alias("same")).collect()
            k = int(agree["n"][0])
            out["quality"]["synthetic_truth"] = {
                "file": str(truth_path), "events_with_truth": k,
                "label_equals_target": round(float(agree["same"][0]), 6) if k else None}
    del events
    c = out["quality"]["listens"]
    log.info("01_preprocess: listens in %d = events %d + repeats %d + unlabellable %d + rejected %d%s",
             c["in"], c["events"], c["repeats"], c["unlabellable"], c["rejected"],
             f" + sampled out {c['sampled_out']}" if "sampled_out" in c else "")
    return out
