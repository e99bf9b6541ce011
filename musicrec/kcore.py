"""k-core filtering of the interactions: keep tracks with enough listeners and users with enough tracks.

The seed projects on listening logs drop rare tracks and light users (10 and 10) before ALS. Removing
tracks can push users under their minimum and back, so the two rules alternate until neither removes
a row. Off (0 and 0) by default; what it removed is counted in quality.json.
"""
from __future__ import annotations

import polars as pl


def kcore(rows: pl.DataFrame, min_listeners: int, min_tracks: int) -> tuple[pl.DataFrame, int]:
    """Rows whose song has >= min_listeners distinct users and whose user has >= min_tracks distinct songs."""
    iterations = 0
    while True:
        iterations += 1
        keep = ((pl.col("user").n_unique().over("song") >= min_listeners)
                & (pl.col("song").n_unique().over("user") >= min_tracks))
        kept = rows.filter(keep)
        if kept.height == rows.height:
            return kept, iterations
        rows = kept


def active(kcfg: dict) -> bool:
    return kcfg["min_listeners_per_track"] > 1 or kcfg["min_tracks_per_user"] > 1


def apply(out: dict, kcfg: dict) -> dict:
    """Filter stage 01's interactions in place of the dict; quality.json gets the counts."""
    a, b = kcfg["min_listeners_per_track"], kcfg["min_tracks_per_user"]
    if not active(kcfg):
        return out
    before = out["interactions"]
    after, iterations = kcore(before, a, b)
    q = out["quality"]
    q["kcore"] = {
        "min_listeners_per_track": a, "min_tracks_per_user": b, "iterations": iterations,
        "rows_before": before.height, "rows_after": after.height, "rows_removed": before.height - after.height,
        "users_removed": before["user"].n_unique() - after["user"].n_unique(),
        "songs_removed": before["song"].n_unique() - after["song"].n_unique(),
    }
    q["rows"]["out"] = after.height
    q["rows"]["kcore_removed"] = before.height - after.height
    if after.height == 0:
        from musicrec.config import ConfigError

        raise ConfigError(f"preprocess.kcore (min_listeners_per_track {a}, min_tracks_per_user {b}) removes "
                          f"all {before.height} rows; lower them")
    return {**out, "interactions": after}
