"""Where generated data lives and how its ground truth is read: shared by stages 01, 05 and 06."""
from __future__ import annotations

from pathlib import Path

import polars as pl


def synthetic_dir(cfg: dict) -> Path:
    """Folder of the generated CSVs and truth.parquet for the configured preset."""
    return Path(cfg["paths"]["data"]) / "synthetic" / cfg["data"]["synthetic"]["preset"]


def read_truth(cfg: dict, st) -> pl.DataFrame | None:
    """truth.parquet of the synthetic generator (recorded as an input of `st`), or None on real data."""
    if cfg["data"]["source"] == "listens":  # stage 01 keyed a generated log's truth by time_order
        from musicrec.manifest import read_manifest

        if "truth.parquet" not in (read_manifest(cfg, "01_preprocess") or {}).get("outputs", {}):
            return None
        return pl.read_parquet(st.input("01_preprocess", "truth.parquet"))
    if cfg["data"]["source"] != "synthetic":
        return None
    path = synthetic_dir(cfg) / "truth.parquet"
    if not path.is_file():
        return None
    st.external_input(path)
    return pl.read_parquet(path)


def truth_for(truth: pl.DataFrame | None, file: str, rows: pl.Series) -> pl.DataFrame | None:
    """p_true and hidden label for rows of train.csv (by time_order) or test.csv (by id), in `rows` order."""
    if truth is None:
        return None
    t = truth.filter(pl.col("file") == file).select("row", "p_true", "label")
    out = pl.DataFrame({"row": rows.cast(pl.Int64)}).join(t, on="row", how="left", maintain_order="left")
    return None if out["p_true"].null_count() else out
