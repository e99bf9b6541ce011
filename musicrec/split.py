"""Stage 02: split the labelled rows into train / valid / test.

The default split is temporal, because KKBOX rows are in time order and the task is to predict
the future: the last `test_fraction` of rows (by `time_order`) is test, the last `valid_fraction` of the
remainder is validation. A stratified random split exists for comparison.

`split.train_label_noise` > 0 flips that share of the TRAINING part's labels after the split
(exactly round(share * train rows), seeded), so that the evaluation labels stay clean; train.parquet
records the flipped rows in `label_flipped` and split.json their count.
"""
from __future__ import annotations

import logging

import numpy as np
import polars as pl
from sklearn.model_selection import train_test_split

from musicrec.config import ConfigError
from musicrec.manifest import StageRun
from musicrec.rng import seed, stream
from musicrec.sources import untimed

log = logging.getLogger("musicrec")

STAGE = "02_split"
PARTS = ("train", "valid", "test")


def split_sizes(n: int, test_fraction: float, valid_fraction: float) -> tuple[int, int, int]:
    n_test = int(round(n * test_fraction))
    n_valid = int(round((n - n_test) * valid_fraction))
    n_train = n - n_test - n_valid
    if min(n_train, n_valid, n_test) < 1:
        raise ConfigError(f"config keys 'split.test_fraction' = {test_fraction} and 'split.valid_fraction' = "
                          f"{valid_fraction}: a split of {n} rows gives an empty part (train {n_train}, "
                          f"valid {n_valid}, test {n_test}); each part needs at least one row")
    return n_train, n_valid, n_test


def temporal_assignment(time_order: np.ndarray, test_fraction: float, valid_fraction: float) -> np.ndarray:
    """Part index per row (0 train, 1 valid, 2 test) from the time order of `time_order`."""
    n_train, n_valid, _ = split_sizes(len(time_order), test_fraction, valid_fraction)
    order = np.argsort(time_order, kind="stable")
    part = np.empty(len(time_order), dtype=np.int8)
    part[order[:n_train]] = 0
    part[order[n_train:n_train + n_valid]] = 1
    part[order[n_train + n_valid:]] = 2
    return part


def random_assignment(y: np.ndarray, test_fraction: float, valid_fraction: float,
                      random_state: int) -> np.ndarray:
    """Stratified random part index per row, with scikit-learn's splitter."""
    n_train, n_valid, n_test = split_sizes(len(y), test_fraction, valid_fraction)
    idx = np.arange(len(y))
    try:
        rest, test = train_test_split(idx, test_size=n_test, stratify=y, random_state=random_state)
        train, valid = train_test_split(rest, test_size=n_valid, stratify=y[rest], random_state=random_state)
    except ValueError as exc:  # a part too small to hold both classes
        raise ConfigError(f"config key 'split.method' = 'random' is not allowed with split.test_fraction = "
                          f"{test_fraction} and split.valid_fraction = {valid_fraction}: {exc}") from None
    part = np.zeros(len(y), dtype=np.int8)
    part[valid], part[test] = 1, 2
    return part


def user_holdout_assignment(user: np.ndarray, test_fraction: float, valid_fraction: float,
                            rng: np.random.Generator) -> np.ndarray:
    """Seeded per-user holdout of pairs (data without time): of each user's n rows, round(n * test_fraction)
    random ones are test and round((n - n_test) * valid_fraction) valid; users keep at least one train row."""
    key = rng.random(len(user))
    df = pl.DataFrame({"user": user, "key": key}).with_columns(
        pl.col("key").rank("ordinal").over("user").cast(pl.Int64).alias("r"), pl.len().over("user").alias("n"))
    n = df["n"].to_numpy().astype(np.int64)
    r = df["r"].to_numpy() - 1
    n_test = np.minimum(np.rint(n * test_fraction).astype(np.int64), n - 1)
    n_valid = np.minimum(np.rint((n - n_test) * valid_fraction).astype(np.int64), n - n_test - 1)
    part = np.zeros(len(user), dtype=np.int8)
    part[r < n_test + n_valid] = 1
    part[r < n_test] = 2
    if min(int((part == p).sum()) for p in (0, 1, 2)) < 1:
        raise ConfigError(f"split.method user_holdout of {len(user)} rows gives an empty part; change "
                          "split.test_fraction / split.valid_fraction")
    return part


def cold_start(train: pl.DataFrame, test: pl.DataFrame) -> dict:
    """How much of the test part the model has never seen: distinct ids and rows."""
    out = {}
    for col, name in (("user", "users"), ("song", "songs")):
        seen = train[col].unique()
        unseen_rows = ~test[col].is_in(seen.implode())
        distinct = test[col].unique()
        out[f"test_{name}_unseen_share"] = float((~distinct.is_in(seen.implode())).mean())
        out[f"test_rows_with_unseen_{col}_share"] = float(unseen_rows.mean())
    return out


def summarize(parts: dict[str, pl.DataFrame]) -> dict:
    summary = {name: {"rows": df.height, "time_order_min": int(df["time_order"].min()), "time_order_max": int(df["time_order"].max()),
                      "target_mean": float(df["target"].mean())} for name, df in parts.items()}
    summary["cold_start"] = cold_start(parts["train"], parts["test"])
    return summary


def split(df: pl.DataFrame, scfg: dict, random_state: int) -> dict[str, pl.DataFrame]:
    if scfg["method"] == "user_holdout":
        part = user_holdout_assignment(df["user"].to_numpy(), scfg["test_fraction"], scfg["valid_fraction"],
                                       np.random.default_rng(random_state))
    elif scfg["method"] == "temporal":
        part = temporal_assignment(df["time_order"].to_numpy(), scfg["test_fraction"], scfg["valid_fraction"])
    else:
        part = random_assignment(df["target"].to_numpy(), scfg["test_fraction"], scfg["valid_fraction"],
                                 random_state)
    df = df.with_columns(pl.Series("_part", part))
    return {name: df.filter(pl.col("_part") == i).drop("_part").sort("time_order") for i, name in enumerate(PARTS)}


def flip_train_labels(train: pl.DataFrame, share: float, rng: np.random.Generator) -> pl.DataFrame:
    """Flip exactly round(share * rows) labels of the training part, chosen at random; the column
    `label_flipped` says which (all False when share is 0)."""
    flipped = np.zeros(train.height, dtype=bool)
    flipped[rng.choice(train.height, int(round(share * train.height)), replace=False)] = True
    mask = pl.Series("label_flipped", flipped)
    return train.with_columns(
        pl.when(mask).then(1 - pl.col("target")).otherwise(pl.col("target")).cast(train["target"].dtype).alias("target"),
        mask)


def run(cfg: dict, force: bool = False) -> dict:
    with StageRun(STAGE, cfg, force=force) as st:
        with st.step("read"):
            df = pl.read_parquet(st.input("01_preprocess", "interactions.parquet"))
        with st.step("split"):
            split_seed = seed(cfg, STAGE, "split")
            scfg = cfg["split"]
            if untimed(cfg) and scfg["method"] != "user_holdout":
                log.info("%s: hetrec play counts have no time: a seeded per-user holdout of pairs instead of "
                         "split.method %s", STAGE, scfg["method"])
                scfg = {**scfg, "method": "user_holdout"}
            parts = split(df, scfg, split_seed)
            share = cfg["split"]["train_label_noise"]
            parts["train"] = flip_train_labels(parts["train"], share, stream(cfg, STAGE, "train_label_noise"))
            summary = summarize(parts)
            summary["train_label_noise"] = {"share": share, "flipped": int(parts["train"]["label_flipped"].sum())}
        with st.step("write"):
            for name, part in parts.items():
                st.write_parquet(part, f"{name}.parquet")
            st.write_json(summary, "split.json")
        st.info.update(method=scfg["method"], **{n: summary[n]["rows"] for n in PARTS})
        log.info("%s: train %d, valid %d, test %d rows; cold start %s", STAGE, summary["train"]["rows"],
                 summary["valid"]["rows"], summary["test"]["rows"], summary["cold_start"])
    return summary
