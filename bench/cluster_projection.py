"""Projected wall time of three cluster workloads on W workers, from task costs measured on one machine.

    .venv/bin/python bench/cluster_projection.py --kkbox-run /tmp/bkf3

Nothing here runs on a cluster: every input is a measurement of this project's 2-core machine (the
records in bench/results and the kkbox run folder's stage manifests), and the model is stated with
the table it prints. A worker is taken to be one such 2-core machine.

- Each map of tasks is a barrier (stage 06 runs its steps one after another): a step of n equal
  tasks of t seconds takes ceil(n / W) * t; a step of fine row blocks (leave-one-out, set
  predictions) takes its one-machine seconds / W; the client's own work (reading, writing, plots,
  ALS's ranking influence) stays as measured.
- Stage 06 sends each model's estimator and retrainer to every worker from the client: bytes per
  worker scale with the training rows from the `small-dask2` record, and the client's link carries
  W copies at --gbytes-per-s.
- Stage 01 derives its buckets (8M listens each) as tasks reading shared storage; its scan, encode
  and write stay on the client and grow with the listens.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
FAMILIES = ("nb", "lr", "rf", "lgbm", "als")
LISTENS_PER_BUCKET = 8_000_000
CLIENT_STEPS = ("read", "write", "plots", "ranking als")


def _json(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"error: {path}: not found (run the benchmark that writes it first)")
    return json.loads(path.read_text())


def stage06(timings: dict, fits: dict, groups: int, bytes_per_worker: float, rate: float, workers: int,
            validate_rows: dict | None = None, retrained: int | None = None) -> float:
    """Stage 06 on W workers: the client's steps as measured, every other step spread over the
    workers, `retrained` groups per family (all `groups` when None) retrained at stage 04's fit."""
    total = sum(timings.get(s, 0.0) for s in CLIENT_STEPS)
    for f in FAMILIES:
        total += timings.get(f"loo {f}", 0.0) / workers + timings.get(f"groups {f}", 0.0) / workers
        rows = (validate_rows or {}).get(f)
        v = timings.get(f"validate {f}", 0.0)
        total += v / workers if not rows else math.ceil(rows / workers) * v / rows
        total += math.ceil((groups if retrained is None else retrained) / workers) * fits[f]
    return total + workers * bytes_per_worker / (rate * 1e9)


def stage01(timings: dict, listens: float, target: float, workers: int) -> float:
    """Stage 01 on W workers at `target` listens, from a one-machine run at `listens`."""
    buckets = math.ceil(listens / LISTENS_PER_BUCKET)
    per_bucket = timings["derive events (streaming, bucketed)"] / buckets
    client = (timings["total"] - timings["derive events (streaming, bucketed)"]) * target / listens
    return client + math.ceil(target / LISTENS_PER_BUCKET / workers) * per_bucket


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kkbox-run", type=Path, required=True, help="output folder of the kkbox record's run")
    ap.add_argument("--workers", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--gbytes-per-s", type=float, default=1.25, help="the client's link (10 Gbit/s: 1.25)")
    ap.add_argument("--listens", type=float, default=1e9, help="stage 01's projected log length")
    args = ap.parse_args(argv)

    kk = _json(RESULTS / "kkbox.json")
    fits = {f: kk["bare_fits"][f]["stage_04_fit_s"] for f in FAMILIES}
    timings = _json(args.kkbox_run / "06_influence" / "manifest.json")["timings_s"]
    groups = _json(args.kkbox_run / "06_influence" / "validation.json")["groups"][FAMILIES[0]]["groups"]
    proof = _json(RESULTS / "kkbox-fullsize-proof.json")
    proof_rows = 30
    proof_timings = {f"validate {f}": proof["quality"]["influence"][f]["validate_seconds"] for f in FAMILIES}
    proof_timings["read"] = proof["steps"]["06_influence"]["wall_s"] - sum(proof_timings.values())
    dask = _json(RESULTS / "small-dask2.json")
    engine = dask["steps"]["06_influence"]["engine"]
    train_rows = {"small": dask["steps"]["06_influence"]["rows"], "kkbox": kk["steps"]["06_influence"]["rows"]}
    per_worker = engine["shared_bytes"] / len(engine["workers"]) * train_rows["kkbox"] / train_rows["small"]
    scale = _json(RESULTS / "listens_scale.json")["results"]["listenbrainz"]["stage01"]

    rows = {
        f"06 at kkbox, all {groups} groups per family retrained": [
            stage06(timings, fits, groups, per_worker, args.gbytes_per_s, w) for w in args.workers],
        "06 at kkbox, the same without the transfers": [
            stage06(timings, fits, groups, 0.0, args.gbytes_per_s, w) for w in args.workers],
        f"06 fullsize-proof ({proof_rows} rows per family, 5 groups retrained; its other steps on the client)": [
            stage06(proof_timings, fits, groups, per_worker, args.gbytes_per_s, w,
                    dict.fromkeys(FAMILIES, proof_rows), 5) for w in args.workers],
        f"01 on {args.listens:,.0f} listens": [stage01(scale["timings_s"], scale["listens"], args.listens, w)
                                              for w in args.workers],
    }
    one = stage06(timings, fits, groups, 0.0, args.gbytes_per_s, 1)
    print(f"kkbox: {train_rows['kkbox']:,} training rows; stage 04 fits (s): "
          + ", ".join(f"{f} {fits[f]:.0f}" for f in FAMILIES)
          + f"; shared objects per worker {per_worker / 1e9:.0f} GB (small-dask2: "
          f"{engine['shared_bytes'] / len(engine['workers']) / 1e9:.2f} GB per worker at {train_rows['small']:,} rows);"
          f" 06 with every group retrained on one machine: {one:,.0f} s\n")
    print("| workload | " + " | ".join(f"{w} workers, s" for w in args.workers) + " |")
    print("|---|" + "---:|" * len(args.workers))
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join(f"{v:,.0f}" for v in values) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
