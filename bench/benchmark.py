#!/usr/bin/env python3
"""Benchmark the pipeline at a preset: wall/CPU seconds and peak RSS of every stage, quality figures,
and naive leave-one-out retraining against the influence estimators.

    .venv/bin/python bench/benchmark.py --preset small
    .venv/bin/python bench/benchmark.py --preset small --profile proof
    .venv/bin/python bench/benchmark.py --preset small --profile noise
    .venv/bin/python bench/benchmark.py --preset kkbox --naive-seconds 120
    .venv/bin/python bench/benchmark.py --preset kkbox --profile fullsize-proof --from 06_influence --naive-seconds 0
    .venv/bin/python bench/benchmark.py --preset listens-m18 --naive-seconds 0
    .venv/bin/python bench/benchmark.py --preset listens-small --engine dask --workers 2 --naive-seconds 0

Presets tiny, small and kkbox generate KKBOX-format data; listens-<preset> generates a listening log
(ListenBrainz dump parquet, musicrec.synthetic.listens) and runs all six stages on the events stage
01 derives from it (listens-m18: ~21.6M listens, ~7.4M events, KKBOX-sized, held to the kkbox budgets).

Profiles: `default` runs the stages with config.yaml as it is (stage 06's default validation is
small, its intervals show it); `proof` runs stage 06's full validation (PROOF: >= 200 library
refits for nb and lr, >= 50 full retrainings under two seeds for rf, lgbm and als, held-out
removal curves, random ablations and every meaningful group) and is recorded as
bench/results/<preset>-proof.json; `noise` flips 10% of the training labels (split.train_label_noise,
clean test labels) and runs the held-out removal curves of lr and lgbm, one-shot and iterative, so
that there are harmful rows to find; `fullsize-proof` (for kkbox and listens-m18) validates 30 rows
per model with the checks that stay cheap at millions of rows (FULLSIZE_PROOF); `groups` predicts and
retrains every group and random ablation of the proof, without the row-level validation (GROUPS).

Each stage runs as its own process (as users run it) into a separate output folder; its peak RSS
and CPU time come from the OS (os.wait4 rusage of that process). The result is written to
bench/results/<preset>.json and BENCHMARKS.md is regenerated from every result file there.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from records import quality, write_markdown

REPO = Path(__file__).resolve().parents[1]

STAGES = ("01_preprocess", "02_split", "03_features", "04_train", "05_predict", "06_influence")
PROOF = [  # stage 06's full validation (see the module docstring)
    "influence.validate.rows={nb: 200, lr: 200, rf: 50, lgbm: 50, als: 50}",
    "influence.validate.full_retrain=true",
    "influence.validate.removal_fractions=[0.01, 0.02, 0.05, 0.1, 0.2]",
    "influence.ablation.repeats=3",
    "influence.groups.enabled=true",
    "influence.groups.retrain=null",
    "influence.groups.ceiling=true",
]
NOISE = [  # flipped training labels (clean test labels): held-out removal of harmful rows, one-shot and
    # iterative (re-estimated every 0.5% of the rows), for the two families the issue names (stage 06:
    # 8 min at small on 2 idle cores)
    "split.train_label_noise=0.1",
    "influence.models=[lr, lgbm]",
    "influence.validate.rows={nb: 0, lr: 0, rf: 0, lgbm: 0, als: 0}",
    "influence.validate.removal_fractions=[0.01, 0.02, 0.05]",
    "influence.validate.removal_step=0.005",
    "influence.validate.removal_set_block=0.005",
    "influence.validate.removal_random_repeats=5",
]
FULLSIZE_PROOF = [  # the proof at KKBOX size: 30 rows per model by the checks that stay cheap at millions of
    # rows (library refits for nb and lr, fixed-structure refits for rf, lgbm and als; no full retraining
    # of the trees, no removal curves), and every group predicted with 5 per family retrained
    "influence.validate.rows={nb: 30, lr: 30, rf: 30, lgbm: 30, als: 30}",
    "influence.validate.full_retrain=false",
    "influence.validate.removal_fractions=[]",
    "influence.ablation.repeats=0",
    "influence.groups.retrain=5",          # and 5 groups per family retrained as the check, whatever they cost
    "influence.groups.seconds=null",
]
GROUPS = [  # the proof's groups and random ablations, every one retrained, without the row-level validation
    "influence.validate.rows={nb: 0, lr: 0, rf: 0, lgbm: 0, als: 0}",
    "influence.ablation.repeats=3",
    "influence.groups.enabled=true",
    "influence.groups.retrain=null",
    "influence.groups.ceiling=true",
]
PROFILES = {"default": [], "proof": PROOF, "noise": NOISE, "fullsize-proof": FULLSIZE_PROOF, "groups": GROUPS}
LISTEN_PRESETS = ("listens-tiny", "listens-small", "listens-m18")
GENERATE = ("from musicrec import config; from musicrec.readers.synthetic import ensure_synthetic; "
            "ensure_synthetic(config.load(sys.argv[1], sys.argv[2:]))")


def run_process(cmd: list[str], log_path: Path) -> dict:
    """Run one command; wall and CPU seconds and peak RSS of that process tree from the OS."""
    load = round(os.getloadavg()[0], 2)   # what else ran: a load near the core count halves a stage's speed
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_gb": round(usage.ru_maxrss / 1024**2, 3), "exit_code": os.waitstatus_to_exitcode(status),
            "load_before": load}


def fresh_memory_seconds_per_gb(gb: float = 1.0, idle: float = 10.0) -> float:
    """Seconds per GB to touch newly allocated memory `idle` seconds after the same amount was
    freed. Some virtual machines hand freed memory back to their host, and its next first touch
    then costs seconds per GB (measured on this project's 2-core VM: 4.7 s/GB, 0.15 s/GB when
    reused at once); every stage that allocates GB-sized temporaries pays it, so records from
    different machines are compared with this beside them."""
    import numpy as np

    n = int(gb * 2**30 / 8)
    np.ones(n)                      # allocated, touched and freed
    time.sleep(idle)
    t0 = time.perf_counter()
    np.ones(n)
    return round((time.perf_counter() - t0) / gb, 2)


def fresh_memory_in_child() -> float:
    """fresh_memory_seconds_per_gb in a process of its own: a child started after this process touched
    a GB would inherit that high-water mark as its own peak RSS (Linux carries it across fork and exec)."""
    code = "import sys; sys.path.insert(0, sys.argv[1]); from benchmark import fresh_memory_seconds_per_gb as f; print(f())"
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], capture_output=True, text=True,
                          check=True)
    return float(done.stdout.split()[-1])


def manifest(out: Path, stage: str) -> dict:
    path = out / stage / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def engine_figures(info: dict) -> dict:
    """What a stage's cluster did (its manifest's info.engine, musicrec.engine_usage): tasks, their compute
    seconds, bytes moved, and per worker its CPU seconds and peak RSS. The step's own wall/CPU/peak are
    the stage process's from wait4, which on a LocalCluster also counts the CPU of the worker processes
    it started and waited for (the peak is the largest single process's)."""
    keys = ("cluster", "wall_s", "tasks", "tasks_erred", "task_compute_s", "task_transfer_s", "output_bytes",
            "shared_bytes", "worker_sent_bytes")
    workers = info.get("workers", {})
    return {**{k: info.get(k) for k in keys}, "workers": workers,
            "workers_cpu_s": round(sum(w["cpu_s"] for w in workers.values()), 2),
            "workers_peak_rss_gb": max((w["peak_rss_gb"] for w in workers.values()), default=None)}


MAIN_TABLE = {"01_preprocess": "interactions.parquet", "05_predict": "predictions.parquet", "06_influence": "loo.parquet"}


def stage_rows(rows: dict, step: str) -> int | str:
    """The rows a stage is about: its main table's, or the sum over its split parts (02, 03)."""
    if step in MAIN_TABLE:
        return rows.get(MAIN_TABLE[step], "")
    return sum(rows.values()) or ""


def naive_versus_ours(out: Path, seconds: float, models: list[str]) -> dict:
    """LOO by retraining once per removed row (time-boxed) against our estimators for every row."""
    import numpy as np

    from musicrec import config
    from musicrec.families import make_model
    from musicrec.models import load_feature_set
    from musicrec.outputs.influence import Validation
    from musicrec.rng import model_seed

    cfg = config.load(out / "bench_config.yaml")
    spec = json.loads((out / "03_features" / "features.json").read_text())
    data = {n: load_feature_set(out / "03_features" / f"features_{n}.parquet", spec) for n in ("train", "valid", "test")}
    ours = Validation.read(out / "06_influence" / "validation.json").loo_seconds
    rng = np.random.default_rng(0)
    n = len(data["train"])
    result = {}
    for name in models:
        t0 = time.perf_counter()
        done = 0
        while time.perf_counter() - t0 < seconds:
            w = np.ones(n)
            w[rng.integers(n)] = 0.0
            m = make_model(name, cfg["train"], model_seed(cfg, name)).fit(data["train"], data["valid"], sample_weight=w)
            m.predict_logit(data["test"])
            done += 1
        naive_rate = done / (time.perf_counter() - t0)
        our_rate = n / ours[name] if ours.get(name) else None
        result[name] = {"naive_rows_per_s": round(naive_rate, 4), "naive_retrains": done,
                        "ours_rows_per_s": None if our_rate is None else round(our_rate, 1),
                        "speedup": None if our_rate is None else round(our_rate / naive_rate, 1)}
        print(f"naive {name}: {done} retrains, {naive_rate:.3g} rows/s; ours {our_rate:.3g} rows/s", flush=True)
    return result


def machine() -> str:
    """Architecture, CPU model, cores and memory: records made on different CPUs are not comparable."""
    cpuinfo = Path("/proc/cpuinfo")
    model = next((line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.is_file()
                  else []) if line.startswith("model name")), platform.processor() or "unknown CPU")
    return (f"{platform.machine()} {model}, {os.cpu_count()} cores, "
            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1024**3:.0f} GB RAM, {platform.system()}")


def versions() -> dict:
    from musicrec.manifest import library_versions

    return library_versions()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=("tiny", "small", "kkbox", *LISTEN_PRESETS), default="small")
    ap.add_argument("--profile", choices=tuple(PROFILES), default="default",
                    help="default: config.yaml as it is; proof: stage 06's full validation; noise: 10%% flipped training "
                         "labels with held-out removal curves; fullsize-proof: 30 rows per model by the checks that "
                         "stay cheap at KKBOX size; groups: the proof's groups and ablations, all retrained")
    ap.add_argument("--out", type=Path, help="output folder (default bench/out/<preset>)")
    ap.add_argument("--naive-seconds", type=float, default=60.0, help="time box per model for naive LOO (0: skip)")
    ap.add_argument("--from", dest="start", default="generate", choices=("generate", *STAGES),
                    help="first step to run (earlier outputs in --out are reused)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="config override passed to every stage")
    ap.add_argument("--bots", type=float, default=0.0,
                    help="listens presets: share of generated users who are bots (Preset.bot_share)")
    ap.add_argument("--bot-tracks", type=int, default=0,
                    help="with --bots: promoted tracks the bots loop, a stream farm (Preset.bot_tracks)")
    ap.add_argument("--bare-fits", action="store_true",
                    help="after the stages, time each family's bare library fit on 04's arrays (bench/bare_fits.py)")
    ap.add_argument("--engine", choices=("local", "dask"), default="local",
                    help="dask: engine.kind=dask and train.lgbm.engine=dask for every stage (01's buckets, 04's lgbm on "
                         "a LocalCluster); each stage's record adds what its workers did (manifest info.engine)")
    ap.add_argument("--workers", type=int, default=2, help="with --engine dask: worker processes (engine.workers)")
    ap.add_argument("--tag", help="name of the record: bench/results/<tag>.json (default <preset>[-<profile>][-dask<N>])")
    ap.add_argument("--results", type=Path, default=REPO / "bench" / "results", help="folder of result JSONs")
    ap.add_argument("--markdown", type=Path, default=REPO / "BENCHMARKS.md", help="table regenerated from them")
    args = ap.parse_args(argv)
    tag = args.tag or (args.preset if args.profile == "default" else f"{args.preset}-{args.profile}")
    engine = ([] if args.engine == "local" else
              ["engine.kind=dask", f"engine.workers={args.workers}", "train.lgbm.engine=dask"])
    if engine and not args.tag:
        tag += f"-dask{args.workers}"
    out = (args.out or REPO / "bench" / "out" / args.preset).resolve()
    out.mkdir(parents=True, exist_ok=True)
    listens = args.preset in LISTEN_PRESETS
    if args.bots and not (listens and 0 < args.bots < 1):
        ap.error("--bots is a share of users (0 < share < 1) of a generated listening log (a listens-* preset)")
    source = (["data.source=listens", "data.listens.format=listenbrainz", f"data.listens.path={out / 'log' / 'listens'}"]
              if listens else ["data.source=synthetic", f"data.synthetic.preset={args.preset}"])
    sets = [f"paths.data={out}", *source, *PROFILES[args.profile], *engine, *args.overrides]
    from musicrec import config

    cfg = config.load(REPO / "config.yaml", sets)
    import yaml

    (out / "bench_config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    py = sys.executable
    steps = ["generate", *STAGES]
    steps = steps[steps.index(args.start):]
    partial = out / "bench_partial.json"
    record: dict = {"preset": args.preset, "profile": args.profile, "steps": {},
                    "engine": {"kind": args.engine, **({"workers": args.workers} if engine else {})},
                    "fresh_memory_s_per_gb": fresh_memory_in_child()}
    if args.start != "generate" and partial.is_file():
        # resuming: keep the measurements of the steps that are not rerun
        earlier = json.loads(partial.read_text())["steps"]
        record["steps"] = {k: v for k, v in earlier.items() if k not in steps}
    for step in steps:
        if step == "generate" and listens:
            cmd = [py, "-m", "musicrec.synthetic.listens", "--preset", args.preset.removeprefix("listens-"),
                   "--format", "listenbrainz", "--seed", str(cfg["seed"]), "--out", str(out / "log"),
                   *(["--bots", str(args.bots), "--bot-tracks", str(args.bot_tracks)] if args.bots else [])]
        elif step == "generate":
            cmd = [py, "-c", "import sys; " + GENERATE, str(out / "bench_config.yaml")]
        else:
            cmd = [py, f"{step}.py", "--config", str(out / "bench_config.yaml")]  # progress goes to the step log
        print(f"== {step}", flush=True)
        s = run_process(cmd, out / f"{step}.log")
        if step != "generate":
            m = manifest(out, step)
            s["rows"] = stage_rows(m.get("rows", {}), step)
            if "engine" in m.get("info", {}):
                s["engine"] = engine_figures(m["info"]["engine"])
        record["steps"][step] = s
        partial.write_text(json.dumps(record, indent=2) + "\n")
        print(f"   {s}", flush=True)
        if s["exit_code"] != 0:
            print(f"{step} failed: see {out / (step + '.log')}", file=sys.stderr)
            return 1
    record["quality"] = quality(out)
    if args.bare_fits and (out / "04_train" / "metrics.json").is_file():
        from bare_fits import bare_fits

        record["bare_fits"] = bare_fits(out)
    if args.naive_seconds > 0 and (out / "06_influence" / "validation.json").is_file():
        record["naive"] = naive_versus_ours(out, args.naive_seconds, cfg["influence"]["models"])
    record.update(
        machine=machine(),
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        command=" ".join(["bench/benchmark.py", *(argv if argv is not None else sys.argv[1:])]),
        versions=versions(),
    )
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{tag}.json").write_text(json.dumps(record, indent=2) + "\n")
    write_markdown(args.results, args.markdown)
    print(f"wrote {args.results / (tag + '.json')} and {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
