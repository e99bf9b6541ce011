"""The generator's truth for a log that musicrec.synthetic.listens wrote, keyed like the KKBOX truth.

Stages 05 and 06 score themselves against truth.parquet; for a generated log it is the generator's
p_true and label of every first listen that became an event, in the events' time order.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from musicrec.listen_schema import GENERATOR
from musicrec.readers.listen_events import STREAMING, code_expr


def generator_truth(lcfg: dict, files: list[Path]) -> Path | None:
    """truth.parquet of musicrec.synthetic.listens when the log is one it wrote (source.json beside it)."""
    path = Path(lcfg["path"])
    folder = (path if path.is_dir() else files[0].parent).parent
    marker = folder / "source.json"
    if not marker.is_file() or json.loads(marker.read_text()).get("generator") != GENERATOR:
        return None
    truth = folder / "truth.parquet"
    return truth if truth.is_file() else None


def events_truth(events: dict, users: pl.DataFrame, songs: pl.DataFrame, truth_path: Path) -> pl.LazyFrame:
    """The generator's p_true and label per event, keyed like the KKBOX truth (file 'train', row = time_order).

    The truth is read in batches and matched to the events by (user, song) code pairs through one sort
    of the events' pair keys, so memory stays a few bytes per event.
    """
    n, n_songs = len(events["user"]), songs.height
    pk = events["user"].astype(np.int64) * n_songs + events["song"]
    order = np.argsort(pk, kind="stable")
    pk = pk[order]
    p_true = np.zeros(n, dtype=np.float64)
    label_ = np.zeros(n, dtype=np.int8)
    has = np.zeros(n, dtype=bool)
    t = (pl.scan_parquet(truth_path)
         .select(code_expr("user", users["msno"], strict=False), code_expr("track", songs["song_id"], strict=False),
                 "p_true", pl.col("label").cast(pl.Int8))
         .drop_nulls(["user", "track"]))  # pairs without an event (unlabellable, or sampled out)
    for batch in t.collect_batches(engine=STREAMING):
        key = batch["user"].to_numpy().astype(np.int64) * n_songs + batch["track"].to_numpy()
        pos = np.minimum(np.searchsorted(pk, key), max(n - 1, 0))
        hit = pk[pos] == key
        rows = order[pos[hit]]
        p_true[rows] = batch["p_true"].to_numpy()[hit]
        label_[rows] = batch["label"].to_numpy()[hit]
        has[rows] = True
    del pk, order
    present = pl.col("has")
    return pl.LazyFrame({"p_true": p_true, "label": label_, "has": has, "target": events["target"]}).select(
        pl.lit("train").alias("file"), pl.int_range(pl.len(), dtype=pl.Int64).alias("row"),
        pl.when(present).then(pl.col("p_true")).alias("p_true"),
        pl.when(present).then(pl.col("label")).alias("label"), pl.lit(False).alias("flipped"), "target")


def write_truth(events: dict, out: dict, truth_path: Path, st) -> dict:
    """Write 01's truth.parquet; returns quality.json's `synthetic_truth` (how often label == target)."""
    st.external_input(truth_path)
    t = events_truth(events, out["users"], out["songs"], truth_path)
    t.drop("target").sink_parquet(st.output("truth.parquet"), compression="zstd", statistics=True, engine=STREAMING)
    st.rows["truth.parquet"] = len(events["user"])
    agree = t.filter(pl.col("label").is_not_null()).select(
        pl.len().alias("n"), (pl.col("label") == pl.col("target")).mean().alias("same")).collect()
    k = int(agree["n"][0])
    return {"file": str(truth_path), "events_with_truth": k,
            "label_equals_target": round(float(agree["same"][0]), 6) if k else None}
