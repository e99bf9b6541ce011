#!/usr/bin/env python3
"""Benchmark the pipeline at a preset: wall/CPU seconds and peak RSS of every stage, quality figures,
and naive leave-one-out retraining against the influence estimators.

    .venv/bin/python bench/benchmark.py --preset small
    .venv/bin/python bench/benchmark.py --preset small --profile proof
    .venv/bin/python bench/benchmark.py --preset small --profile noise
    .venv/bin/python bench/benchmark.py --preset kkbox --naive-seconds 120
    .venv/bin/python bench/benchmark.py --preset kkbox --profile fullsize-proof --from 06_influence --naive-seconds 0
    .venv/bin/python bench/benchmark.py --preset listens-m18 --naive-seconds 0

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
per model with the checks that stay cheap at millions of rows (FULLSIZE_PROOF).

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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STAGES = ("01_preprocess", "02_split", "03_features", "04_train", "05_predict", "06_influence")
BUDGETS = {  # the kkbox budgets of the benchmark issue: (wall seconds, peak RSS GB)
    "generate": (180, 8), "01_preprocess": (90, 8), "02_split": (30, 4), "03_features": (240, 10),
    "04_train": (480, 10), "05_predict": (120, 8), "06_influence": (600, 12),
}
PROOF = [  # stage 06's full validation (see the module docstring)
    "influence.validate.rows={nb: 200, lr: 200, rf: 50, lgbm: 50, als: 50}",
    "influence.validate.full_retrain=true",
    "influence.validate.removal_fractions=[0.01, 0.02, 0.05, 0.1, 0.2]",
    "influence.ablation.repeats=3",
    "influence.groups.enabled=true",
]
NOISE = [  # flipped training labels (clean test labels): held-out removal of harmful rows, one-shot and
    # iterative (re-estimated every 0.5% of the rows), for the two families the issue names (stage 06:
    # 8 min at small on 2 idle cores)
    "split.train_label_noise=0.1",
    "influence.models=[lr, lgbm]",
    "influence.validate.rows={nb: 0, lr: 0, rf: 0, lgbm: 0, als: 0}",
    "influence.validate.removal_fractions=[0.01, 0.02, 0.05]",
    "influence.validate.removal_step=0.005",
]
FULLSIZE_PROOF = [  # the proof at KKBOX size: 30 rows per model by the checks that stay cheap at millions of
    # rows (library refits for nb and lr, fixed-structure refits for rf, lgbm and als; no full retraining
    # of the trees, no removal curves or groups): ~40 min of stage 06 at kkbox on 2 cores
    "influence.validate.rows={nb: 30, lr: 30, rf: 30, lgbm: 30, als: 30}",
    "influence.validate.full_retrain=false",
    "influence.validate.removal_fractions=[]",
    "influence.ablation.repeats=0",
    "influence.groups.enabled=false",
]
PROFILES = {"default": [], "proof": PROOF, "noise": NOISE, "fullsize-proof": FULLSIZE_PROOF}
RANKING_COLUMNS = ("precision@10", "ndcg@10", "map@10", "hit_rate@10", "coverage", "users")
LISTEN_PRESETS = ("listens-tiny", "listens-small", "listens-m18")
SIZED_LIKE_KKBOX = ("kkbox", "listens-m18")  # checked against BUDGETS
GENERATE = ("from musicrec import config; from musicrec.readers.synthetic import ensure_synthetic; "
            "ensure_synthetic(config.load(sys.argv[1], sys.argv[2:]))")


def run_process(cmd: list[str], log_path: Path) -> dict:
    """Run one command; wall and CPU seconds and peak RSS of that process tree from the OS."""
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_gb": round(usage.ru_maxrss / 1024**2, 3), "exit_code": os.waitstatus_to_exitcode(status)}


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


def manifest(out: Path, stage: str) -> dict:
    path = out / stage / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


MAIN_TABLE = {"01_preprocess": "interactions.parquet", "05_predict": "predictions.parquet", "06_influence": "loo.parquet"}


def stage_rows(rows: dict, step: str) -> int | str:
    """The rows a stage is about: its main table's, or the sum over its split parts (02, 03)."""
    if step in MAIN_TABLE:
        return rows.get(MAIN_TABLE[step], "")
    return sum(rows.values()) or ""


def quality(out: Path) -> dict:
    """The figures that say the run is not just fast but right."""
    q: dict = {}
    pm = out / "05_predict" / "metrics.json"
    if pm.is_file():
        m = json.loads(pm.read_text())
        q["test_auc"] = {k: round(v["auc"], 4) for k, v in m["models"].items() if v["auc"] is not None}
        if "oracle" in m:
            q["oracle_auc"] = round(m["oracle"]["auc"], 4)
        if m.get("ranking"):
            q["ranking"] = {k: {c: v.get(c) for c in RANKING_COLUMNS} for k, v in m["ranking"].items()}
    vm = out / "06_influence" / "validation.json"
    if vm.is_file():
        v = json.loads(vm.read_text())
        q["loo_seconds"] = v["loo_seconds"]
        q["influence"] = {name: influence_figures(r, v.get("groups", {}).get(name)) for name, r in v["models"].items()}
        if v.get("label_noise"):
            q["label_noise"] = {k: v["label_noise"][k] for k in ("source", "flipped", "share")}
            oracle = v["label_noise"].get("oracle")
            q["label_noise"]["oracle"] = _detector(oracle) if oracle else None
    return q


def _corr(c: dict | None) -> dict | None:
    return None if not c else {"value": c.get("value"), "n": c.get("n"), "ci95": c.get("ci95")}


def _detector(d: dict) -> dict:
    return {"lift_5pct": _corr(d["lift_5pct"]), "lift_10pct": _corr(d["lift_10pct"]), "pr_auc": d.get("pr_auc")}


def influence_figures(r: dict, groups: dict | None) -> dict:
    """One model's figures from validation.json, each with its n and interval."""
    exact = r.get("exact") or {}
    own = r.get("closed_form_vs_library") or r.get("newton_step_vs_library") or {}
    fixed = r.get("fixed_structure") or {}
    ceil = r.get("noise_ceiling")
    out = {"reference": r.get("reference"), "spearman_vs_library": _corr(exact.get("spearman")),
           "pearson_vs_library": _corr(exact.get("pearson")),
           "own_model_vs_library_max_rel_err": own.get("max_rel_err"),
           "fixed_structure_estimate_vs_refit": _corr((fixed.get("estimate_vs_refit") or {}).get("spearman")),
           "fixed_structure_max_rel_err": fixed.get("exact_path_vs_refit_max_rel_err"),
           "noise_ceiling": None if ceil is None else {**(_corr(ceil) or {}), "measurable": ceil.get("measurable")},
           "share_of_ceiling": r.get("share_of_ceiling"), "validate_seconds": r.get("seconds")}
    removal = r.get("removal") or {}
    out["removal_5pct_heldout"] = {k: removal[k]["0.05"] for k in ("harmful", "helpful", "random")
                                   if "0.05" in removal.get(k, {})}
    it = removal.get("harmful_iterative") or {}
    if "0.05" in it.get("mean", {}):
        out["removal_5pct_heldout"]["harmful_iterative"] = {
            "mean": it["mean"]["0.05"], **{f"scored_on_{h}": it[f"scored_on_{h}"]["0.05"] for h in ("A", "B")}}
    if r.get("label_noise"):
        out["label_noise"] = {k: _detector(d) for k, d in r["label_noise"].items() if isinstance(d, dict)}
    if groups:
        out["groups"] = {k: {h: {m: _corr(c) for m, c in v.items()} if h != "mean" else v
                             for h, v in groups[k].items()} for k in ("predicted", "sum_of_loo") if k in groups}
        out["groups"]["predictor"] = groups.get("predictor")
        out["groups"]["trust"] = groups.get("trust")
    return out


def naive_versus_ours(out: Path, seconds: float, models: list[str]) -> dict:
    """LOO by retraining once per removed row (time-boxed) against our estimators for every row."""
    import numpy as np

    from musicrec import config
    from musicrec.influence.losses import logit
    from musicrec.models import load_feature_set, make_model
    from musicrec.rng import model_seed

    cfg = config.load(out / "bench_config.yaml")
    spec = json.loads((out / "03_features" / "features.json").read_text())
    data = {n: load_feature_set(out / "03_features" / f"features_{n}.parquet", spec) for n in ("train", "valid", "test")}
    ours = json.loads((out / "06_influence" / "validation.json").read_text())["loo_seconds"]
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
            logit(m.predict_proba(data["test"])[:, 1])
            done += 1
        naive_rate = done / (time.perf_counter() - t0)
        our_rate = n / ours[name] if ours.get(name) else None
        result[name] = {"naive_rows_per_s": round(naive_rate, 4), "naive_retrains": done,
                        "ours_rows_per_s": None if our_rate is None else round(our_rate, 1),
                        "speedup": None if our_rate is None else round(our_rate / naive_rate, 1)}
        print(f"naive {name}: {done} retrains, {naive_rate:.3g} rows/s; ours {our_rate:.3g} rows/s", flush=True)
    return result


def versions() -> dict:
    from musicrec.manifest import library_versions

    return library_versions()


def write_markdown(results_dir: Path, path: Path) -> None:
    """BENCHMARKS.md from every result file: one table per preset."""
    lines = ["# Benchmarks", "",
             "Regenerated by `bench/benchmark.py` from `bench/results/*.json`; do not edit by hand.", ""]
    for res_path in sorted(results_dir.glob("*.json")):
        r = json.loads(res_path.read_text())
        if res_path.stem == "listens_scale":   # bench/listens_scale.py keeps its own table beside its JSON
            lines += ["## Stage 01 on listening logs, out of core (`bench/listens_scale.py`)", "",
                      "Synthetic ListenBrainz-format logs; stage 01 as its own process on this machine (2 cores); "
                      "the load average shows what else ran.", "",
                      (res_path.with_suffix(".md")).read_text().strip(), ""]
            continue
        if r.get("kind") == "peer":
            lines += _peer_lines(r)
            continue
        profile = r.get("profile", "default")
        lines += [f"## preset `{r['preset']}`" + ("" if profile == "default" else f", profile `{profile}`"), "",
                  f"- machine: {r['machine']}", f"- date: {r['date']}", f"- command: `{r['command']}`",
                  *([f"- fresh memory: {r['fresh_memory_s_per_gb']} s per GB first touched after 10 s freed "
                     "(fresh_memory_seconds_per_gb: what this machine charges for GB-sized temporaries)"]
                    if r.get("fresh_memory_s_per_gb") is not None else []),
                  *([f"- note: {r['note']}"] if r.get("note") else []),
                  "- versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()), ""]
        lines += ["| step | wall s | CPU s | peak RSS GB | rows | budget (kkbox) |", "|---|---|---|---|---|---|"]
        for step, s in r["steps"].items():
            budget = BUDGETS.get(step)
            b = f"≤ {budget[0]} s, ≤ {budget[1]} GB" if budget else ""
            if budget and r["preset"] in SIZED_LIKE_KKBOX:
                ok = s["wall_s"] <= budget[0] and s["peak_rss_gb"] <= budget[1]
                b += " ✓" if ok else " ✗"
            lines.append(f"| {step} | {s['wall_s']} | {s['cpu_s']} | {s['peak_rss_gb']} | {s.get('rows', '')} | {b} |")
        q = r.get("quality", {})
        if q.get("test_auc"):
            lines += ["", "Test AUC: " + ", ".join(f"{k} {v}" for k, v in q["test_auc"].items())
                      + (f"; oracle {q['oracle_auc']}" if "oracle_auc" in q else "")]
        if q.get("ranking"):
            lines += ["", "Ranking of unseen songs for the test users (05's metrics.json `ranking`; means over users):", "",
                      "| ranking model | " + " | ".join(RANKING_COLUMNS) + " |", "|---|" + "---|" * len(RANKING_COLUMNS)]
            for k, v in q["ranking"].items():
                lines.append(f"| {k} | " + " | ".join("–" if v.get(c) is None else f"{v[c]:.4g}" for c in RANKING_COLUMNS)
                             + " |")
        if q.get("influence"):
            lines += _influence_lines(q)
        if r.get("naive"):
            lines += ["", "| model | naive LOO rows/s (retrain per row) | our LOO rows/s | speed-up |", "|---|---|---|---|"]
            for m, v in r["naive"].items():
                up = "–" if v["speedup"] is None else f"{v['speedup']:,.0f}×"
                lines.append(f"| {m} | {v['naive_rows_per_s']} | {v['ours_rows_per_s']} | {up} |")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def _ci(c: dict | None, digits=3) -> str:
    """value [lo, hi] (n) of a figure with interval, or – where it was not measured."""
    if not c or c.get("value") is None:
        return "–"
    ci = c.get("ci95")
    text = _fmt(c["value"], digits)
    if ci:
        text += f" [{_fmt(ci[0], 2)}, {_fmt(ci[1], 2)}]"
    return text + (f" (n={c['n']})" if c.get("n") is not None else "")


def _legacy_influence_lines(q: dict) -> list[str]:
    """A record written before validation.json carried intervals (kept as it was measured)."""
    lines = ["", "Recorded before the issue-12 validation (no intervals, in-sample removal, lr checked against its "
             "own refit): read these as superseded.", "",
             "| model | LOO s (all rows) | Spearman vs exact | n | noise ceiling | share | own removal model vs library: max rel err |",
             "|---|---|---|---|---|---|---|"]
    for m, v in q["influence"].items():
        err = v["fixed_structure_max_rel_err"] if v["fixed_structure_max_rel_err"] is not None else v["closed_form_max_rel_err"]
        lines.append(f"| {m} | {q['loo_seconds'].get(m)} | {_fmt(v['spearman_vs_exact'])} | {v['n']} | "
                     f"{_fmt(v['noise_ceiling'])} | {_fmt(v['share_of_ceiling'])} | {_fmt(err, 2)} |")
    return lines


def _influence_lines(q: dict) -> list[str]:
    if any("spearman_vs_exact" in v for v in q["influence"].values()):
        return _legacy_influence_lines(q)
    lines = ["", "Estimates against the library (scikit-learn refit for nb/lr, full retraining with the saved "
             "model's arguments for rf/lgbm/als); 95% bootstrap intervals in brackets.", "",
             "| model | LOO s (all rows) | Spearman vs library | own removal model vs library: max rel err | "
             "fixed structure vs refit: max rel err | noise ceiling | share of ceiling |",
             "|---|---|---|---|---|---|---|"]
    for m, v in q["influence"].items():
        ceil = v.get("noise_ceiling")
        if m in ("nb", "lr"):
            ceil_txt = "no entry (deterministic)"
        elif ceil is None or ceil.get("value") is None:
            ceil_txt = "not run (needs influence.validate.full_retrain)"
        else:
            ceil_txt = _ci(ceil) + ("" if ceil.get("measurable") else " – not measurable")
        share = v.get("share_of_ceiling")
        share_txt = "–" if share is None else share if isinstance(share, str) else _fmt(share)
        lines.append(f"| {m} | {q['loo_seconds'].get(m)} | {_ci(v['spearman_vs_library'])} | "
                     f"{_fmt(v['own_model_vs_library_max_rel_err'], 2)} | {_fmt(v['fixed_structure_max_rel_err'], 2)} | "
                     f"{ceil_txt} | {share_txt} |")
    if any(v.get("removal_5pct_heldout") for v in q["influence"].values()):
        lines += ["", "Held-out removal of 5% of the training rows (selected on one test half, scored on the other; "
                  "mean of both ways, each half in brackets): change of test log-loss, negative is better.", "",
                  "| model | most harmful | most harmful, iterative | random | most helpful |", "|---|---|---|---|---|"]
        for m, v in q["influence"].items():
            r = v.get("removal_5pct_heldout") or {}
            cell = (lambda c: "–" if c is None else
                    f"{c['mean']['logloss']:+.5f} ({c['scored_on_A']['logloss']:+.5f}, {c['scored_on_B']['logloss']:+.5f})")
            lines.append(f"| {m} | {cell(r.get('harmful'))} | {cell(r.get('harmful_iterative'))} | {cell(r.get('random'))} | "
                         f"{cell(r.get('helpful'))} |")
    if q.get("label_noise"):
        ln = q["label_noise"]
        lines += ["", f"Flipped training labels ({ln['source']}): {ln['flipped']} rows ({ln['share']:.1%}). Lift at 10% "
                  "(share of flipped rows among the 10% ranked most suspect over the overall share) and PR-AUC.", "",
                  "| ranking | " + " | ".join(q["influence"]) + " |", "|---|" + "---|" * len(q["influence"])]
        for k in ("test_loss_influence", "self_influence", "loo_own_loss", "data_oob"):
            cells = []
            for v in q["influence"].values():
                d = (v.get("label_noise") or {}).get(k)
                cells.append("–" if d is None else f"{_ci(d['lift_10pct'], 2)}; PR-AUC {_fmt(d['pr_auc'])}")
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        if ln.get("oracle"):
            o = ln["oracle"]
            lines += ["", f"Oracle (posterior that a label was flipped, from the truth): lift@10% {_ci(o['lift_10pct'], 2)}, "
                      f"lift@5% {_ci(o['lift_5pct'], 2)}, PR-AUC {_fmt(o['pr_auc'])}."]
    if any(v.get("groups") for v in q["influence"].values()):
        lines += ["", "Groups and random ablations: predicted vs retrained change of a test half's log-loss, "
                  "Spearman per half (n groups) with interval.", "",
                  "| model | predictor | half A | half B | sum of LOO, half A | sum of LOO, half B |", "|---|---|---|---|---|---|"]
        for m, v in q["influence"].items():
            g = v.get("groups")
            if not g:
                continue
            p, s = g["predicted"], g.get("sum_of_loo")
            lines.append(f"| {m} | {g['predictor']} | {_ci(p['A']['spearman'])} | {_ci(p['B']['spearman'])} | "
                         f"{_ci(s['A']['spearman']) if s else '(same)'} | {_ci(s['B']['spearman']) if s else '(same)'} |")
        lines += [""] + [f"- {m}: {v['groups']['trust']}" for m, v in q["influence"].items()
                         if (v.get("groups") or {}).get("trust")]
    return lines


def _peer_lines(r: dict) -> list[str]:
    """bench/peer.py's record: every ranking as a detector of flipped training labels."""
    lines = [f"## Mislabel detection beside {r['peer']}: `{r['tag']}`", "",
             f"- date: {r['date']}", f"- command: `{r['command']}`",
             f"- {r['rows']} training rows, {r['flipped']} flipped (split.train_label_noise; clean test labels); "
             f"seconds: {r['seconds_note']}; 1-minute load average before/after the peer: "
             f"{r.get('load_average_1min', 'not recorded')} (2 cores)", "",
             "| ranking | lift@10% [95% CI] | lift@5% | PR-AUC | seconds | rows/s |", "|---|---|---|---|---|---|"]
    for rec in r["all_rows"]:
        lines.append(f"| {rec['ranking']} | {_ci(rec['lift_10pct'], 2)} | {_ci(rec['lift_5pct'], 2)} | "
                     f"{_fmt(rec['pr_auc'])} | {rec['seconds']} | {rec['rows_per_s']:,.0f} |")
    o = r.get("oracle_all_rows")
    if o:
        lines.append(f"| oracle (truth posterior; the ceiling) | {_ci(o['lift_10pct'], 2)} | {_ci(o['lift_5pct'], 2)} | "
                     f"{_fmt(o['pr_auc'])} | – | – |")
    lines += ["", f"On the {r['knn_rows']} training rows KNN-Shapley valued (against {r.get('knn_test_rows', 'all')} "
              "test rows; seeded subsamples; lifts within those training rows):", "",
              "| ranking | lift@10% [95% CI] | PR-AUC | seconds | rows/s |", "|---|---|---|---|---|"]
    for rec in r["knn_rows_side_by_side"]:
        lines.append(f"| {rec['ranking']} | {_ci(rec['lift_10pct'], 2)} | {_fmt(rec['pr_auc'])} | {rec['seconds']} | "
                     f"{rec['rows_per_s']:,.0f} |")
    return lines + [""]


def _fmt(x, digits=3) -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}e}" if abs(x) < 1e-3 and x != 0 else f"{x:.{digits}f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=("tiny", "small", "kkbox", *LISTEN_PRESETS), default="small")
    ap.add_argument("--profile", choices=tuple(PROFILES), default="default",
                    help="default: config.yaml as it is; proof: stage 06's full validation; noise: 10%% flipped training "
                         "labels with held-out removal curves; fullsize-proof: 30 rows per model by the checks that "
                         "stay cheap at KKBOX size")
    ap.add_argument("--out", type=Path, help="output folder (default bench/out/<preset>)")
    ap.add_argument("--naive-seconds", type=float, default=60.0, help="time box per model for naive LOO (0: skip)")
    ap.add_argument("--from", dest="start", default="generate", choices=("generate", *STAGES),
                    help="first step to run (earlier outputs in --out are reused)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="config override passed to every stage")
    ap.add_argument("--results", type=Path, default=REPO / "bench" / "results", help="folder of result JSONs")
    ap.add_argument("--markdown", type=Path, default=REPO / "BENCHMARKS.md", help="table regenerated from them")
    args = ap.parse_args(argv)
    tag = args.preset if args.profile == "default" else f"{args.preset}-{args.profile}"
    out = (args.out or REPO / "bench" / "out" / args.preset).resolve()
    out.mkdir(parents=True, exist_ok=True)
    listens = args.preset in LISTEN_PRESETS
    source = (["data.source=listens", "data.listens.format=listenbrainz", f"data.listens.path={out / 'log' / 'listens'}"]
              if listens else ["data.source=synthetic", f"data.synthetic.preset={args.preset}"])
    sets = [f"paths.data={out}", *source, *PROFILES[args.profile], *args.overrides]
    from musicrec import config

    cfg = config.load(REPO / "config.yaml", sets)
    import yaml

    (out / "bench_config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    py = sys.executable
    steps = ["generate", *STAGES]
    steps = steps[steps.index(args.start):]
    partial = out / "bench_partial.json"
    record: dict = {"preset": args.preset, "profile": args.profile, "steps": {},
                    "fresh_memory_s_per_gb": fresh_memory_seconds_per_gb()}
    if args.start != "generate" and partial.is_file():
        # resuming: keep the measurements of the steps that are not rerun
        earlier = json.loads(partial.read_text())["steps"]
        record["steps"] = {k: v for k, v in earlier.items() if k not in steps}
    for step in steps:
        if step == "generate" and listens:
            cmd = [py, "-m", "musicrec.synthetic.listens", "--preset", args.preset.removeprefix("listens-"),
                   "--format", "listenbrainz", "--seed", str(cfg["seed"]), "--out", str(out / "log")]
        elif step == "generate":
            cmd = [py, "-c", "import sys; " + GENERATE, str(out / "bench_config.yaml")]
        else:
            cmd = [py, f"{step}.py", "--config", str(out / "bench_config.yaml")]  # progress goes to the step log
        print(f"== {step}", flush=True)
        s = run_process(cmd, out / f"{step}.log")
        if step != "generate":
            s["rows"] = stage_rows(manifest(out, step).get("rows", {}), step)
        record["steps"][step] = s
        partial.write_text(json.dumps(record, indent=2) + "\n")
        print(f"   {s}", flush=True)
        if s["exit_code"] != 0:
            print(f"{step} failed: see {out / (step + '.log')}", file=sys.stderr)
            return 1
    record["quality"] = quality(out)
    if args.naive_seconds > 0 and (out / "06_influence" / "validation.json").is_file():
        record["naive"] = naive_versus_ours(out, args.naive_seconds, cfg["influence"]["models"])
    record.update(
        machine=f"{platform.machine()}, {os.cpu_count()} cores, "
                f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1024**3:.0f} GB RAM, {platform.system()}",
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
