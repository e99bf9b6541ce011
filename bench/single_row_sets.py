#!/usr/bin/env python3
"""A one-row group through each family's set predictor against that family's leave-one-out estimate.

For nb, lr and rf the two are the same computation (a test checks it); for lgbm and als the set
predictor moves more than the row's own leaves or user (LightGBM's replay moves every later tree, ALS's
sweeps move the items and then every user), so the two differ by design. This measures by how much:
Spearman and Pearson over `--rows` seeded training rows of the change of the whole test split's
log-loss, with n and intervals, and the median relative difference.

    .venv/bin/python bench/single_row_sets.py --data /tmp/grp42 --rows 1000 --tag small-seed42

`--data` is a finished pipeline folder (its bench_config.yaml or `--config`); the record goes to
bench/results/single-rows-<tag>.json and BENCHMARKS.md is regenerated.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from records import write_markdown

REPO = Path(__file__).resolve().parents[1]


def measure(out: Path, config_path: Path, names: list[str], n_rows: int) -> dict:
    from musicrec import config, families
    from musicrec.influence.losses import metric_changes
    from musicrec.influence.stats import correlation
    from musicrec.models import load_feature_set
    from musicrec.rng import name_number

    cfg = config.load(config_path)
    spec = json.loads((out / "03_features" / "features.json").read_text())
    data = {n: load_feature_set(out / "03_features" / f"features_{n}.parquet", spec) for n in ("train", "valid", "test")}
    trained = json.loads((out / "04_train" / "models.json").read_text())["models"]
    result = {}
    for name in names:
        family = families.get(name)
        model = families.load_model(name, out / "04_train", trained[name]["origin"])
        est = family.influence(model, data["train"], data["test"])
        est.prepare_sets(data["valid"], cfg["influence"]["groups"])
        rng = np.random.default_rng([cfg["seed"], name_number("single_rows"), name_number(name)])
        n = len(data["train"])
        rows = np.sort(rng.choice(n, size=min(n_rows, n), replace=False))
        loo = est.loo()["logloss"][rows]
        t0 = time.perf_counter()
        logits = np.stack(list(est.group_logits_many([np.array([r]) for r in rows])))
        seconds = time.perf_counter() - t0
        setp = metric_changes(est.y_test, est.f_test, logits - est.f_test)["logloss"]
        scale = np.abs(setp)
        rel = np.abs(setp - loo)[scale > 0] / scale[scale > 0]
        result[name] = {"rows": int(len(rows)), "spearman": correlation(setp, loo, rng, "spearman"),
                        "pearson": correlation(setp, loo, rng, "pearson"),
                        "median_rel_diff": float(np.median(rel)) if len(rel) else None,
                        "set_prediction_s_per_row": round(seconds / len(rows), 4),
                        "mean_abs_set": float(np.abs(setp).mean()), "mean_abs_loo": float(np.abs(loo).mean())}
        print(name, json.dumps(result[name]), flush=True)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a finished pipeline's paths.data folder")
    ap.add_argument("--config", type=Path, help="its config (default <data>/bench_config.yaml)")
    ap.add_argument("--models", nargs="+", default=["lgbm", "als"])
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--markdown", type=Path, default=REPO / "BENCHMARKS.md")
    args = ap.parse_args(argv)
    record = {"kind": "single_rows", "data": str(args.data),
              "models": measure(args.data, args.config or args.data / "bench_config.yaml", args.models, args.rows),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "command": " ".join(["bench/single_row_sets.py", *(argv if argv is not None else sys.argv[1:])])}
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"single-rows-{args.tag}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    write_markdown(args.results, args.markdown)
    print(f"wrote {path} and {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
