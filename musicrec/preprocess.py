"""Stage 01: read the raw KKBOX files, reject unusable rows, clean, join, encode ids.

Every labelled row either reaches `interactions.parquet` or `rejects.parquet` with a reason, so
rows in = rows out + rows rejected holds by construction and is written to `quality.json`.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import polars as pl

from musicrec import kcore, raw
from musicrec.cleaning import UNKNOWN, clean_members, clean_songs, fill_value
from musicrec.config import section_hash
from musicrec.errors import InputError
from musicrec.manifest import StageRun
from musicrec.truth import synthetic_dir

log = logging.getLogger("musicrec")

STAGE = "01_preprocess"
SOURCE_COLS = ("source_system_tab", "source_screen_name", "source_type")
MEMBER_CATS = ("city", "registered_via", "gender")
SONG_CATS = ("language", "genre", "artist", "composer", "lyricist", "isrc_country")
CATEGORICAL = SOURCE_COLS + MEMBER_CATS + SONG_CATS
MEMBER_NUMS = ("bd", "registration_year", "membership_days")
SONG_NUMS = ("song_length", "isrc_year")
WIDE_CODES = ("user", "song", "artist", "composer", "lyricist")  # may exceed Int16
# config.preprocess.impute key for each column that the config can steer
IMPUTE_KEY = {**{c: "source" for c in SOURCE_COLS}, "city": "city", "registered_via": "registered_via",
              "gender": "gender", "language": "language", "genre": "genre", "bd": "bd",
              "registration_year": "registration_year", "membership_days": "membership_days",
              "song_length": "song_length", "isrc_year": "isrc_year"}


# ---------------------------------------------------------------------------------------------
# synthetic source
def ensure_synthetic(cfg: dict) -> Path:
    """Generate the synthetic CSVs unless they exist for the same `data` section and seed."""
    out = synthetic_dir(cfg)
    stamp = {"data": section_hash(cfg, "data"), "seed": cfg["seed"]}
    stamp_path = out / "source.json"
    if stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
        log.info("%s: synthetic data in %s is current", STAGE, out)
        return out
    from musicrec import synthetic  # only needed when generating

    scfg = cfg["data"]["synthetic"]
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("%s: generating synthetic data (preset %s) into %s", STAGE, scfg["preset"], out)
    synthetic.generate(tmp, scfg["preset"], label_noise=scfg["label_noise"],
                       random_state=[cfg["seed"], 1], train_rows=scfg["train_rows"], test_rows=scfg["test_rows"])
    (tmp / "source.json").write_text(json.dumps(stamp) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def raw_dir(cfg: dict) -> Path:
    return ensure_synthetic(cfg) if cfg["data"]["source"] == "synthetic" else Path(cfg["paths"]["raw"])


# ---------------------------------------------------------------------------------------------
# rows
def split_rejects(train: pl.DataFrame, drop_duplicates: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Separate the usable labelled rows from those that cannot be used, with the reason."""
    reason = (pl.when(pl.col("msno").is_null()).then(pl.lit("missing msno"))
              .when(pl.col("song_id").is_null()).then(pl.lit("missing song_id"))
              .when(pl.col("target").is_null()).then(pl.lit("missing target")))
    if drop_duplicates:
        content = pl.struct("msno", "song_id", *SOURCE_COLS, "target")
        reason = reason.when(~content.is_first_distinct()).then(pl.lit("exact duplicate of an earlier row"))
    train = train.with_columns(reason.otherwise(None).alias("reason"))
    rejects = train.filter(pl.col("reason").is_not_null())
    kept = train.filter(pl.col("reason").is_null()).drop("reason")
    return kept, rejects


def read_labelled(frame: pl.DataFrame) -> pl.DataFrame:
    df = frame.with_columns(
        pl.int_range(pl.len(), dtype=pl.Int32).alias("time_order"),
        *(raw.null_to_none(c) for c in ("msno", "song_id", *SOURCE_COLS, "target")),
    )
    return df.with_columns(raw.parse_target(df, "train.csv"))


def read_unlabelled(frame: pl.DataFrame, time_order_start: int) -> pl.DataFrame:
    """test.csv rows continue the time axis after train.csv; every row must be kept for Kaggle."""
    df = frame.with_columns(*(raw.null_to_none(c) for c in ("msno", "song_id", *SOURCE_COLS)))
    for col in ("msno", "song_id"):
        if df[col].null_count():
            first = int(df[col].is_null().arg_true()[0])
            raise InputError("test.csv", col, f"ids must not be empty (data row {first + 1}); "
                                              "every test row needs a prediction")
    return df.with_columns(
        raw.parse_int(df, "test.csv", "id"),
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


OUTPUT_ORDER = ("time_order", "user", "song", *SOURCE_COLS, "city", "bd", "gender", "registered_via",
                "registration_year", "membership_days", "song_length", "genre", "genre_count", "artist",
                "composer", "lyricist", "composer_count", "lyricist_count", "language", "isrc_country",
                "isrc_year", "member_missing", "bd_missing", "song_meta_missing", "song_extra_missing")


def compact(df: pl.DataFrame, first: tuple[str, ...]) -> pl.DataFrame:
    return df.select(*first, *OUTPUT_ORDER).with_columns(
        pl.col("bd", "registration_year", "isrc_year").round().cast(pl.Int16),
        pl.col("membership_days", "song_length").round().cast(pl.Int32),
    )


# ---------------------------------------------------------------------------------------------
def preprocess(files: dict, pcfg: dict) -> dict:
    """Pure transformation of the raw tables into the stage outputs (no file I/O)."""
    members, member_counts = clean_members(files["members.csv"], pcfg)
    songs, song_counts = clean_songs(files["songs.csv"], files["song_extra_info.csv"], pcfg)

    labelled = read_labelled(files["train.csv"])
    kept, rejects = split_rejects(labelled, pcfg["drop_duplicates"])
    test = None
    if files.get("test.csv") is not None:
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
        "test_rows": None if test is None else {"in": test.height, "out": kaggle.height},
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
    assert quality["rows"]["in"] == quality["rows"]["out"] + quality["rows"]["rejected"]
    return {"interactions": interactions, "kaggle_test": kaggle, "rejects": rejects.select(
        "time_order", "reason", "msno", "song_id", *SOURCE_COLS, pl.col("target").cast(pl.Int8)),
        "quality": quality, **mappings}


def read_kkbox(cfg: dict, st: StageRun) -> tuple[dict, Path]:
    """The KKBOX CSVs (real or generated) read, cleaned, joined and encoded."""
    with st.step("locate input"):
        folder = raw_dir(cfg)
    with st.step("read csv"):
        files = raw.read_all(folder)
        for name, frame in files.items():
            if frame is not None:
                st.external_input(folder / name)
                log.info("%s: %s has %d rows", STAGE, name, frame.height)
    with st.step("clean, join, encode"):
        try:
            out = preprocess(files, cfg["preprocess"])
        except InputError as err:  # name the file by its full path, as the user knows it
            raise InputError(folder / err.file, err.column, err.rule) from None
    return out, folder


def run(cfg: dict, force: bool = False) -> dict:
    with StageRun(STAGE, cfg, force=force) as st:
        if cfg["data"]["source"] == "listens":  # a listening log: its own reader, same outputs
            from musicrec.readers.listens import read as read_listens

            out = read_listens(cfg, st)
            folder = Path(cfg["data"]["listens"]["path"])
        else:
            out, folder = read_kkbox(cfg, st)
        out = kcore.apply(out, cfg["preprocess"]["kcore"])
        with st.step("write"):
            for name in ("interactions", "rejects", "users", "songs", "categories"):
                st.write_parquet(out[name], f"{name}.parquet")
            if out["kaggle_test"] is not None:
                st.write_parquet(out["kaggle_test"], "kaggle_test.parquet")
            st.write_json(out["quality"], "quality.json")
        rows = out["quality"]["rows"]
        st.info.update(source=cfg["data"]["source"], raw_dir=str(folder), rows=rows)
        if cfg["data"]["source"] != "listens":  # the listens reader logs its own four-way accounting
            log.info("%s: rows in %d = out %d + rejected %d + k-core %d", STAGE, rows["in"], rows["out"],
                     rows["rejected"], rows.get("kcore_removed", 0))
    return out["quality"]
