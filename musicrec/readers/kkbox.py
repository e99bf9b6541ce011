"""The KKBOX source: read the five CSVs, reject unusable rows, clean, join, encode ids.

Every labelled row either reaches `interactions.parquet` or `rejects.parquet` with a reason, so
rows in = rows out + rows rejected holds by construction and is written to `quality.json`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from musicrec.errors import InputError
from musicrec.outputs.quality import Quality
from musicrec.readers import empty_rows, kkbox_files
from musicrec.readers.kkbox_cleaning import UNKNOWN, clean_members, clean_songs, fill_value
from musicrec.readers.schema import (
    CATEGORICAL,
    MEMBER_CATS,
    MEMBER_NUMS,
    OUTPUT_ORDER,
    SONG_CATS,
    SONG_NUMS,
    SOURCE_COLS,
    WIDE_CODES,
)

log = logging.getLogger("musicrec")

STAGE = "01_preprocess"
# config.preprocess.impute key for each column that the config can steer
IMPUTE_KEY = {**{c: "source" for c in SOURCE_COLS}, "city": "city", "registered_via": "registered_via",
              "gender": "gender", "language": "language", "genre": "genre", "bd": "bd",
              "registration_year": "registration_year", "membership_days": "membership_days",
              "song_length": "song_length", "isrc_year": "isrc_year"}


# ---------------------------------------------------------------------------------------------
# rows
def split_rejects(train: pl.DataFrame, drop_duplicates: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Separate the usable labelled rows from those that cannot be used, with the reason."""
    reason = (pl.when(pl.col(empty_rows.FLAG) if empty_rows.FLAG in train.columns else pl.lit(False))
              .then(pl.lit(empty_rows.REASON))
              .when(pl.col("msno").is_null()).then(pl.lit("missing msno"))
              .when(pl.col("song_id").is_null()).then(pl.lit("missing song_id"))
              .when(pl.col("target").is_null()).then(pl.lit("missing target")))
    if drop_duplicates:
        content = pl.struct("msno", "song_id", *SOURCE_COLS, "target")
        reason = reason.when(~content.is_first_distinct()).then(pl.lit("exact duplicate of an earlier row"))
    train = train.with_columns(reason.otherwise(None).alias("reason"))
    rejects = train.filter(pl.col("reason").is_not_null()).drop(empty_rows.FLAG, strict=False)
    kept = train.filter(pl.col("reason").is_null()).drop("reason", empty_rows.FLAG, strict=False)
    return kept, rejects


def read_labelled(frame: pl.DataFrame) -> pl.DataFrame:
    df = frame.with_columns(
        pl.int_range(pl.len(), dtype=pl.Int32).alias("time_order"),
        *(kkbox_files.null_to_none(c) for c in ("msno", "song_id", *SOURCE_COLS, "target")),
    )
    return df.with_columns(kkbox_files.parse_target(df, "train.csv"))


def read_unlabelled(frame: pl.DataFrame, time_order_start: int) -> pl.DataFrame:
    """test.csv rows continue the time axis after train.csv; every row must be kept for Kaggle."""
    df = frame.with_columns(*(kkbox_files.null_to_none(c) for c in ("msno", "song_id", *SOURCE_COLS)))
    for col in ("msno", "song_id"):
        if df[col].null_count():
            first = int(df[col].is_null().arg_true()[0])
            raise InputError("test.csv", col, f"ids must not be empty (data row {first + 1}); "
                                              "every test row needs a prediction")
    return df.with_columns(
        kkbox_files.parse_int(df, "test.csv", "id"),
        (pl.int_range(pl.len(), dtype=pl.Int64) + time_order_start).cast(pl.Int32).alias("time_order"),
    )


def join_metadata(rows: pl.DataFrame, members: pl.DataFrame, songs: pl.DataFrame) -> pl.DataFrame:
    """Attach member and song columns; rows without metadata are flagged, never dropped."""
    out = (rows.join(members.with_columns(pl.lit(True).alias("in_members")), on="msno", how="left")
           .join(songs, on="song_id", how="left"))
    return out.with_columns(
        pl.col("genre_count", "composer_count", "lyricist_count").fill_null(0),  # no metadata: none listed
        (~pl.col("in_members").fill_null(False)).cast(pl.Int8).alias("member_missing"),
        (~pl.col("in_songs").fill_null(False)).cast(pl.Int8).alias("song_meta_missing"),
        (~pl.col("in_extra").fill_null(False)).cast(pl.Int8).alias("song_extra_missing"),
        pl.col("bd").is_null().cast(pl.Int8).alias("bd_missing"),
    ).drop("in_members", "in_songs", "in_extra")


def fill_values(members: pl.DataFrame, songs: pl.DataFrame, train: pl.DataFrame, pcfg: dict) -> dict:
    """Fill value per column from config strategies; columns the config does not steer get 'unknown'."""
    strategy = pcfg["impute"]
    source = {c: members for c in MEMBER_CATS + MEMBER_NUMS} | {c: songs for c in SONG_CATS + SONG_NUMS}
    source |= {c: train for c in SOURCE_COLS}
    fills = {}
    for col, table in source.items():
        key = IMPUTE_KEY.get(col)
        fills[col] = fill_value(table[col], strategy[key], pcfg["impute_constant"]) if key else UNKNOWN
    return fills


def impute(df: pl.DataFrame, fills: dict) -> pl.DataFrame:
    return df.with_columns(pl.col(c).fill_null(v) for c, v in fills.items())


def missing_report(before: pl.DataFrame, after: pl.DataFrame, fills: dict) -> dict:
    n = max(before.height, 1)
    nb = before.select(pl.col(c).null_count() for c in fills).row(0)
    na = after.select(pl.col(c).null_count() for c in fills).row(0)
    return {c: {"missing_before": round(b / n, 6), "missing_after": round(a / n, 6), "filled_with": fills[c]}
            for c, b, a in zip(fills, nb, na)}


def encode(train: pl.DataFrame, test: pl.DataFrame | None) -> tuple[pl.DataFrame, pl.DataFrame | None, dict]:
    """Replace ids and category strings by compact integer codes, keeping the mappings.

    Users and songs are numbered in order of first appearance (train.csv then test.csv); category
    values in sorted order. Both are label-free.
    """
    parts = [train] if test is None else [train, test]
    vocab = {
        "user": pl.concat([p["msno"] for p in parts]).unique(maintain_order=True),
        "song": pl.concat([p["song_id"] for p in parts]).unique(maintain_order=True),
    }
    for col in CATEGORICAL:
        vocab[col] = pl.concat([p[col].cast(pl.String) for p in parts]).unique().sort()

    def codes(df: pl.DataFrame) -> pl.DataFrame:
        exprs = [pl.col("msno").cast(pl.Enum(vocab["user"])).to_physical().cast(pl.Int32).alias("user"),
                 pl.col("song_id").cast(pl.Enum(vocab["song"])).to_physical().cast(pl.Int32).alias("song")]
        for col in CATEGORICAL:
            dtype = pl.Int32 if col in WIDE_CODES else pl.Int16
            exprs.append(pl.col(col).cast(pl.String).cast(pl.Enum(vocab[col])).to_physical().cast(dtype))
        return df.with_columns(exprs).drop("msno", "song_id")

    mappings = {
        "users": pl.DataFrame({"user": np.arange(len(vocab["user"]), dtype=np.int32), "msno": vocab["user"]}),
        "songs": pl.DataFrame({"song": np.arange(len(vocab["song"]), dtype=np.int32), "song_id": vocab["song"]}),
        "categories": pl.concat([
            pl.DataFrame({"column": col, "code": np.arange(len(vocab[col]), dtype=np.int32), "value": vocab[col]})
            for col in CATEGORICAL
        ]),
    }
    return codes(train), (None if test is None else codes(test)), mappings



def compact(df: pl.DataFrame, first: tuple[str, ...]) -> pl.DataFrame:
    return df.select(*first, *OUTPUT_ORDER).with_columns(
        pl.col("bd", "registration_year", "isrc_year").round().cast(pl.Int16),
        pl.col("membership_days", "song_length").round().cast(pl.Int32),
    )


# ---------------------------------------------------------------------------------------------
def preprocess(files: dict, pcfg: dict) -> dict:
    """Pure transformation of the raw tables into the stage outputs (no file I/O)."""
    files, empty = empty_rows.separate(files, flagged=("train.csv",))
    members, member_counts = clean_members(files["members.csv"], pcfg)
    songs, song_counts = clean_songs(files["songs.csv"], files["song_extra_info.csv"], pcfg)

    labelled = read_labelled(files["train.csv"])
    kept, rejects = split_rejects(labelled, pcfg["drop_duplicates"])
    if kept.height == 0:
        reasons = rejects.group_by("reason").len().sort("reason")
        raise InputError("train.csv", None, "no usable rows: all {} rejected ({})".format(
            labelled.height, ", ".join(f"{r}: {n}" for r, n in reasons.iter_rows())))
    test = None
    if files.get("test.csv") is not None and files["test.csv"].height:  # only empty rows: none to predict
        test = read_unlabelled(files["test.csv"], time_order_start=labelled.height)

    train_j = join_metadata(kept, members, songs)
    fills = fill_values(members, songs, kept, pcfg)
    train_f = impute(train_j, fills)
    columns = missing_report(train_j, train_f, fills)
    test_f = None if test is None else impute(join_metadata(test, members, songs), fills)
    del train_j

    train_e, test_e, mappings = encode(train_f, test_f)
    interactions = compact(train_e, ("target",)).select(
        "time_order", "user", "song", "target", *[c for c in OUTPUT_ORDER if c not in ("time_order", "user", "song")])
    kaggle = None if test_e is None else compact(test_e, ("id",)).select(
        "id", *OUTPUT_ORDER)

    by_reason = rejects.group_by("reason").len().sort("reason")
    quality = {
        "rows": {"in": labelled.height, "out": interactions.height, "rejected": rejects.height},
        "rejected_by_reason": dict(zip(by_reason["reason"], by_reason["len"])),
        "test_rows": None if files.get("test.csv") is None else {
            "in": files["test.csv"].height + empty["test.csv"], "out": 0 if kaggle is None else kaggle.height,
            "rejected": empty["test.csv"], "rejected_by_reason": {empty_rows.REASON: empty["test.csv"]} if empty["test.csv"] else {}},
        "empty_rows": empty,
        "columns": columns,
        "outliers": {"bd": member_counts.pop("bd"), "song_length": song_counts["songs"].pop("song_length")},
        "entities": {"members.csv": member_counts, **{f"{k}.csv": v for k, v in song_counts.items()}},
        "coverage": {
            "rows_without_member": float(interactions["member_missing"].mean()),
            "rows_without_song_metadata": float(interactions["song_meta_missing"].mean()),
            "rows_without_song_extra": float(interactions["song_extra_missing"].mean()),
        },
        "distinct": {"users": mappings["users"].height, "songs": mappings["songs"].height},
    }
    for name, counts in quality["entities"].items():  # an empty row is a data row of its file
        counts["rows"] += empty[name]
        counts["empty_rows"] = empty[name]
    check_rows(quality["rows"])
    return {"interactions": interactions, "kaggle_test": kaggle, "rejects": rejects.select(
        "time_order", "reason", "msno", "song_id", *SOURCE_COLS, pl.col("target").cast(pl.Int8)),
        "quality": Quality.validated(quality, "quality.json (kkbox reader)"), **mappings}


def check_rows(rows: dict) -> None:
    """rows in = out + rejected.

    A RuntimeError, not an InputError: `split_rejects` puts every row on exactly one side, so a
    mismatch is a bug in this reader, never a rule the user's data broke; unlike `assert`, it
    survives `python -O`.
    """
    if rows["in"] != rows["out"] + rows["rejected"]:
        raise RuntimeError(f"train.csv row accounting does not add up: in {rows['in']} != out {rows['out']} "
                           f"+ rejected {rows['rejected']}")


def read_folder(folder: Path, cfg: dict, st) -> dict:
    """Stage 01's tables from a folder of KKBOX CSVs (real or generated); records them as inputs of `st`."""
    with st.step("read csv"):
        files = kkbox_files.read_all(folder)
        for name, frame in files.items():
            if frame is not None:
                st.external_input(folder / name)
                log.info("%s: %s has %d rows", STAGE, name, frame.height)
        st.raw_folder(folder, absent=[name for name, frame in files.items() if frame is None])
    with st.step("clean, join, encode"):
        try:
            out = preprocess(files, cfg["preprocess"])
        except InputError as err:  # name the file by its full path, as the user knows it
            raise InputError(folder / err.file, err.column, err.rule) from None
    st.info.update(raw_dir=str(folder))
    return out


def read(cfg: dict, st) -> dict:
    """The real KKBOX files in `paths.raw`."""
    return read_folder(Path(cfg["paths"]["raw"]), cfg, st)
