"""Rows whose every field is empty (`,,,,,` or a blank line): skipped and counted, never an error.

Public copies of the KKBOX files end in tens of thousands of such rows. They carry nothing, so
they are not rows with a missing id: train.csv's go to rejects with the reason "empty row" (so rows
in = out + rejected still holds), the other files' are dropped, and quality.json counts them for
every file. A row with only some fields empty keeps the rules for missing values.
"""
from __future__ import annotations

import polars as pl

REASON = "empty row"
FLAG = "_empty_row"


def is_empty_row(columns: list[str]) -> pl.Expr:
    """True where every one of `columns` is null or only blanks, as read (before null tokens are unified)."""
    return pl.all_horizontal(pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "") for c in columns)


def flag(df: pl.DataFrame) -> pl.DataFrame:
    """`df` with a boolean FLAG column marking its empty rows (they keep their place in time order)."""
    return df.with_columns(is_empty_row(df.columns).alias(FLAG))


def drop(df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """`df` without its empty rows, and how many there were."""
    kept = df.filter(~is_empty_row(df.columns))
    return kept, df.height - kept.height


def separate(files: dict[str, pl.DataFrame | None], flagged: tuple[str, ...]) -> tuple[dict, dict[str, int]]:
    """Drop empty rows from every file except those in `flagged` (which get FLAG); count them per file."""
    out, counts = {}, {}
    for name, df in files.items():
        if df is None:
            out[name] = None
        elif name in flagged:
            out[name] = flag(df)
            counts[name] = int(out[name][FLAG].sum())
        else:
            out[name], counts[name] = drop(df)
    return out, counts
