"""The most harmful and most helpful training rows of each model, in the ids and words of the input files.

Stage 06 writes influence per row with compact codes; a reader wants the original `msno` and
`song_id` (01's users.parquet / songs.parquet) and what the row was (its source tabs, genre,
language, label), decoded through 01's categories.parquet.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

CONTENT = ("source_system_tab", "source_screen_name", "source_type", "genre", "language", "artist")


def decode(df: pl.DataFrame, categories: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    """Replace category codes by the values they stand for (as in the input files)."""
    for col in columns:
        if col not in df.columns:
            continue
        m = categories.filter(pl.col("column") == col).select(pl.col("code").cast(pl.Int64).alias("_c"),
                                                              pl.col("value").alias("_v"))
        df = (df.with_columns(pl.col(col).cast(pl.Int64).alias("_c")).join(m, on="_c", how="left")
              .with_columns(pl.col("_v").alias(col)).drop("_c", "_v"))
    return df


def extreme_rows(data: Path, model: str, k: int = 5) -> dict[str, pl.DataFrame] | None:
    """{'harmful': ..., 'helpful': ...}: k rows each by `<model>_logloss` (most negative = most harmful)."""
    loo_path = data / "06_influence" / "loo.parquet"
    col = f"{model}_logloss"
    loo = pl.scan_parquet(loo_path)
    names = loo.collect_schema().names()
    if col not in names:
        return None
    extra = [c for c in (f"{model}_self", f"{model}_own_loss") if c in names]
    keep = ["time_order", "user", "song", "target", col, *extra]
    finite = loo.select(keep).filter(pl.col(col).is_finite())
    harmful = finite.sort(col).head(k).collect()
    helpful = finite.sort(col, descending=True).head(k).collect()
    pre = data / "01_preprocess"
    users = pl.read_parquet(pre / "users.parquet")
    songs = pl.read_parquet(pre / "songs.parquet")
    categories = pl.read_parquet(pre / "categories.parquet")
    train_path = data / "02_split" / "train.parquet"
    content = [c for c in CONTENT if c in pl.read_parquet_schema(train_path)]
    out = {}
    for kind, rows in (("harmful", harmful), ("helpful", helpful)):
        rows = rows.with_columns(pl.int_range(1, pl.len() + 1).alias("rank"))
        info = pl.scan_parquet(train_path).select("time_order", *content).filter(
            pl.col("time_order").is_in(rows["time_order"].implode())).collect()
        rows = (rows.join(users, on="user", how="left").join(songs, on="song", how="left")
                .join(info, on="time_order", how="left"))
        rows = decode(rows, categories, tuple(content)).sort("rank")
        out[kind] = rows.select("rank", col, *extra, "target", "time_order", "msno", "song_id", *content)
    return out
