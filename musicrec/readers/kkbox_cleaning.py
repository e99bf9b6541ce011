"""Clean the member and song tables: typing, outliers, derived columns and fill values.

Fill values (medians, modes) are computed on the entity tables, not on interaction rows, and never
from labels, so they carry no information about any row's target.
"""
from __future__ import annotations

import logging

import numpy as np
import polars as pl

from musicrec.readers.kkbox_files import null_to_none, parse_date, parse_int

log = logging.getLogger("musicrec")

UNKNOWN = "unknown"


def dedupe_entities(df: pl.DataFrame, key: str, file: str) -> tuple[pl.DataFrame, dict]:
    """Drop rows without an id and repeated ids (first kept): a join must not multiply rows."""
    n = df.height
    df = df.filter(pl.col(key).is_not_null())
    no_id = n - df.height
    df = df.unique(subset=key, keep="first", maintain_order=True)
    dup = n - no_id - df.height
    if no_id or dup:
        log.warning("%s: dropped %d rows without %s and %d repeated %s", file, no_id, key, dup, key)
    return df, {"rows": n, "without_id": no_id, "repeated_id": dup}


def outlier_bounds(values: pl.Series, method: str, iqr_k: float, mad_k: float) -> tuple[float, float] | None:
    """Clipping bounds: `cap` = Tukey fences at k·IQR, `robust` = median ± k·1.4826·MAD, `none`."""
    v = values.drop_nulls().cast(pl.Float64)
    if method == "none" or v.len() == 0:
        return None
    if method == "cap":
        q1, q3 = v.quantile(0.25, "linear"), v.quantile(0.75, "linear")
        return q1 - iqr_k * (q3 - q1), q3 + iqr_k * (q3 - q1)
    med = v.median()
    mad = (v - med).abs().median() * 1.4826
    return med - mad_k * mad, med + mad_k * mad


def fill_value(values: pl.Series, strategy: str, constant: float):
    """The value that replaces a missing one: median, mode, constant, or the 'unknown' category."""
    v = values.drop_nulls()
    if strategy == "unknown":
        return UNKNOWN
    if strategy == "constant":
        return constant
    if v.len() == 0:
        return UNKNOWN if values.dtype == pl.String else constant
    if strategy == "median":
        return float(v.median())
    # mode: ties broken by the smallest value so the choice is deterministic
    counts = v.value_counts().sort(["count", v.name], descending=[True, False])
    return counts[v.name][0]


def _clip(col: str, bounds: tuple[float, float] | None) -> pl.Expr:
    if bounds is None:
        return pl.col(col)
    return pl.col(col).clip(bounds[0], bounds[1])


def clean_members(raw: pl.DataFrame, pcfg: dict) -> tuple[pl.DataFrame, dict]:
    """Type members.csv, set out-of-range bd to missing, derive membership columns."""
    file = "members.csv"
    df = raw.with_columns(null_to_none(c) for c in raw.columns)
    df, counts = dedupe_entities(df, "msno", file)
    bd = parse_int(df, file, "bd")
    lo, hi = pcfg["bd_range"]
    in_range = (bd >= lo) & (bd <= hi)
    out_of_range = int((bd.is_not_null() & ~in_range).sum())
    bd = pl.Series("bd", np.where(in_range.fill_null(False).to_numpy(), bd.to_numpy(), np.nan)).fill_nan(None)
    bounds = outlier_bounds(bd, pcfg["outliers"]["bd"], pcfg["iqr_k"], pcfg["mad_k"])
    reg = parse_date(df, file, "registration_init_time")
    exp = parse_date(df, file, "expiration_date")
    out = pl.DataFrame({
        "msno": df["msno"],
        "city": parse_int(df, file, "city").cast(pl.String),
        "registered_via": parse_int(df, file, "registered_via").cast(pl.String),
        "gender": df["gender"].str.to_lowercase(),
        "bd": bd,
        "registration_year": reg.dt.year().cast(pl.Float64),
        "membership_days": (exp - reg).dt.total_days().cast(pl.Float64),
    }).with_columns(
        _clip("bd", bounds),
        # an expiry before registration (e.g. the real 19700101) is a placeholder, not a duration
        pl.when(pl.col("membership_days") >= 0).then(pl.col("membership_days")).alias("membership_days"),
    )
    clipped = 0 if bounds is None else int(((bd < bounds[0]) | (bd > bounds[1])).sum())
    counts["bd"] = {"out_of_range": out_of_range, "range": [lo, hi], "method": pcfg["outliers"]["bd"],
                    "bounds": bounds, "clipped": clipped}
    return out, counts


def normalize_name(col: str) -> pl.Expr:
    """Artist/composer name for grouping: lower case, no '(alias)' suffix, single spaces."""
    return (pl.col(col).str.to_lowercase()
            .str.replace_all(r"\s*[\(（][^\)）]*[\)）]", "")
            .str.replace_all(r"\s+", " ")
            .str.strip_chars())


def _first_name(col: str) -> pl.Expr:
    return normalize_name(col).str.split("|").list.first().str.strip_chars()


def _name_count(col: str) -> pl.Expr:
    return pl.col(col).str.split("|").list.len().fill_null(0).cast(pl.Int8)


def clean_songs(raw: pl.DataFrame, extra_raw: pl.DataFrame, pcfg: dict) -> tuple[pl.DataFrame, dict]:
    """Type songs.csv and song_extra_info.csv, cap song_length, derive genre/isrc/name columns."""
    songs = raw.with_columns(null_to_none(c) for c in raw.columns)
    songs, song_counts = dedupe_entities(songs, "song_id", "songs.csv")
    length = parse_int(songs, "songs.csv", "song_length").cast(pl.Float64)
    length = pl.Series("song_length", np.where((length > 0).fill_null(False).to_numpy(), length.to_numpy(),
                                                np.nan)).fill_nan(None)
    bounds = outlier_bounds(length, pcfg["outliers"]["song_length"], pcfg["iqr_k"], pcfg["mad_k"])
    songs = songs.with_columns(
        length,
        parse_int(songs, "songs.csv", "language").cast(pl.String),
        pl.col("genre_ids").str.split("|").list.first().str.strip_chars().alias("genre"),
        pl.col("genre_ids").str.split("|").list.len().fill_null(0).cast(pl.Int8).alias("genre_count"),
        normalize_name("artist_name").alias("artist"),
        _first_name("composer").alias("composer_first"),
        _first_name("lyricist").alias("lyricist_first"),
        _name_count("composer").alias("composer_count"),
        _name_count("lyricist").alias("lyricist_count"),
    ).select("song_id", _clip("song_length", bounds), "genre", "genre_count", "artist",
             pl.col("composer_first").alias("composer"), pl.col("lyricist_first").alias("lyricist"),
             "composer_count", "lyricist_count", "language", pl.lit(True).alias("in_songs"))
    clipped = 0 if bounds is None else int(((length < bounds[0]) | (length > bounds[1])).sum())
    song_counts["song_length"] = {"method": pcfg["outliers"]["song_length"], "bounds": bounds,
                                  "clipped": clipped}

    extra = extra_raw.with_columns(null_to_none(c) for c in extra_raw.columns)
    extra, extra_counts = dedupe_entities(extra, "song_id", "song_extra_info.csv")
    isrc = pl.col("isrc").str.strip_chars().str.to_uppercase()
    valid = isrc.str.contains(r"^[A-Z]{2}[A-Z0-9]{3}[0-9]{2}[0-9]{5}$")
    yy = isrc.str.slice(5, 2).cast(pl.Int32, strict=False)
    extra = extra.select(
        "song_id",
        pl.when(valid).then(isrc.str.slice(0, 2)).alias("isrc_country"),
        pl.when(valid).then(pl.when(yy < 18).then(2000 + yy).otherwise(1900 + yy)).cast(pl.Float64)
        .alias("isrc_year"),
        pl.lit(True).alias("in_extra"),
    )
    return songs.join(extra, on="song_id", how="full", coalesce=True), {"songs": song_counts,
                                                                          "song_extra_info": extra_counts}
