"""One bucket's (user, track) pairs: their runs of listens, their labels, and the packed event keys.

Pure numpy/polars on integer codes, so the same code serves one bucket or the whole log and the
result does not depend on how the log was cut into buckets.
"""
from __future__ import annotations

import numpy as np
import polars as pl


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


def bits(n: int) -> int:
    return max(int(n).bit_length(), 1)


class EventKeys:
    """Labelled events packed as (first - log_start, user, track, target) in one uint64 each, or a frame
    of the four columns when they do not fit in 64 bits (sorted the same way).

    Packing makes the one global sort of all events a sort of plain integers: 8 bytes an event.
    """

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
