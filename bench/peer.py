#!/usr/bin/env python3
"""Our mislabel detectors beside a public data-valuation library's, on the same training rows.

    python3 -m venv .peer && .peer/bin/pip install -r bench/requirements-peer.txt
    .venv/bin/python bench/peer.py --data <paths.data of a run with split.train_label_noise > 0> \
        --peer-python .peer/bin/python --tag small [--trees 100] [--knn-rows 20000]

The run's stage 06 must have scored flipped training labels (validation.json `label_noise`). The
peer (pyDVL: Data-OOB of a scikit-learn random forest, KNN-Shapley) runs in its own environment
(bench/peer_dvl.py) on logistic regression's design of the same training rows, with the labels as
the models saw them (flipped ones included) and, for KNN-Shapley, the clean test labels. Every
ranking is scored as a detector of the flipped rows with musicrec's own `detector` (lift at 5% and
10% with bootstrap intervals, PR-AUC): on all training rows, and on the KNN-Shapley subsample (the
rows it valued) for the side by side with it. Seconds: the peer's are its fit and valuation; ours
are the model's fit in stage 04 plus its leave-one-out in stage 06 (every ranking of a model comes
from that one pass). Written to bench/results/peer-<tag>.json; BENCHMARKS.md is regenerated.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]

from musicrec.influence.noise import RANKINGS, oob_suspicion, suspicion
from musicrec.influence.stats import detector

PEER = "pyDVL"


def design(data: Path) -> dict:
    """Logistic regression's design (imputed, standardised) of the train and test rows, the labels
    the models saw, and the flipped mask, in loo.parquet's row order."""
    from musicrec.families import load_model
    from musicrec.models import load_feature_set

    spec = json.loads((data / "03_features" / "features.json").read_text())
    sets = {n: load_feature_set(data / "03_features" / f"features_{n}.parquet", spec) for n in ("train", "test")}
    lr = load_model("lr", data / "04_train")
    loo = pl.read_parquet(data / "06_influence" / "loo.parquet")
    if "label_flipped" not in loo.columns:
        raise SystemExit(f"{data}/06_influence/loo.parquet: no label_flipped column; run 02-06 with "
                         "--set split.train_label_noise=0.1")
    assert (loo["time_order"].to_numpy() == sets["train"].keys["time_order"].to_numpy()).all()
    return {"X": lr.design_.transform(sets["train"], np.float64), "y": sets["train"].y.astype(np.int64),
            "X_test": lr.design_.transform(sets["test"], np.float64), "y_test": sets["test"].y.astype(np.int64),
            "flipped": loo["label_flipped"].to_numpy(), "loo": loo}


def run_peer(peer_python: str, d: dict, knn_rows: np.ndarray, knn_test: np.ndarray, trees: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "design.npz", Path(tmp) / "values.npz"
        np.savez(src, X=d["X"], y=d["y"], X_test=d["X_test"][knn_test], y_test=d["y_test"][knn_test], knn_rows=knn_rows)
        subprocess.run([peer_python, str(REPO / "bench" / "peer_dvl.py"), str(src), str(out),
                        "--trees", str(trees), "--seed", str(seed)], check=True)
        v = dict(np.load(out))
    return {"data_oob": v["data_oob"], "knn_shapley": v["knn_shapley"],
            "seconds": {"data_oob": float(v["data_oob_seconds"]), "knn_shapley": float(v["knn_shapley_seconds"])}}


def our_rankings(data: Path, loo: pl.DataFrame, validation: dict) -> tuple[dict, dict]:
    """{"<model> <ranking>": suspicion score (larger = more suspect)} and {model: seconds (04 fit + 06 LOO)}."""
    fits = json.loads((data / "04_train" / "metrics.json").read_text())["models"]
    scores, seconds = {}, {}
    for m, s in validation["loo_seconds"].items():
        seconds[m] = fits[m]["fit_seconds"] + s
        cols = {key: loo[f"{m}_{key}"].to_numpy() for key, _ in RANKINGS.values()}
        extra = ({"data_oob": oob_suspicion(loo[f"{m}_data_oob"].to_numpy())} if f"{m}_data_oob" in loo.columns
                 else None)
        scores |= {f"{m} {name}": v for name, v in suspicion(cols, extra).items()}
    return scores, seconds


def record(name: str, scores: np.ndarray, flipped: np.ndarray, rows: np.ndarray, seconds: float, rng,
           valued: int | None = None) -> dict:
    """One ranking as a detector on `rows`; rows/s counts the `valued` rows (default: all scored rows)."""
    det = detector(scores[rows], flipped[rows], rng)
    valued = len(scores) if valued is None else valued
    return {"ranking": name, "rows": int(len(rows)), "seconds": round(seconds, 3),
            "rows_per_s": round(valued / seconds, 1) if seconds > 0 else None, **det}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="paths.data of the run (stages 01-06 done)")
    ap.add_argument("--peer-python", required=True, help="python of the environment with bench/requirements-peer.txt")
    ap.add_argument("--tag", required=True, help="name of the result: bench/results/peer-<tag>.json")
    ap.add_argument("--trees", type=int, default=100, help="trees of the peer's random forest (Data-OOB)")
    ap.add_argument("--knn-rows", type=int, default=0, help="training rows KNN-Shapley values (0: all)")
    ap.add_argument("--knn-test-rows", type=int, default=0,
                    help="test rows KNN-Shapley's utility averages over (0: all; its cost is train x test rows)")
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    d = design(a.data)
    n = len(d["y"])
    knn_rows = np.sort(rng.choice(n, a.knn_rows, replace=False)) if 0 < a.knn_rows < n else np.arange(n)
    n_test = len(d["y_test"])
    knn_test = (np.sort(rng.choice(n_test, a.knn_test_rows, replace=False)) if 0 < a.knn_test_rows < n_test
                else np.arange(n_test))
    print(f"peer: {n} training rows, {int(d['flipped'].sum())} flipped; KNN-Shapley on {len(knn_rows)} "
          f"training x {len(knn_test)} test rows", flush=True)
    load_before = os.getloadavg()[0]
    peer = run_peer(a.peer_python, d, knn_rows, knn_test, a.trees, a.seed)
    load_after = os.getloadavg()[0]
    validation = json.loads((a.data / "06_influence" / "validation.json").read_text())
    ours, seconds = our_rankings(a.data, d["loo"], validation)
    flipped, everything = d["flipped"], np.arange(n)
    out = {"kind": "peer", "tag": a.tag, "peer": PEER, "data": str(a.data), "rows": n,
           "flipped": int(flipped.sum()), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "command": "bench/peer.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "load_average_1min": [round(load_before, 2), round(load_after, 2)],
           "trees": a.trees, "knn_rows": int(len(knn_rows)), "knn_test_rows": int(len(knn_test)),
           "seconds_note": "peer: its forest fit + valuation; ours: stage 04 fit + stage 06 LOO of that model",
           "all_rows": [], "knn_rows_side_by_side": []}
    # Data-OOB: low value (the out-of-bag trees disagree with the label) = suspect
    out["all_rows"].append(record(f"{PEER} Data-OOB ({a.trees} trees)", oob_suspicion(peer["data_oob"]),
                                  flipped, everything, peer["seconds"]["data_oob"], rng))
    for name, s in ours.items():
        out["all_rows"].append(record(name, s, flipped, everything, seconds[name.split()[0]], rng))
    knn = -peer["knn_shapley"]
    out["knn_rows_side_by_side"].append(record(f"{PEER} KNN-Shapley (k=10)", np.nan_to_num(knn, nan=-np.inf), flipped,
                                               knn_rows, peer["seconds"]["knn_shapley"], rng, valued=len(knn_rows)))
    for name, s in ours.items():
        out["knn_rows_side_by_side"].append(record(name, s, flipped, knn_rows, seconds[name.split()[0]], rng))
    out["oracle_all_rows"] = validation.get("label_noise", {}).get("oracle")
    path = REPO / "bench" / "results" / f"peer-{a.tag}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    from records import write_markdown

    write_markdown(REPO / "bench" / "results", REPO / "BENCHMARKS.md")
    for r in out["all_rows"]:
        print(f"{r['ranking']:40s} lift@10% {r['lift_10pct']['value']:.2f} {r['lift_10pct']['ci95']} "
              f"{r['seconds']:8.1f} s {r['rows_per_s']} rows/s")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
