"""Listens -> labelled events, out of core: the log is scanned, never loaded.

Memory is bounded by the number of users and tracks and by one bucket of listens, not by the
log's length:
1. a streaming group-by per user (first/last valid listen, listens, rejected rows); the rejected
   rows themselves are collected only when there are any;
2. one streaming pass codes every valid listen to integers (the user's rank among the sorted user
   ids; the track id and its (artist, album, track name) variant as categorical codes, the track
   code then turned into the lexical rank of the id) and writes them partitioned by user code into
   buckets of about ROWS_PER_BUCKET listens;
3. per bucket, the (user, track) pair table on integer keys gives its counts and labelled events
   (`listen_pairs.EventKeys`), and its share of the track table (listens, first seen, listeners,
   name variants).
Integer codes, not strings, go through the per-bucket group-bys: that is what keeps a bucket small.
"""
from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from musicrec.listen_schema import DAY, TRACK_SEP
from musicrec.engine import LocalEngine
from musicrec.readers.listen_formats import UNREADABLE
from musicrec.readers.listen_pairs import EventKeys, label, pair_table

log = logging.getLogger("musicrec")

STREAMING = "streaming"
ROWS_PER_BUCKET = 8_000_000  # listens per bucket of the per-pair group-by (bounds its memory)
MAX_KEY_BITS = 64  # events pack into one uint64 when time span, user and track codes fit (else a frame sort)
NAMES = ("artist", "album", "track_name")
NULL_NAME = "\u2400"  # stands for a missing name inside a name variant (never in real names)
FNV_OFFSET, FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)


def reject_reason(names: list[str]) -> pl.Expr:
    """Why a listen cannot be used (null: it can); a tolerant scan's own reason (UNREADABLE) comes first."""
    rules = [(pl.col("user").is_null(), pl.lit("missing user")),
             (pl.col("track").is_null(), pl.lit("missing track")),
             (pl.col("time").is_null(), pl.lit("missing or unparseable time"))]
    if UNREADABLE in names:
        rules.insert(0, (pl.col(UNREADABLE).is_not_null(), pl.col(UNREADABLE)))
    expr = pl.when(rules[0][0]).then(rules[0][1])
    for condition, reason in rules[1:]:
        expr = expr.when(condition).then(reason)
    return expr.otherwise(None).alias("reason")


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


@dataclass(frozen=True)
class BucketJob:
    """What every bucket's task shares (sent to each worker once): where the buckets are, the track
    codes' lexical ranks, the labelling rule and the event keys' layout."""

    scratch: str
    lex: np.ndarray
    log_end: int
    window_s: float
    same_play_s: float
    keys: tuple   # EventKeys' arguments


def bucket_pairs(job: BucketJob, b: int) -> dict | None:
    """One bucket's pairs, labels and counts, and its share of the per-track and per-user tables
    (None: no user fell in it). A task: it reads its bucket from storage every worker can read, and
    leaves it there (a task run again after its worker died reads it again)."""
    folder = Path(job.scratch) / f"bucket={b}"
    if not folder.is_dir():
        return None
    part = pl.read_parquet(folder / "*.parquet", hive_partitioning=False)
    part = part.with_columns(pl.Series("track", job.lex[part["track"].to_numpy()]))
    tr = part.group_by("track").agg(pl.len().cast(pl.Int64).alias("listens"), pl.col("time").min().alias("first"))
    seen = part.select("track", "variant").unique()
    pairs = label(pair_table(part, job.same_play_s), job.log_end, job.window_s)
    del part
    lab = pairs.filter(pl.col("labellable"))
    unl = pairs.filter(~pl.col("labellable"))
    keys = EventKeys(*job.keys)
    keys.add(lab)
    user, user_tracks = np.unique(pairs["user"].to_numpy(), return_counts=True)
    listened, listeners = np.unique(pairs["track"].to_numpy(), return_counts=True)
    counts = {"events": lab.height, "repeats": int(pairs["listens"].sum()) - pairs.height,
              "same_play_merged": int(pairs["same_play"].sum()), "unlabellable": unl.height,
              "unlabellable_replayed": int(unl["replay_at"].is_not_null().sum()), "replayed": int(lab["target"].sum())}
    return {"track": tr["track"].to_numpy(), "track_listens": tr["listens"].to_numpy(),
            "track_first": tr["first"].to_numpy(), "seen": seen, "counts": counts, "user": user,
            "user_tracks": user_tracks, "listened": listened, "listeners": listeners, "keys": keys.parts[0]}


def derive_events(listens: pl.LazyFrame, window_days: float, same_play_s: float, scratch: Path, *,
                  user_sample: float = 1.0, seed: int = 0, buckets: int | None = None,
                  max_key_bits: int | None = None, engine=None) -> dict:
    """The labelled events (sorted in time, integer codes) and every count of the listen accounting.

    Two streaming passes over the log: per user (and rejected rows), then every valid listen coded to
    integers (user: its rank among the sorted user ids; track id: a categorical code, turned into the
    id's lexical rank; artist, album and track name: one categorical code per variant) and written to
    `scratch`, bucketed by user. Each bucket then gives its pair table and its share of the track
    table (a track's names are the alphabetically first of each over its distinct variants). `buckets` defaults to one per
    ROWS_PER_BUCKET listens; the result does not depend on it. `scratch` is removed at the end.
    The buckets are tasks of `engine` (musicrec.engine; None: here, in order), so on a cluster
    `scratch` must be on storage every worker reads; the outputs are the same bytes either way.
    """
    with_reason = listens.with_columns(reject_reason(listens.collect_schema().names()))
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
    variant = pl.concat_str([pl.col(c).fill_null(NULL_NAME) for c in NAMES], separator=TRACK_SEP)
    coded = ok.select(code_expr("user", users["user"]), "time",
                      pl.col("track").cast(pl.Categorical(tcats)).to_physical().alias("track"),
                      variant.cast(pl.Categorical(vcats)).to_physical().alias("variant"))
    coded.with_columns((pl.col("user") % buckets).alias("bucket")).sink_parquet(
        pl.PartitionBy(scratch, key="bucket", include_key=False), engine=STREAMING, mkdir=True)
    track_ids, variants = tcats.to_series(), vcats.to_series()
    del alive
    lex = lexical_ranks(track_ids)  # track code -> rank of its id in sorted order (the events' tie order)
    n_codes = len(track_ids)
    key_args = (log_start, log_end - log_start, n_users, n_codes, MAX_KEY_BITS if max_key_bits is None else max_key_bits)
    keys = EventKeys(*key_args)
    pair_tracks = np.zeros(n_users, dtype=np.int64)  # distinct tracks per user
    # per track, indexed by the lexical rank of its id: listens, listeners, first seen; its name variants
    t_listens = np.zeros(n_codes, dtype=np.int64)
    t_listeners = np.zeros(n_codes, dtype=np.int64)
    t_first = np.full(n_codes, np.iinfo(np.int64).max, dtype=np.int64)
    seen = pl.DataFrame(schema={"track": pl.Int64, "variant": pl.UInt32})
    job = BucketJob(str(scratch), lex, log_end, window_days * DAY, same_play_s, key_args)
    # every bucket's share is merged by sums, minima and unions, so the order buckets finish in changes nothing
    for _, got in (engine or LocalEngine()).map_unordered(bucket_pairs, range(buckets), shared=job,
                                                          desc="pairs per bucket", unit="buckets"):
        if got is None:
            continue
        i = got["track"]
        t_listens[i] += got["track_listens"]
        t_first[i] = np.minimum(t_first[i], got["track_first"])
        seen = pl.concat([seen, got["seen"]]).unique()
        for name, n in got["counts"].items():
            (counts if name in counts else derived)[name] += n
        pair_tracks[got["user"]] += got["user_tracks"]
        t_listeners[got["listened"]] += got["listeners"]
        keys.parts.append(got["keys"])
    shutil.rmtree(scratch, ignore_errors=True)
    check_accounting(counts)
    # a track's names: the alphabetically first of each over its variants (= over its listens)
    parts = (seen.with_columns(variants.gather(seen["variant"]).str.split_exact(TRACK_SEP, 2)
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


def check_accounting(counts: dict) -> None:
    """Every listen read is exactly one of the kinds counted.

    A RuntimeError, not an InputError: the counts come from two passes over the same rows, so a
    mismatch is a bug in this reader (or a file changed while it was read), never a rule the user's
    data broke; unlike `assert`, it survives `python -O`.
    """
    parts = (counts["events"] + counts["repeats"] + counts["unlabellable"] + counts["rejected"]
             + counts.get("sampled_out", 0))
    if counts["in"] != parts:
        raise RuntimeError(f"listen accounting does not add up: in {counts['in']} != events + repeats + unlabellable "
                           f"+ rejected + sampled out = {parts} ({counts})")
