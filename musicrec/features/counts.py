"""Counts, distinct counts and shares of the interaction pool (label-free).

Every count sums the `in_pool` flag over the rows of a group of the stacked frame of all parts,
instead of counting rows: the same code then serves both `use_test_interactions` settings, and a
row outside the pool can never change another row's count.
"""
from __future__ import annotations

import numpy as np
import polars as pl

from musicrec.features.keys import KeyCodes, group_sum

# name -> columns; counts of pool rows sharing the row's value(s)
COUNT_KEYS: dict[str, tuple[str, ...]] = {
    "user": ("user",),
    "song": ("song",),
    "artist": ("artist",),
    "composer": ("composer",),
    "lyricist": ("lyricist",),
    "genre": ("genre",),
    "language": ("language",),
    "source_system_tab": ("source_system_tab",),
    "source_screen_name": ("source_screen_name",),
    "source_type": ("source_type",),
    "user_artist": ("user", "artist"),
    "user_genre": ("user", "genre"),
    "user_language": ("user", "language"),
    "user_source_system_tab": ("user", "source_system_tab"),
    "user_source_screen_name": ("user", "source_screen_name"),
    "user_source_type": ("user", "source_type"),
    "song_source_system_tab": ("song", "source_system_tab"),
    "song_source_type": ("song", "source_type"),
}

# name -> (group, counted column): distinct values of the column among the group's pool rows
DISTINCT: dict[str, tuple[str, str]] = {
    "nuniq_user_artist": ("user", "artist"),
    "nuniq_user_genre": ("user", "genre"),
    "nuniq_artist_song": ("artist", "song"),
    "nuniq_song_user": ("song", "user"),
}

# name -> (numerator count, denominator count)
SHARES: dict[str, tuple[str, str]] = {
    "share_user_artist": ("user_artist", "user"),
    "share_user_genre": ("user_genre", "user"),
    "share_user_language": ("user_language", "user"),
    "share_user_source_system_tab": ("user_source_system_tab", "user"),
    "share_user_source_screen_name": ("user_source_screen_name", "user"),
    "share_user_source_type": ("user_source_type", "user"),
    "share_song_source_system_tab": ("song_source_system_tab", "song"),
    "share_song_source_type": ("song_source_type", "song"),
    "share_artist_song": ("song", "artist"),
}


def _label(cols: tuple[str, ...]) -> str:
    return " x ".join(cols)


def pool_count(keys: KeyCodes, cols: tuple[str, ...], in_pool: np.ndarray) -> np.ndarray:
    """Number of pool rows with the row's value(s) of `cols` (0 when none)."""
    return group_sum(*keys(cols), in_pool)


def distinct_count(keys: KeyCodes, group: str, col: str, in_pool: np.ndarray) -> np.ndarray:
    """Distinct values of `col` among the pool rows of the row's `group`."""
    pair, n_pairs = keys((group, col))
    g, n_groups = keys((group,))
    pair_group = np.zeros(n_pairs, dtype=np.int64)
    pair_group[pair] = g
    in_pool_pairs = np.bincount(pair, weights=in_pool, minlength=n_pairs) > 0
    return np.bincount(pair_group[in_pool_pairs], minlength=n_groups)[g]


def count_features(work: pl.DataFrame, keys: KeyCodes
                   ) -> tuple[pl.DataFrame, list[dict], pl.DataFrame, list[dict]]:
    """Count and share features; returns (counts, their docs, shares, their docs).

    Shares divide two counts of the same pool; a zero denominator (a user or song with no pool rows,
    only possible when not every row is in the pool) gives NaN rather than a made-up 0.
    """
    in_pool = work["in_pool"].to_numpy().astype(np.float64)
    keys.prepare([*COUNT_KEYS.values(), *((g, c) for g, c in DISTINCT.values()), *((g,) for g, _ in DISTINCT.values())])
    cnt = {name: pool_count(keys, cols, in_pool) for name, cols in COUNT_KEYS.items()}
    counts = pl.DataFrame({f"cnt_{name}": v.astype(np.float32) for name, v in cnt.items()}
                          | {name: distinct_count(keys, g, c, in_pool).astype(np.float32)
                             for name, (g, c) in DISTINCT.items()})
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = pl.DataFrame({name: np.where(cnt[den] > 0, cnt[num] / cnt[den], np.nan).astype(np.float32)
                               for name, (num, den) in SHARES.items()})
    every_row_in_pool = bool(in_pool.min(initial=1.0) == 1.0)
    count_docs = [{"name": f"cnt_{name}", "description": f"pool rows with the same {_label(cols)}",
                   "nan": False} for name, cols in COUNT_KEYS.items()]
    count_docs += [{"name": name, "description": f"distinct {c}s among the pool rows of the {g}", "nan": False}
                   for name, (g, c) in DISTINCT.items()]
    share_docs = [{"name": name, "description": f"cnt_{num} / cnt_{den}; NaN when cnt_{den} is 0",
                   "nan": not every_row_in_pool} for name, (num, den) in SHARES.items()]
    return counts, count_docs, shares, share_docs
