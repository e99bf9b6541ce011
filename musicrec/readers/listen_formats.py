"""Lazy scans of the published listening-log formats, all mapped onto one listen schema.

Every format becomes a polars LazyFrame with the columns of `LISTEN_SCHEMA` (plus `line`, the
0-based row of the listen across the matched files, for error messages and rejects): nothing is
read until a stage collects it, so a log far larger than memory can be aggregated with the
streaming engine.

A log the fast parsers refuse (a byte that is not UTF-8, a broken JSON line) is read again by
`unreadable_lines`, which builds on the same column mappings and adds UNREADABLE, the reason.

Track identity per format (what "the same track" means for a replay):
- listenbrainz: `recording_mbid` where MusicBrainz matched the listen, else `recording_msid`
  (ListenBrainz's own id of the submitted text, always present);
- lastfm1k: artist name + track name (the MBID column is empty for ~28% of plays; names are
  what Last.fm scrobbles), which gives the README's 697 of 1,193 pairs on the sample head;
- table: the column named by `data.listens.columns.track`.
"""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Callable

import polars as pl

from musicrec.errors import InputError
from musicrec.listen_schema import TRACK_SEP

LISTEN_SCHEMA = {"user": pl.String, "track": pl.String, "time": pl.Int64, "artist": pl.String,
                 "album": pl.String, "track_name": pl.String}
UNREADABLE = "unreadable"  # tolerant scans only: why the line cannot be read (null: it can)
LASTFM1K_COLUMNS = ("user", "time", "artist_mbid", "artist", "track_mbid", "track_name")
PARQUET = (".parquet",)
JSONL = (".jsonl", ".json", ".ndjson")
TEXT = (".csv", ".tsv", ".txt", ".dat")
JSONL_SCHEMA = {
    "listened_at": pl.Int64, "user_name": pl.String, "recording_msid": pl.String,
    "track_metadata": pl.Struct({
        "track_name": pl.String, "artist_name": pl.String, "release_name": pl.String,
        "recording_msid": pl.String, "mbid_mapping": pl.Struct({"recording_mbid": pl.String}),
    }),
}


def resolve(path: str, suffixes: tuple[str, ...], key: str = "data.listens.path") -> list[Path]:
    """The files behind `path`: the file itself, a folder's files with one of `suffixes`, or a glob."""
    p = Path(path)
    if p.is_file():
        files = [p]
    elif p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in suffixes)
    else:
        files = sorted(Path(f) for f in glob.glob(path) if Path(f).is_file())
    if not files:
        raise InputError(path, key, f"no listen files found (a file, a folder with {'/'.join(suffixes)} "
                                    "files, or a glob)")
    return files


def kind_of(f: Path) -> str:
    return "parquet" if f.suffix.lower() in PARQUET else "jsonl" if f.suffix.lower() in JSONL else "text"


def _single_kind(files: list[Path], path: str) -> str:
    kinds = {kind_of(f) for f in files}
    if len(kinds) != 1:
        raise InputError(path, "data.listens.path", "mixes parquet, JSON-lines and text files; give one kind "
                                                "(a glob such as DIR/*.parquet picks them)")
    return kinds.pop()


def blank_to_null(col: str) -> pl.Expr:
    return blank_to_null_expr(pl.col(col)).alias(col)


def blank_to_null_expr(e: pl.Expr) -> pl.Expr:
    """Text with surrounding blanks removed; empty text is missing."""
    s = e.cast(pl.String).str.strip_chars()
    return pl.when(s == "").then(None).otherwise(s)


def time_seconds(lf: pl.LazyFrame, col: str, file: str) -> pl.Expr:
    """Epoch seconds from epoch numbers, datetimes or ISO-8601 text (unparseable -> null)."""
    dtype = lf.collect_schema()[col]
    c = pl.col(col)
    if dtype.is_numeric():
        return c.cast(pl.Float64).floor().cast(pl.Int64)
    if isinstance(dtype, pl.Datetime):
        return c.dt.epoch("s")
    if isinstance(dtype, pl.Date):
        return c.cast(pl.Datetime("ms")).dt.epoch("s")
    if dtype != pl.String:
        raise InputError(file, col, f"time must be epoch seconds or ISO-8601 text, found {dtype}")
    sample = lf.select(c.str.strip_chars()).drop_nulls().head(50).collect()[col]
    if sample.len() and sample.cast(pl.Float64, strict=False).null_count() == 0:
        return c.str.strip_chars().cast(pl.Float64, strict=False).floor().cast(pl.Int64)
    return c.str.strip_chars().str.to_datetime(strict=False, time_zone="UTC").dt.epoch("s")


def finish(lf: pl.LazyFrame, time: pl.Expr) -> pl.LazyFrame:
    lf = lf.with_columns(time.alias("_time"))
    lf = lf.with_columns(*(blank_to_null(c) for c in ("user", "track", "artist", "album", "track_name")))
    reason = [UNREADABLE] if UNREADABLE in lf.collect_schema().names() else []
    return (lf.with_columns(pl.col("_time").alias("time")).select(*LISTEN_SCHEMA, *reason)
            .with_columns(pl.col(c).cast(t) for c, t in LISTEN_SCHEMA.items()).with_row_index("line"))


def struct_field(path: tuple[str, ...]) -> pl.Expr:
    """A (nested) field of a JSON object as polars' JSON reader gives it: a column, then struct fields."""
    e = pl.col(path[0])
    for name in path[1:]:
        e = e.struct.field(name)
    return e


def listenbrainz_export(lf: pl.LazyFrame, stem: str, field: Callable[[tuple[str, ...]], pl.Expr]) -> pl.LazyFrame:
    """One export file's listens; `field` reads a JSON field by its path (struct fields, or JSON paths on text).

    An export is one user's listens: the file name stands in where user_name is absent.
    """
    meta = ("track_metadata",)
    keep = [UNREADABLE] if UNREADABLE in lf.collect_schema().names() else []
    return lf.select(
        pl.coalesce(field(("user_name",)), pl.lit(stem)).alias("user"),
        pl.coalesce(blank_to_null_expr(field(meta + ("mbid_mapping", "recording_mbid"))),
                    field(meta + ("recording_msid",)), field(("recording_msid",))).alias("track"),
        field(meta + ("artist_name",)).alias("artist"),
        field(meta + ("release_name",)).alias("album"),
        field(meta + ("track_name",)).alias("track_name"),
        field(("listened_at",)).alias("listened_at"), *keep)


def scan_listenbrainz(files: list[Path], path: str) -> pl.LazyFrame:
    """ListenBrainz full-dump parquet (one row per listen) or a user's JSON-lines export."""
    kind = _single_kind(files, path)
    if kind == "parquet":
        lf = pl.scan_parquet(files)
        names = lf.collect_schema().names()
        need = ("listened_at", "recording_msid")
        missing = [c for c in need if c not in names]
        user = "user_name" if "user_name" in names else "user_id"
        if missing or user not in names:
            raise InputError(files[0], (missing or [user])[0], "a ListenBrainz dump column is missing")
        mbid = pl.col("recording_mbid") if "recording_mbid" in names else pl.lit(None, pl.String)
        lf = lf.with_columns(
            pl.col(user).cast(pl.String).alias("user"),
            pl.coalesce(blank_to_null_expr(mbid), pl.col("recording_msid")).alias("track"),
            _opt(names, "artist_name").alias("artist"), _opt(names, "release_name").alias("album"),
            _opt(names, "recording_name").alias("track_name"))
        return finish(lf, time_seconds(lf, "listened_at", str(files[0])))
    if kind == "jsonl":
        lf = pl.concat([listenbrainz_export(pl.scan_ndjson(f, schema=JSONL_SCHEMA), f.stem, struct_field)
                        for f in files])
        return finish(lf, pl.col("listened_at"))
    raise InputError(path, "data.listens.format", "listenbrainz reads .parquet dumps or .jsonl exports")


def _opt(names: list[str], col: str) -> pl.Expr:
    return pl.col(col).cast(pl.String) if col in names else pl.lit(None, pl.String)


def lastfm1k_csv(files: list[Path], **options) -> pl.LazyFrame:
    """Last.fm 1K-users TSV: user, ISO time, artist MBID, artist, track MBID, track; no header, no quoting."""
    return pl.scan_csv(files, separator="\t", has_header=False, quote_char=None, new_columns=list(LASTFM1K_COLUMNS),
                       schema={c: pl.String for c in LASTFM1K_COLUMNS}, truncate_ragged_lines=True, **options)


def scan_lastfm1k(files: list[Path], path: str, raw: pl.LazyFrame | None = None) -> pl.LazyFrame:
    """Listens of a Last.fm 1K TSV (`raw`: the file's columns as `lastfm1k_csv` reads them)."""
    lf = lastfm1k_csv(files) if raw is None else raw
    lf = lf.with_columns(blank_to_null("artist"), blank_to_null("track_name"))
    lf = lf.with_columns(
        pl.when(pl.col("track_name").is_not_null())
        .then(pl.concat_str(pl.col("artist").fill_null(""), pl.lit(TRACK_SEP), pl.col("track_name")))
        .alias("track"),
        pl.lit(None, pl.String).alias("album"))
    return finish(lf, pl.col("time").str.strip_chars().str.to_datetime("%Y-%m-%dT%H:%M:%SZ", strict=False,
                                                                         time_zone="UTC").dt.epoch("s"))


def table_csv(files: list[Path], lcfg: dict, **options) -> pl.LazyFrame:
    return pl.scan_csv(files, separator=lcfg["separator"], has_header=lcfg["header"], infer_schema=False,
                       quote_char='"', **options)


def scan_table(files: list[Path], path: str, lcfg: dict, raw: pl.LazyFrame | None = None) -> pl.LazyFrame:
    """Any listen table: CSV/TSV (separator, header from config), parquet or JSON lines; columns named in config.

    `raw`: the file's columns read otherwise (a tolerant rescan) in place of the format's own scan.
    """
    kind = _single_kind(files, path)
    if raw is not None:
        lf = raw
    elif kind == "parquet":
        lf = pl.scan_parquet(files)
    elif kind == "jsonl":
        lf = pl.scan_ndjson(files, infer_schema_length=1000)
    else:
        lf = table_csv(files, lcfg)
    names = lf.collect_schema().names()
    cols = lcfg["columns"]
    for role in ("user", "track", "time", "artist", "album"):
        name = cols[role]
        if name is not None and name not in names:
            raise InputError(files[0], name, f"data.listens.columns.{role} names a column the file lacks "
                                             f"(columns: {', '.join(names[:12])})")
    lf = lf.with_columns(
        pl.col(cols["user"]).cast(pl.String).alias("user"),
        pl.col(cols["track"]).cast(pl.String).alias("track"),
        (pl.col(cols["artist"]).cast(pl.String) if cols["artist"] else pl.lit(None, pl.String)).alias("artist"),
        (pl.col(cols["album"]).cast(pl.String) if cols["album"] else pl.lit(None, pl.String)).alias("album"),
        pl.col(cols["track"]).cast(pl.String).alias("track_name"),
        pl.col(cols["time"]).alias("_raw_time"))
    return finish(lf, time_seconds(lf, "_raw_time", str(files[0])))


def check_parquet(files: list[Path]) -> None:
    """InputError naming the first parquet file whose footer cannot be read (a download cut short)."""
    for f in files:
        try:
            pl.read_parquet_schema(f)
        except (pl.exceptions.ComputeError, OSError) as err:
            raise InputError(f, None, f"not a readable parquet file ({one_line(err)})") from None


def one_line(err: Exception, limit: int = 200) -> str:
    """A library's error message on one line (polars' may span several)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit] + "..."


SUFFIXES = {"listenbrainz": PARQUET + JSONL, "lastfm1k": TEXT, "table": PARQUET + JSONL + TEXT}


def files_of(lcfg: dict) -> list[Path]:
    """The files of the configured log."""
    fmt, path = lcfg["format"], lcfg["path"]
    if fmt not in SUFFIXES:
        raise InputError(path, "data.listens.format", f"{fmt} is not a timed listen log")
    return resolve(path, SUFFIXES[fmt])


def scan(lcfg: dict, files: list[Path]) -> pl.LazyFrame:
    """The configured log (its `files_of`) as a lazy frame of listens (see LISTEN_SCHEMA)."""
    fmt, path = lcfg["format"], lcfg["path"]
    if fmt == "listenbrainz":
        return scan_listenbrainz(files, path)
    if fmt == "lastfm1k":
        return scan_lastfm1k(files, path)
    return scan_table(files, path, lcfg)
