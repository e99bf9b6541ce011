"""Lines the fast parsers refuse -- a byte that is not UTF-8, a JSON line cut short -- as rejected rows.

Polars' CSV and JSON-lines readers stop the whole log at the first such line, yet real exports hold a
few (Last.fm 1K has Latin-1 names; an export cut off by a full disk ends in half a line) and the good
lines around them must still count. This rescan runs only after the fast scan failed, and stays
lazy and columnar (it streams like the fast one):
- text (CSV/TSV): read again with `encoding="utf8-lossy"` (a bad byte becomes U+FFFD); in a file
  that is not valid UTF-8, a row holding U+FFFD is rejected as not UTF-8 (a genuine U+FFFD in such a
  file is rejected with it: the reader cannot tell them apart);
- JSON lines: each line read as one text column (lossy too); polars' JSON path matcher, which gives
  null for text that is not JSON, tells a broken line, and reads the fields of the others.
The row's reason goes to the UNREADABLE column, which `listen_events.reject_reason` puts first.
"""
from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from musicrec.readers import listen_formats as formats
from musicrec.readers.listen_formats import UNREADABLE

log = logging.getLogger("musicrec")

NOT_UTF8 = "not valid UTF-8 (a byte of another encoding)"
NOT_JSON = "not a JSON object (a broken or truncated line)"
REPLACEMENT = "\ufffd"  # what utf8-lossy puts in place of a byte that is not UTF-8
FILE, RAW = "_file", "_raw"
CHUNK = 1 << 24  # bytes read at a time when checking a file's encoding
NO_SEPARATOR = "\x1f"  # a control byte JSON text never holds raw: one column per line


def first_invalid_utf8(path: Path) -> int | None:
    """1-based number of the first line of `path` holding a byte that is not UTF-8 (None: the file is UTF-8).

    Decoded in chunks cut at line ends (a UTF-8 sequence never spans a newline), so memory is one chunk.
    """
    line, rest = 1, b""
    with open(path, "rb") as fh:
        while True:
            block = fh.read(CHUNK)
            data = rest + block
            cut = data.rfind(b"\n") + 1 if block else len(data)
            part, rest = data[:cut], data[cut:]
            try:
                part.decode("utf-8")
            except UnicodeDecodeError as err:
                return line + part.count(b"\n", 0, err.start)
            line += part.count(b"\n")
            if not block:
                return None


def applies(lcfg: dict, files: list[Path]) -> bool:
    """Whether a tolerant rescan exists for this log: text or JSON-lines files (parquet has its own checks)."""
    return lcfg["format"] in ("listenbrainz", "lastfm1k", "table") and formats.kind_of(files[0]) != "parquet"


def bad_encoding(files: list[Path]) -> list[str]:
    """The files that are not UTF-8 (logged with their first bad line)."""
    bad = []
    for f in files:
        line = first_invalid_utf8(f)
        if line is not None:
            log.warning("01_preprocess: %s: line %d holds a byte that is not UTF-8; its rows go to rejects", f, line)
            bad.append(str(f))
    return bad


def lossy_flag(columns: list[str], bad_files: list[str]) -> pl.Expr:
    """NOT_UTF8 for a row of a file that is not UTF-8 and whose text holds U+FFFD."""
    replaced = pl.any_horizontal(pl.col(c).str.contains(REPLACEMENT, literal=True).fill_null(False) for c in columns)
    return pl.when(pl.col(FILE).is_in(bad_files) & replaced).then(pl.lit(NOT_UTF8)).alias(UNREADABLE)


def text_rows(raw: pl.LazyFrame, files: list[Path]) -> pl.LazyFrame:
    """A CSV/TSV scan (lossy, with FILE) with UNREADABLE set on its rows that are not UTF-8."""
    columns = [c for c, t in raw.collect_schema().items() if t == pl.String and c != FILE]
    return raw.with_columns(lossy_flag(columns, bad_encoding(files))).drop(FILE)


def json_lines(f: Path, bad: bool) -> pl.LazyFrame:
    """The non-blank lines of a JSON-lines file as RAW text, UNREADABLE set on those that are not JSON objects."""
    lines = pl.scan_csv(f, separator=NO_SEPARATOR, has_header=False, quote_char=None, new_columns=[RAW],
                        schema={RAW: pl.String}, encoding="utf8-lossy", truncate_ragged_lines=True)
    lines = lines.filter(pl.col(RAW).str.strip_chars().fill_null("") != "")  # the fast reader skips blank lines
    text = pl.col(RAW).str.strip_chars()
    is_object = text.str.starts_with("{") & text.str.json_path_match("$").is_not_null()
    reason = pl.when(~is_object).then(pl.lit(NOT_JSON))
    if bad:
        reason = pl.when(pl.col(RAW).str.contains(REPLACEMENT, literal=True)).then(pl.lit(NOT_UTF8)).otherwise(reason)
    return lines.with_columns(reason.alias(UNREADABLE))


def json_path(path: tuple[str, ...]) -> pl.Expr:
    """A (nested) field of each RAW JSON line, as text (null where absent, null or not JSON)."""
    return pl.col(RAW).str.json_path_match("$" + "".join(f"['{p}']" for p in path))


def listenbrainz_field(path: tuple[str, ...]) -> pl.Expr:
    e = json_path(path)
    return e.cast(pl.Int64, strict=False) if path == ("listened_at",) else e


def scan(lcfg: dict, files: list[Path]) -> pl.LazyFrame:
    """The configured log read tolerantly: the listens of `listen_formats.scan`, with UNREADABLE."""
    fmt, path = lcfg["format"], lcfg["path"]
    if fmt == "lastfm1k":
        return formats.scan_lastfm1k(files, path, text_rows(
            formats.lastfm1k_csv(files, encoding="utf8-lossy", include_file_paths=FILE), files))
    kind = formats.kind_of(files[0])
    if kind == "text":  # format table (listenbrainz has no text files)
        return formats.scan_table(files, path, lcfg, text_rows(
            formats.table_csv(files, lcfg, encoding="utf8-lossy", include_file_paths=FILE), files))
    bad = set(bad_encoding(files))
    if fmt == "listenbrainz":
        lf = pl.concat([formats.listenbrainz_export(json_lines(f, str(f) in bad), f.stem, listenbrainz_field)
                        for f in files])
        return formats.finish(lf, pl.col("listened_at"))
    named = {c for c in lcfg["columns"].values() if c is not None}
    lf = pl.concat([json_lines(f, str(f) in bad) for f in files])
    return formats.scan_table(files, path, lcfg, lf.select(*(json_path((c,)).alias(c) for c in sorted(named)),
                                                           UNREADABLE))
