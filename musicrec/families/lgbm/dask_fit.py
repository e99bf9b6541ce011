"""LightGBM trained on a Dask cluster (`train.lgbm.engine: dask`) with lightgbm.dask, data-parallel.

The train split never passes through the client: each worker reads its own blocks of rows of
features_train.parquet, dealt round-robin so that every rank's rows span the whole (time-ordered)
split (`deal_blocks`; rank i is the i-th worker in sorted order, so every run gives each LightGBM
rank the same rows and sums the same histograms in the same order), and LightGBM's ranks exchange
histograms among themselves. Only the booster comes back.

lightgbm.dask has no early stopping of its own (it splits an eval_set among the ranks, and each would
stop on its own share): StopOnValidation applies LightGBM's early_stopping rule on the whole
validation split, which every rank reads and scores itself, so all ranks stop at the same tree.
Bins are found from every rank's sample, so the trees equal a one-machine fit only up to bin edges
and float sums (test AUC within 0.005 of the local fit at tiny, tests/test_engine_lgbm.py).
"""
from __future__ import annotations

import logging
import math
import socket
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import polars as pl

log = logging.getLogger("musicrec")

ROWS_PER_PART = 500_000   # rows of one partition at most: ~0.2 GB of float32 at 100 features
BLOCK_ROWS = 65_536       # rows of one block dealt to a rank
BLOCKS_PER_RANK = 16      # at least this many blocks per rank, however few the rows
BIN_SAMPLE = 200_000      # LightGBM's bin_construct_sample_cnt: the rows a one-machine fit finds bins from


def read_part(path: str, blocks: list[tuple[int, int]] | None, columns: list[str], target: str,
              as_dict: bool = False) -> tuple[np.ndarray, np.ndarray] | dict:
    """On a worker: the row ranges `blocks` ((start, length); None: every row) of a features parquet, as
    stage 04 reads them locally (float32 features in `columns` order, int8 labels)."""
    scan = pl.scan_parquet(path).select(*columns, target)
    df = (scan.collect() if blocks is None else
          pl.concat([scan.slice(start, length) for start, length in blocks]).collect())
    X = np.ascontiguousarray(df.select(pl.col(columns).cast(pl.Float32)).to_numpy(), dtype=np.float32)
    y = df[target].to_numpy().astype(np.int8)
    return {"data": X, "label": y} if as_dict else (X, y)


def deal_blocks(rows: int, ranks: int) -> list[list[list[tuple[int, int]]]]:
    """Rows dealt to ranks in blocks, round-robin: rank r gets blocks r, r + ranks, ... so each rank's rows
    span the whole split (it is in time order), and so do the rows LightGBM finds each feature's bins
    from (one rank's). Each rank's blocks are grouped into partitions of at most ROWS_PER_PART rows."""
    block = max(1, min(BLOCK_ROWS, math.ceil(rows / (ranks * BLOCKS_PER_RANK))))
    starts = range(0, rows, block)
    dealt: list[list[list[tuple[int, int]]]] = [[] for _ in range(ranks)]
    for j, start in enumerate(starts):
        parts = dealt[j % ranks]
        if not parts or sum(n for _, n in parts[-1]) + block > ROWS_PER_PART:
            parts.append([])
        parts[-1].append((start, min(block, rows - start)))
    return dealt


def partitions(path: Path, columns: list[str], target: str, client, names: list) -> list[list]:
    """Per rank (the workers named `names`, in that order), futures of its partitions ({"data": X,
    "label": y}, lightgbm.dask's layout), each read on that worker and kept there."""
    rows = pl.scan_parquet(path).select(pl.len()).collect().item()
    ranks = []
    for name, parts in zip(names, deal_blocks(rows, len(names))):
        # pinned by name: a worker restarted by its nanny keeps it, and rank r always holds deal r
        ranks.append([client.submit(read_part, str(path), blocks, columns, target, as_dict=True, workers=[name],
                                    allow_other_workers=False, pure=False, retries=2) for blocks in parts])
    log.info("lgbm on dask: %d train rows in %d partitions over %d workers", rows, sum(map(len, ranks)), len(names))
    return ranks


def bin_sample(path: str, rows: int, columns: list[str], target: str, size: int, seed: int) -> dict:
    """On a worker: the rows every rank finds the bins from, the same on every rank. A one-machine fit
    finds them from a sample of `bin_construct_sample_cnt` rows (all rows when there are fewer), so
    with all rows the bins are the local fit's; past that, a seeded uniform sample of that size."""
    if rows <= size:
        return read_part(path, None, columns, target, as_dict=True)
    keep = np.sort(np.random.default_rng(seed).choice(rows, size, replace=False))
    df = (pl.scan_parquet(path).select(*columns, target).with_row_index("_row")
          .filter(pl.col("_row").is_in(pl.Series(keep).implode())).collect(engine="streaming"))
    X = np.ascontiguousarray(df.select(pl.col(columns).cast(pl.Float32)).to_numpy(), dtype=np.float32)
    return {"data": X, "label": df[target].to_numpy().astype(np.int8)}


class Port:
    """A free port held open on a worker until its LightGBM rank binds it (no other process takes it)."""

    def __init__(self):
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("", 0))
        self.number = self.socket.getsockname()[1]

    def release(self) -> int:
        self.socket.close()
        return self.number


def train_rank(parts: list[dict], sample: dict, params: dict, network: dict, port: Port, n_estimators: int,
               features: list[str], categorical: list[str], callbacks: list, return_model: bool) -> str | None:
    """On a worker: one LightGBM rank of data-parallel training (tree_learner data) on its partitions,
    its bins taken from `sample` (so every rank's equal those of a one-machine fit on those rows);
    rank 0 returns the model's text (cut at the best iteration)."""
    import lightgbm as lgb

    X = np.concatenate([p["data"] for p in parts])
    y = np.concatenate([p["label"] for p in parts])
    ref = lgb.Dataset(sample["data"], sample["label"], feature_name=features, categorical_feature=categorical,
                      params=params, free_raw_data=False).construct()   # before the network: bins found here
    data = lgb.Dataset(X, y, reference=ref, feature_name=features, categorical_feature=categorical, params=params)
    network = {**network, "local_listen_port": port.release()}
    booster = lgb.train({**params, **network}, data, num_boost_round=n_estimators, callbacks=callbacks)
    try:
        best = booster.best_iteration if booster.best_iteration > 0 else None
        return booster.model_to_string(num_iteration=best) if return_model else None
    finally:
        booster.free_network()


def train_booster(params: dict, n_estimators: int, ranks: list[list], names: list, features: list[str],
                  categorical: list[str], client, train_path: Path, target: str, callbacks=()):
    """Data-parallel LightGBM over the workers named `names` (rank r holds `ranks[r]`): the booster,
    without the parameter lines that name this run's ports.

    Placed by us rather than by lightgbm.dask's DaskLGBMClassifier, which ranks the workers in the order
    the scheduler happened to compute its parts in and lets each rank find the bins of its share of the
    features from its own rows: the same config gave two different models from run to run, both a little
    worse than the local fit at tiny (bins from half the rows)."""
    import lightgbm as lgb

    info = client.scheduler_info(n_workers=-1)["workers"]
    address = {w["name"]: a for a, w in info.items()}
    rows = pl.scan_parquet(train_path).select(pl.len()).collect().item()
    sample_f = client.submit(bin_sample, str(train_path), rows, features, target, BIN_SAMPLE, params["seed"],
                             workers=[names[0]], pure=False, retries=2)
    ports = [client.submit(Port, workers=[name], allow_other_workers=False, pure=False) for name in names]
    numbers = client.gather([client.submit(getattr, p, "number", workers=[n], allow_other_workers=False, pure=False)
                             for p, n in zip(ports, names)])
    machines = ",".join(f"{urlparse(address[n]).hostname}:{k}" for n, k in zip(names, numbers))
    network = {"tree_learner": "data", "num_machines": len(names), "machines": machines, "time_out": 120}
    futures = [client.submit(train_rank, parts, sample_f, {**params, "num_threads": info[address[n]]["nthreads"]},
                             network, port, n_estimators, features, categorical, list(callbacks), r == 0,
                             workers=[n], allow_other_workers=False, pure=False)
               for r, (n, parts, port) in enumerate(zip(names, ranks, ports))]
    text = next(t for t in client.gather(futures) if t is not None)
    return lgb.Booster(model_str=without_ports(text))


RUN_SPECIFIC = ("machines", "local_listen_port", "machine_list_filename")


def without_ports(model_text: str) -> str:
    """The model text without the parameter lines that name this run's ports (same config, same bytes)."""
    return "\n".join(line for line in model_text.split("\n")
                     if not any(line.startswith(f"[{name}:") for name in RUN_SPECIFIC))


class StopOnValidation:
    """LightGBM's early_stopping rule on the validation log-loss, evaluated by every rank itself.

    lightgbm.dask splits an eval_set among the ranks, each of which would then judge early stopping
    on its own share and stop at its own iteration. This callback reads the whole validation split
    from its parquet on each worker (the client sends only the path) and keeps its raw scores tree by
    tree; every rank holds the same trees, so every rank computes the same losses and stops at the
    same iteration. The rule is LightGBM's: a strictly lower loss is an improvement; stop once
    `rounds` trees in a row bring none; keep the trees up to the best.
    """

    order = 30   # where LightGBM's own early_stopping runs

    def __init__(self, path: str, columns: list[str], target: str, rounds: int):
        self.path, self.columns, self.target, self.rounds = path, columns, target, rounds
        self.X = self.y = self.raw = None
        self.best, self.best_loss = 0, math.inf

    def __call__(self, env) -> None:
        import lightgbm as lgb

        if self.X is None:
            self.X, y = read_part(self.path, None, self.columns, self.target)
            self.y, self.raw = y.astype(np.float64), np.zeros(len(y))
        i = env.iteration - env.begin_iteration
        self.raw += env.model.predict(self.X, start_iteration=i, num_iteration=1, raw_score=True,
                                      num_threads=env.params.get("num_threads", 0))
        p = np.clip(1.0 / (1.0 + np.exp(-self.raw)), 1e-15, 1 - 1e-15)
        loss = -float(np.mean(self.y * np.log(p) + (1 - self.y) * np.log1p(-p)))
        if loss < self.best_loss:
            self.best, self.best_loss = i, loss
            return
        if i - self.best >= self.rounds or env.iteration == env.end_iteration - 1:
            raise lgb.callback.EarlyStopException(self.best, [])


def fit_on_cluster(model, eng, train_path: Path, valid, valid_path: Path | None = None, target: str = "target"):
    """Fit `model` (a LightGBMModel) on the engine's workers, with early stopping on the validation
    split read from `valid_path` on each worker (None: no early stopping, `n_estimators` trees)."""
    model.features_ = model._columns(valid)
    model.categorical_ = [n for n in model.features_ if n in valid.categorical]
    names = eng.worker_names()
    ranks = partitions(train_path, model.features_, target, eng.client, names)
    stop = ([StopOnValidation(str(valid_path), model.features_, target, model.early_stopping_rounds)]
            if valid_path is not None and model.early_stopping_rounds else [])
    model.booster_ = train_booster(model.params(), model.n_estimators, ranks, names, model.features_,
                                   model.categorical_, eng.client, train_path, target, stop)
    log.info("lgbm on dask: %d trees kept%s", model.booster_.num_trees(), " by early stopping" if stop else "")
    return model
