#!/usr/bin/env python3
"""What removing a generated log's bots does to the other users' top-10 lists: the most any pruning
of users could gain there.

On the folder of a `bench/benchmark.py --preset listens-* --bots SHARE` run (stages 01-04 done), the
ALS model is retrained without every bot's training rows, and the human test users' NDCG@10 and
precision@10 are compared with the all-rows retrain; beside it, removing as many random users and as
many random rows (`--repeats` draws each). Intervals: paired percentile bootstrap over the human
test users (musicrec.metrics.mean_ci, scipy.stats.bootstrap). Writes <out>/bots_oracle.json.

    .venv/bin/python bench/bots_oracle.py /tmp/lsfarm --repeats 5
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musicrec import families  # noqa: E402
from musicrec.influence.ranking import Lists, relevant_by_user  # noqa: E402
from musicrec.influence.retrain import Retrainer  # noqa: E402
from musicrec.metrics import mean_ci  # noqa: E402
from musicrec.models.base import load_feature_set  # noqa: E402
from musicrec.outputs.train import ModelsManifest  # noqa: E402


def oracle(out: Path, repeats: int, seed: int = 5) -> dict:
    spec = json.loads((out / "03_features" / "features.json").read_text())
    data = {n: load_feature_set(out / "03_features" / f"features_{n}.parquet", spec) for n in ("train", "valid", "test")}
    entry = ModelsManifest.read(out / "04_train" / "models.json").models["als"]
    model = families.load_model(entry.family, out / "04_train", entry.origin)
    train = data["train"]
    users = pl.read_parquet(out / "01_preprocess" / "users.parquet", columns=["user", "msno"])
    truth = pl.read_parquet(out / "log" / "truth.parquet", columns=["user", "bot"]).unique("user")
    bots = users.join(truth.rename({"user": "msno"}), on="msno", how="left").filter(pl.col("bot") == 1)["user"].to_numpy()
    lists = Lists(relevant_by_user(data["test"], True), train, 10, model.n_jobs)
    human = ~np.isin(lists.users, bots)
    user = train.keys["user"].to_numpy()
    retrainer = Retrainer(model, train, data["valid"], data["test"])
    base = lists.measures(retrainer.base_model(retrainer.seed))
    rng = np.random.default_rng(seed)

    def change(rows: np.ndarray) -> dict[str, np.ndarray]:
        keep = np.ones(len(train), dtype=bool)
        keep[rows] = False
        m = lists.measures(retrainer.model_without(retrainer.seed, rows), keep)
        return {k: (m[k] - base[k])[human] for k in ("ndcg", "precision")}

    bot_rows = np.flatnonzero(np.isin(user, bots))
    removed = change(bot_rows)
    everyone = np.unique(user)
    rand_users = [change(np.flatnonzero(np.isin(user, rng.choice(everyone, len(bots), replace=False))))
                  for _ in range(repeats)]
    rand_rows = [change(rng.choice(len(train), len(bot_rows), replace=False)) for _ in range(repeats)]
    res = {"bots": int(len(bots)), "users": int(len(everyone)), "bot_rows": int(len(bot_rows)), "rows": len(train),
           "humans_scored": int(human.sum()), "repeats": repeats}
    for k in ("ndcg", "precision"):
        ru, rr = (np.mean([d[k] for d in draws], axis=0) for draws in (rand_users, rand_rows))
        res[k] = {"bots_removed": mean_ci(removed[k], rng).to_dict(), "random_users": mean_ci(ru, rng).to_dict(),
                  "bots_minus_random_users": mean_ci(removed[k] - ru, rng).to_dict(),
                  "random_rows": mean_ci(rr, rng).to_dict(), "bots_minus_random_rows": mean_ci(removed[k] - rr, rng).to_dict()}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="a benchmark folder of a listens preset generated with --bots")
    ap.add_argument("--repeats", type=int, default=5, help="random draws of users and of rows")
    a = ap.parse_args(argv)
    truth = a.out / "log" / "truth.parquet"
    if not truth.is_file() or "bot" not in pl.read_parquet_schema(truth):
        print(f"bots_oracle: {truth} has no bot column (generate the log with --bots)", file=sys.stderr)
        return 2
    res = oracle(a.out, a.repeats)
    (a.out / "bots_oracle.json").write_text(json.dumps(res, indent=2) + "\n")
    for k in ("ndcg", "precision"):
        print(k, {c: (round(v["value"], 5), [round(x, 5) for x in v["ci95"]]) for c, v in res[k].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
