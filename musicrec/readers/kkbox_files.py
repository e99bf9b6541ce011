"""Read the five KKBOX CSVs with explicit schemas and check the rules that make them usable.

Every column is read as text first: the real files mix empty cells, the literal string "null" and
numbers written as "3.0", so typing is done here, after the null conventions are unified, and a
value that breaks a rule is reported with its file, column, rule and line.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from musicrec.errors import InputError

REQUIRED_COLUMNS = {
    "train.csv": ("msno", "song_id", "source_system_tab", "source_screen_name", "source_type", "target"),
    "test.csv": ("id", "msno", "song_id", "source_system_tab", "source_screen_name", "source_type"),
    "members.csv": ("msno", "city", "bd", "gender", "registered_via", "registration_init_time",
                    "expiration_date"),
    "songs.csv": ("song_id", "song_length", "genre_ids", "artist_name", "composer", "lyricist", "language"),
    "song_extra_info.csv": ("song_id", "name", "isrc"),
}
OPTIONAL_FILES = ("test.csv",)
NULL_TOKENS = ("", "null", "NULL", "None", "nan", "NaN")


def _header(path: Path) -> list[str]:
    if path.stat().st_size == 0:
        raise InputError(path, None, "file is empty (0 bytes)")
    try:
        return pl.read_csv(path, n_rows=0, infer_schema=False).columns
    except pl.exceptions.NoDataError:
        raise InputError(path, None, "file is empty (no header)") from None
    except pl.exceptions.PolarsError as exc:
        raise InputError(path, None, f"cannot be read as CSV: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def read_csv(path: Path) -> pl.DataFrame:
    """Read one KKBOX file as text columns, checking it exists, has the columns and has rows."""
    name = path.name
    if not path.is_file():
        raise InputError(path, None, "file not found (put the KKBOX CSVs in paths.raw)")
    header = _header(path)
    required = REQUIRED_COLUMNS[name]
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(path, missing[0], f"required column is missing (header has: {', '.join(header)})")
    try:
        df = pl.read_csv(
            path,
            schema={c: pl.String for c in header},
            columns=list(required),
            infer_schema=False,
            quote_char='"',
        )
    except pl.exceptions.PolarsError as exc:  # broken quoting, bytes that are not UTF-8, ...
        raise InputError(path, None, f"cannot be read as CSV: {_first_line(exc)}") from None
    if df.height == 0:
        raise InputError(path, None, "file has a header but no data rows")
    return df.select(required)


def read_all(raw_dir: Path) -> dict[str, pl.DataFrame | None]:
    """All five files keyed by file name; test.csv is None when absent (it is optional)."""
    out: dict[str, pl.DataFrame | None] = {}
    for name in REQUIRED_COLUMNS:
        path = raw_dir / name
        if name in OPTIONAL_FILES and not path.exists():
            out[name] = None
            continue
        out[name] = read_csv(path)
    return out


def null_to_none(col: str) -> pl.Expr:
    """Unify the KKBOX null conventions (empty cell, literal "null", ...) into a real null."""
    c = pl.col(col)
    return pl.when(c.str.strip_chars().is_in(NULL_TOKENS)).then(None).otherwise(c).alias(col)


def _first_bad(df: pl.DataFrame, bad: pl.Series, col: str) -> str:
    idx = int(bad.arg_true()[0])
    return f"found {df[col][idx]!r} at data row {idx + 1}"


def parse_int(df: pl.DataFrame, file: str, col: str, dtype=pl.Int64) -> pl.Series:
    """Integer column; "3.0" is accepted as 3, anything else non-empty is an error."""
    text = df[col].str.strip_chars()
    as_float = text.cast(pl.Float64, strict=False)
    bad = text.is_not_null() & (as_float.is_null() | as_float.is_nan() | (as_float != as_float.round()))
    if bad.any():
        raise InputError(file, col, f"values must be integers; {_first_bad(df, bad, col)}")
    return as_float.cast(dtype).alias(col)


def parse_date(df: pl.DataFrame, file: str, col: str) -> pl.Series:
    """YYYYMMDD integer date, as the KKBOX files write it."""
    text = df[col].str.strip_chars()
    date = text.str.strptime(pl.Date, "%Y%m%d", strict=False)
    bad = text.is_not_null() & (date.is_null() | (text.str.len_chars() != 8))
    if bad.any():
        raise InputError(file, col, f"dates must be YYYYMMDD; {_first_bad(df, bad, col)}")
    return date.alias(col)


def parse_target(df: pl.DataFrame, file: str) -> pl.Series:
    """0/1 target; an empty cell is allowed (the row is rejected later), any other value is an error."""
    text = df["target"].str.strip_chars()
    bad = text.is_not_null() & ~text.is_in(["0", "1"])
    if bad.any():
        raise InputError(file, "target", f"target must be 0 or 1; {_first_bad(df, bad, 'target')}")
    return text.cast(pl.Int8).alias("target")
