#!/usr/bin/env python3
"""Stage 01 on generated listen logs of growing size: wall/CPU seconds, peak RSS and rows/s.

    nice -n 5 .venv/bin/python bench/listens_scale.py /tmp/listens_scale               # m18, m60, listenbrainz
    nice -n 5 .venv/bin/python bench/listens_scale.py /tmp/listens_scale --presets m18

For each preset the log is generated under FOLDER/<preset>/ (reused when FOLDER/<preset>/source.json
says it is that preset, format and seed), then `01_preprocess.py` runs on it as its own process into
FOLDER/<preset>-run/. Wall and CPU seconds and peak RSS come from the OS (os.wait4 rusage of that
process, as bench/benchmark.py measures); the machine's load average is recorded before and after,
since the machine may be shared. Results accumulate in bench/results/listens_scale.json (`results`: the latest run per
preset; `history`: every run) and the table bench/results/listens_scale.md. Keep FOLDER outside
the repository: the 180M-listen log (preset listenbrainz) is ~5 GB of parquet.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
PRESETS = ("m18", "m60", "listenbrainz")
TARGET = {"wall_s": 600, "peak_rss_gb": 8}  # the target for 180M listens (preset listenbrainz)


def run_process(cmd: list[str], log_path: Path) -> dict:
    """bench/benchmark.py's run_process, with the machine's load average before and after."""
    from bench.benchmark import run_process as measured

    load_before = os.getloadavg()
    out = measured(cmd, log_path)
    return {**out, "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()], "log": str(log_path)}


def ensure_log(folder: Path, preset: str, fmt: str, seed: int) -> dict | None:
    """Generate the preset's log unless a matching one is there; the generation's own figures or None."""
    out = folder / preset
    marker = out / "source.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("format") == fmt and info.get("seed") == [seed, 14] and info.get("preset_name", preset) == preset:
            return None
    cmd = [sys.executable, "-m", "musicrec.synthetic.listens", "--preset", preset, "--format", fmt,
           "--out", str(out), "--seed", str(seed)]
    res = run_process(cmd, folder / f"{preset}-generate.log")
    if res["exit_code"] != 0:
        raise SystemExit(f"generating {preset} failed: see {res['log']}")
    info = json.loads(marker.read_text())
    info["preset_name"] = preset
    marker.write_text(json.dumps(info, indent=2) + "\n")
    return {**res, "command": " ".join(cmd)}


def run_stage01(folder: Path, preset: str, fmt: str, extra: list[str]) -> dict:
    data = folder / f"{preset}-run"
    shutil.rmtree(data, ignore_errors=True)
    cmd = [sys.executable, "01_preprocess.py", "--config", str(REPO / "config.yaml"),
           "--set", "data.source=listens", "--set", f"data.listens.format={fmt}",
           "--set", f"data.listens.path={folder / preset / 'listens'}", "--set", f"paths.data={data}", *extra]
    res = run_process(cmd, folder / f"{preset}-01_preprocess.log")
    res["command"] = " ".join(cmd)
    if res["exit_code"] != 0:
        return res
    q = json.loads((data / "01_preprocess" / "quality.json").read_text())
    m = json.loads((data / "01_preprocess" / "manifest.json").read_text())
    c = q["listens"]
    res |= {"listens": c["in"], "events": c["events"], "repeats": c["repeats"], "unlabellable": c["unlabellable"],
            "rejected": c["rejected"], "users": q["distinct"]["users"], "songs": q["distinct"]["songs"],
            "rows_per_s": round(c["in"] / res["wall_s"]), "timings_s": m["timings_s"],
            "truth_label_equals_target": q.get("synthetic_truth", {}).get("label_equals_target")}
    return res


def machine() -> dict:
    import polars

    mem = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "memory_gb": round(mem / 1024**2, 1), "python": platform.python_version(),
            "polars": polars.__version__, "commit": commit, "nice": os.nice(0)}


def table(results: dict) -> str:
    rows = ["| preset | listens | events | wall s | CPU s | peak RSS GB | rows/s | load avg before → after (1 min) "
            "| generation wall s / peak GB |",
            "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for preset in sorted(results, key=lambda p: results[p]["stage01"].get("listens", 0)):
        r = results[preset]["stage01"]
        g = results[preset].get("generate")
        gen = f"{g['wall_s']:.0f} / {g['peak_rss_gb']:.1f}" if g else "reused"
        if r.get("exit_code"):
            rows.append(f"| {preset} | | | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {r['peak_rss_gb']:.2f} | | "
                        f"{r['load_before'][0]} → {r['load_after'][0]} | failed (exit {r['exit_code']}) |")
            continue
        rows.append(f"| {preset} | {r['listens']:,} | {r['events']:,} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | "
                    f"{r['peak_rss_gb']:.2f} | {r['rows_per_s']:,} | {r['load_before'][0]} → {r['load_after'][0]} | {gen} |")
    return "\n".join(rows) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", help="where the generated logs and stage-01 outputs go (outside the repo)")
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    ap.add_argument("--format", default="listenbrainz", choices=("listenbrainz", "lastfm1k", "table"))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--set", action="append", default=[], help="extra config override for stage 01")
    a = ap.parse_args(argv)
    folder = Path(a.folder).resolve()
    if folder == REPO or REPO in folder.parents:
        raise SystemExit("put FOLDER outside the repository (the logs are large)")
    folder.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "listens_scale.json"
    doc = json.loads(path.read_text()) if path.is_file() else {"results": {}}
    for preset in a.presets:
        host = machine()  # before the run: the commit that runs, not one made meanwhile
        gen = ensure_log(folder, preset, a.format, a.seed)
        extra = [x for s in a.set for x in ("--set", s)]
        res = run_stage01(folder, preset, a.format, extra)
        entry = {"preset": preset, "format": a.format, "seed": a.seed, "generate": gen, "stage01": res,
                 "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": host}
        doc["results"][preset] = entry  # the latest run per preset (the table)
        doc.setdefault("history", []).append(entry)  # every run, in order
        doc["target_listenbrainz"] = TARGET
        path.write_text(json.dumps(doc, indent=2) + "\n")
        (RESULTS / "listens_scale.md").write_text(table(doc["results"]))
        print(f"{preset}: " + json.dumps({k: res.get(k) for k in ("listens", "events", "wall_s", "cpu_s",
                                                                    "peak_rss_gb", "rows_per_s", "load_before",
                                                                    "load_after", "exit_code")}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
