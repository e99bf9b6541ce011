"""bench/benchmark.py's records: the quality figures a run is judged by, and BENCHMARKS.md made
from every record in bench/results."""
from __future__ import annotations

import json
from pathlib import Path

from musicrec.outputs.influence import GroupSummary, ModelValidation, Validation
from musicrec.outputs.predict import PredictMetrics

BUDGETS = {  # the kkbox budgets: (wall seconds, peak RSS GB); every stage within 10 GB (a 16 GB laptop)
    "generate": (180, 10), "01_preprocess": (90, 10), "02_split": (30, 10), "03_features": (240, 10),
    "04_train": (480, 10), "05_predict": (120, 10), "06_influence": (600, 10),
}
TOTAL_BUDGET_S = 1200   # the whole default run at kkbox, generate included
BARE_FIT_RATIO = 1.3    # 04's wall time over the sum of the bare library fits
RANKING_COLUMNS = ("precision", "ndcg", "map", "hit_rate", "coverage", "users")
SIZED_LIKE_KKBOX = ("kkbox", "listens-m18")  # checked against BUDGETS


def quality(out: Path) -> dict:
    """The figures that say the run is not just fast but right (from 05's and 06's typed outputs)."""
    q: dict = {}
    pm = out / "05_predict" / "metrics.json"
    if pm.is_file():
        m = PredictMetrics.read(pm)
        q["test_auc"] = {k: round(v.auc, 4) for k, v in m.models.items() if v.auc is not None}
        if m.oracle is not None:
            q["oracle_auc"] = round(m.oracle.auc, 4)
        if m.ranking:
            q["ranking"] = {k: {c: getattr(v, c) for c in RANKING_COLUMNS} | {"k": v.k} for k, v in m.ranking.items()}
    vm = out / "06_influence" / "validation.json"
    if vm.is_file():
        v = Validation.read(vm)
        q["loo_seconds"] = v.loo_seconds
        q["influence"] = {name: influence_figures(r, (v.groups or {}).get(name)) for name, r in v.models.items()}
        if v.ranking:
            q["ranking_influence"] = {name: ranking_figures(r) for name, r in v.ranking.items()}
        if v.label_noise is not None:
            ln = v.label_noise
            q["label_noise"] = {"source": ln.source, "flipped": ln.flipped, "share": ln.share,
                                "oracle": None if ln.oracle is None else _detector(ln.oracle.to_dict())}
    return q


def ranking_figures(r: dict) -> dict:
    """A ranking family's influence on the top-k lists: coverage, the library check, predicted against
    retrained groups per test half, held-out pruning against random removal."""
    s = r.get("summary") or {}
    p = r.get("pruning") or {}
    return {"coverage": r.get("loo_coverage"), "loo_seconds": r.get("loo_seconds"),
            "library_max_rel_err": (r.get("library_check") or {}).get("max_rel_err"),
            "groups_predicted": r.get("groups_predicted"), "retrained": s.get("retrained"), "seconds": r.get("seconds"),
            "groups": {m: {h: {c: _corr(s[m][h].get(c)) for c in ("spearman", "pearson")} | _ranking_ceiling(s[m][h])
                           for h in s[m]}
                       for m in ("ndcg", "precision") if isinstance(s.get(m), dict)},
            "pruning": None if not p else {"fraction": p.get("fraction"), "repeats": p.get("repeats"),
                                           **{h: {k: _corr(p[h].get(k)) for k in ("harmful", "random", "harmful_minus_random")}
                                              | {"rows_removed": p[h].get("rows_removed")}
                                              for h in ("scored_on_A", "scored_on_B") if h in p}}}


def _corr(c: dict | None) -> dict | None:
    return None if not c else {"value": c.get("value"), "n": c.get("n"), "ci95": c.get("ci95")}


def _detector(d: dict) -> dict:
    return {"lift_5pct": _corr(d["lift_5pct"]), "lift_10pct": _corr(d["lift_10pct"]), "pr_auc": d.get("pr_auc")}


def influence_figures(mv: ModelValidation, groups: GroupSummary | None) -> dict:
    """One model's figures from validation.json, each with its n and interval."""
    r = mv.to_dict()
    exact = r.get("exact") or {}
    own = r.get("own_vs_library") or {}
    fixed = r.get("fixed_structure") or {}
    ceil = r.get("noise_ceiling")
    out = {"reference": r.get("reference"), "deterministic": r.get("deterministic"),
           "spearman_vs_library": _corr(exact.get("spearman")), "pearson_vs_library": _corr(exact.get("pearson")),
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
    for kind in ("harmful_set", "random_repeats"):
        if "0.05" in removal.get(kind, {}):
            out["removal_5pct_heldout"][kind] = removal[kind]["0.05"]
    if r.get("label_noise"):
        out["label_noise"] = {k: _detector(d) for k, d in r["label_noise"]["rankings"].items()}
    if groups is not None:
        g = groups.to_dict()
        out["groups"] = {k: {h: ({m: (_corr(c) if isinstance(c, dict) else c) for m, c in v.items()} if h != "mean" else v)
                             for h, v in g[k].items()} for k in ("predicted", "sum_of_loo") if g.get(k)}
        out["groups"].update({k: g.get(k) for k in ("predictor", "trust", "groups", "retrained", "seconds")})
        if g.get("noise_ceiling"):
            out["groups"]["noise_ceiling"] = {h: {**(_corr(g["noise_ceiling"][h]) or {}),
                                                  "measurable": g["noise_ceiling"][h].get("measurable"),
                                                  "predicted_vs_mean_of_seeds": _corr(
                                                      g["noise_ceiling"][h].get("predicted_vs_mean_of_seeds"))}
                                              for h in ("A", "B")}
    return out


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
        if r.get("kind") == "single_rows":
            lines += _single_row_lines(res_path.stem, r)
            continue
        profile = r.get("profile", "default")
        named = res_path.stem != (r["preset"] if profile == "default" else f"{r['preset']}-{profile}")
        lines += [f"## preset `{r['preset']}`" + ("" if profile == "default" else f", profile `{profile}`")
                  + (f" (record `{res_path.stem}`)" if named else ""), "",
                  f"- machine: {r['machine']}", f"- date: {r['date']}", f"- command: `{r['command']}`",
                  *([f"- fresh memory: {r['fresh_memory_s_per_gb']} s per GB first touched after 10 s freed "
                     "(fresh_memory_seconds_per_gb: what this machine charges for GB-sized temporaries)"]
                    if r.get("fresh_memory_s_per_gb") is not None else []),
                  *([f"- note: {r['note']}"] if r.get("note") else []),
                  "- versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()), ""]
        lines += _step_lines(r)
        q = r.get("quality", {})
        if q.get("test_auc"):
            lines += ["", "Test AUC: " + ", ".join(f"{k} {v}" for k, v in q["test_auc"].items())
                      + (f"; oracle {q['oracle_auc']}" if "oracle_auc" in q else "")]
        if q.get("ranking"):
            lines += ["", "Ranking of unseen songs for the test users (05's metrics.json `ranking`; means over users):", "",
                      "| ranking model | " + " | ".join(f"{c}@10" if c not in ("coverage", "users") else c
                                                        for c in RANKING_COLUMNS) + " |", "|---|" + "---|" * len(RANKING_COLUMNS)]
            for k, v in q["ranking"].items():
                v = {c: v.get(c, v.get(f"{c}@10")) for c in RANKING_COLUMNS}   # records keyed by metric@k too
                lines.append(f"| {k} | " + " | ".join("–" if v.get(c) is None else f"{v[c]:.4g}" for c in RANKING_COLUMNS)
                             + " |")
        if q.get("influence"):
            lines += _influence_lines(q)
        if q.get("ranking_influence"):
            lines += _ranking_influence_lines(q["ranking_influence"])
        if r.get("naive"):
            lines += ["", "| model | naive LOO rows/s (retrain per row) | our LOO rows/s | speed-up |", "|---|---|---|---|"]
            for m, v in r["naive"].items():
                up = "–" if v["speedup"] is None else f"{v['speedup']:,.0f}×"
                lines.append(f"| {m} | {v['naive_rows_per_s']} | {v['ours_rows_per_s']} | {up} |")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def _step_lines(r: dict) -> list[str]:
    """The stages' table: seconds, memory, the load average before each (what else ran), budgets."""
    sized = r["preset"] in SIZED_LIKE_KKBOX
    lines = ["| step | wall s | CPU s | peak RSS GB | rows | load before | budget (kkbox) |", "|---|---|---|---|---|---|---|"]
    for step, s in r["steps"].items():
        budget = BUDGETS.get(step)
        b = f"≤ {budget[0]} s, ≤ {budget[1]} GB" if budget else ""
        if budget and sized:
            b += " ✓" if s["wall_s"] <= budget[0] and s["peak_rss_gb"] <= budget[1] else " ✗"
        lines.append(f"| {step} | {s['wall_s']} | {s['cpu_s']} | {s['peak_rss_gb']} | {s.get('rows', '')} | "
                     f"{s.get('load_before', '–')} | {b} |")
    total = sum(s["wall_s"] for s in r["steps"].values())
    whole = "generate" in r["steps"] and all(st in r["steps"] for st in BUDGETS)
    b = f"≤ {TOTAL_BUDGET_S} s" + ((" ✓" if total <= TOTAL_BUDGET_S else " ✗") if sized else "") if whole else ""
    peak = max(s["peak_rss_gb"] for s in r["steps"].values())
    lines.append(f"| **all steps** | {total:.1f} | {sum(s['cpu_s'] for s in r['steps'].values()):.1f} | {peak} | | | {b} |")
    if r.get("bare_fits"):
        bare = r["bare_fits"]
        lines += ["", "Stage 04 beside each family's bare library fit on the same arrays (bench/bare_fits.py, run after "
                  "the stages):", "", "| family | bare library fit s | stage 04 fit s (its metrics.json) |", "|---|---|---|"]
        lines += [f"| {m} | {v['bare_fit_s']} | {v['stage_04_fit_s']} |" for m, v in bare.items()]
        s04 = r["steps"].get("04_train", {}).get("wall_s")
        total_bare = sum(v["bare_fit_s"] for v in bare.values())
        if s04:
            ratio = s04 / total_bare
            mark = (" ✓" if ratio <= BARE_FIT_RATIO else " ✗") if sized else ""
            lines += ["", f"Stage 04's wall time over the sum of the bare fits: {s04} / {total_bare:.1f} = {ratio:.2f} "
                      f"(budget ≤ {BARE_FIT_RATIO}{mark})."]
    return lines


def _ci(c: dict | None, digits=3) -> str:
    """value [lo, hi] (n) of a figure with interval, or – where it was not measured."""
    if not c or c.get("value") is None:
        return "–"
    ci = c.get("ci95")
    text = _fmt(c["value"], digits)
    if ci:
        text += f" [{_fmt(ci[0], 2)}, {_fmt(ci[1], 2)}]"
    return text + (f" (n={c['n']})" if c.get("n") is not None else "")


def _influence_lines(q: dict) -> list[str]:
    lines = ["", "Estimates against the library (scikit-learn refit for nb/lr, full retraining with the saved "
             "model's arguments for rf/lgbm/als); 95% bootstrap intervals in brackets.", "",
             "| model | LOO s (all rows) | Spearman vs library | own removal model vs library: max rel err | "
             "fixed structure vs refit: max rel err | noise ceiling | share of ceiling |",
             "|---|---|---|---|---|---|---|"]
    for m, v in q["influence"].items():
        ceil = v.get("noise_ceiling")
        if v.get("deterministic"):
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
    lines += _set_removal_lines(q)
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
        lines += ["", "Groups and random ablations: predicted vs retrained change of a test half's log-loss over the "
                  "retrained groups, Spearman per half (n groups) with interval; Pearson; mean absolute error relative "
                  "to the mean retrained change; the sum of the rows' LOO beside it; the noise ceiling (the same "
                  "groups retrained under a second seed); seconds per set prediction and per retrain.", "",
                  "| model | predictor | Spearman A | Spearman B | Pearson A / B | rel. error A / B | sum of LOO A | "
                  "sum of LOO B | ceiling A | ceiling B | s per prediction / retrain |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for m, v in q["influence"].items():
            g = v.get("groups")
            if not g:
                continue
            p, s, c = g["predicted"], g.get("sum_of_loo"), g.get("noise_ceiling") or {}
            sec = g.get("seconds") or {}
            rel = " / ".join(_fmt(p[h].get("relative_error"), 2) for h in ("A", "B"))
            pear = " / ".join(_fmt((p[h].get("pearson") or {}).get("value"), 2) for h in ("A", "B"))
            lines.append(f"| {m} | {g['predictor']} | {_ci(p['A']['spearman'])} | {_ci(p['B']['spearman'])} | {pear} | "
                         f"{rel} | {_ci(s['A']['spearman']) if s else '–'} | {_ci(s['B']['spearman']) if s else '–'} | "
                         f"{_ci(c.get('A'))} | {_ci(c.get('B'))} | {_fmt(sec.get('set_prediction_per_group'), 3)} / "
                         f"{_fmt(sec.get('retrain_per_group'), 3)} |")
        lines += [""] + [f"- {m}: {v['groups']['trust']}" for m, v in q["influence"].items()
                         if (v.get("groups") or {}).get("trust")]
        lines += [f"- {m}: predicted vs the mean of both seeds' retrained changes, Spearman A "
                  f"{_ci(c['A']['predicted_vs_mean_of_seeds'])}, B {_ci(c['B']['predicted_vs_mean_of_seeds'])}"
                  for m, v in q["influence"].items()
                  if (c := (v.get("groups") or {}).get("noise_ceiling") or {}).get("A", {}).get("predicted_vs_mean_of_seeds")]
    return lines


def _single_row_lines(tag: str, r: dict) -> list[str]:
    """bench/single_row_sets.py's record: one-row groups through the set predictor against the LOO estimate."""
    lines = [f"## One-row groups: set predictor vs leave-one-out estimate (`{tag}`)", "",
             f"- date: {r['date']}", f"- command: `{r['command']}`",
             "- change of the whole test split's log-loss when one training row is removed; seconds per set prediction", "",
             "| model | rows | Spearman | Pearson | median relative difference | mean abs, set / LOO | s per row |",
             "|---|---|---|---|---|---|---|"]
    for m, v in r["models"].items():
        lines.append(f"| {m} | {v['rows']} | {_ci(v['spearman'])} | {_ci(v['pearson'])} | {_fmt(v['median_rel_diff'])} | "
                     f"{_fmt(v['mean_abs_set'], 2)} / {_fmt(v['mean_abs_loo'], 2)} | {v['set_prediction_s_per_row']} |")
    return lines + [""]


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


def _set_removal_lines(q: dict) -> list[str]:
    """Rows chosen on one test half (iteratively, or greedily by the set predictor) against random
    draws of as many rows, each scored half with its interval: a choice helps where its interval
    lies below the random one."""
    rows = [(m, v["removal_5pct_heldout"]) for m, v in q["influence"].items()
            if "harmful_set" in (v.get("removal_5pct_heldout") or {})]
    if not rows:
        return []

    def cell(c: dict | None) -> str:
        if c is None:
            return "–"
        ci = c.get("logloss_ci95")
        return f"{c['logloss']:+.5f}" + (f" [{ci[0]:+.5f}, {ci[1]:+.5f}]" if ci else "")

    def below(c: dict | None, rnd: dict | None) -> str:
        ci, rci = (c or {}).get("logloss_ci95"), (rnd or {}).get("logloss_ci95")
        return "–" if not (ci and rci) else ("yes" if ci[1] < rci[0] else "no")

    lines = ["", "Held-out removal of 5% of the training rows, chosen on one test half and scored on the other: "
             "iterative (LOO re-estimated on the model retrained after every step; nb and lr size each step with "
             "their set predictor) and greedy (blocks chosen one at a time by the set predictor, no retrain), "
             "against random draws of as many rows: change of the scored half's log-loss with its 95% interval over "
             "that half's users (random: pooled over the draws); below random = the interval lies wholly below "
             "random's.", "",
             "| model | scored half | iterative | greedy, set predictor | random (draws) | iterative below random | "
             "greedy below random |", "|---|---|---|---|---|---|---|"]
    for m, r in rows:
        for h in ("A", "B"):
            it = (r.get("harmful_iterative") or {}).get(f"scored_on_{h}")
            got, rnd = r["harmful_set"][f"scored_on_{h}"], r.get("random_repeats", {}).get(f"scored_on_{h}")
            draws = f" ({r['random_repeats']['repeats']})" if rnd else ""
            lines.append(f"| {m} | {h} | {cell(it)} | {cell(got)} | {cell(rnd)}{draws} | {below(it, rnd)} | "
                         f"{below(got, rnd)} |")
    return lines


def _ranking_ceiling(half: dict) -> dict:
    """The ranking groups' noise ceiling of one half and measure, where the groups were retrained twice."""
    c = half.get("noise_ceiling")
    return {} if not c else {"noise_ceiling": _corr(c),
                             "predicted_vs_mean_of_seeds": _corr(c.get("predicted_vs_mean_of_seeds"))}


def _ranking_influence_lines(ri: dict) -> list[str]:
    """Stage 06's influence on the top-k lists (validation.json `ranking`)."""
    lines = ["", "Influence on the top-10 lists (06's validation.json `ranking`): interactions covered (and the seconds "
             "it took), the downdated user factor against implicit's recalculate_user, and the predicted against "
             "the retrained change of each test half's mean NDCG@10 and precision@10 over the retrained groups (Spearman, n, 95% interval).", "",
             "| model | interactions covered | library max rel err | groups predicted / retrained | NDCG Spearman A | "
             "NDCG Spearman B | precision Spearman A | precision Spearman B | s per prediction / retrain |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m, r in ri.items():
        cov, g, sec = r.get("coverage") or {}, r.get("groups") or {}, r.get("seconds") or {}
        gp = r.get("groups_predicted") or {}
        sp = (lambda metric, h: _ci((g.get(metric, {}).get(h) or {}).get("spearman")))
        covered = f"{cov['rows']:,} of {cov['of_rows']:,}" if cov.get("of_rows") is not None else "–"
        if r.get("loo_seconds") is not None:
            covered += f" in {r['loo_seconds']:,.1f} s"
        lines.append(f"| {m} | {covered} | {_fmt(r.get('library_max_rel_err'), 2)} | "
                     f"{gp.get('groups', '–')} of {gp.get('of', '–')} / {r.get('retrained') or 0} | {sp('ndcg', 'A')} | "
                     f"{sp('ndcg', 'B')} | {sp('precision', 'A')} | {sp('precision', 'B')} | "
                     f"{sec.get('set_prediction_per_group', '–')} / {sec.get('retrain_per_group', '–')} |")
    for m, r in ri.items():
        g = (r.get("groups") or {}).get("ndcg") or {}
        if all(g.get(h, {}).get("noise_ceiling") for h in ("A", "B")):
            lines += ["", f"- {m}, NDCG@10: noise ceiling (the retrained changes under two seeds) A "
                          f"{_ci(g['A']['noise_ceiling'])}, B {_ci(g['B']['noise_ceiling'])}; predicted vs the mean of "
                          f"both seeds A {_ci(g['A']['predicted_vs_mean_of_seeds'])}, B "
                          f"{_ci(g['B']['predicted_vs_mean_of_seeds'])}"]
    pruned = [(m, r["pruning"]) for m, r in ri.items() if r.get("pruning")]
    if pruned:
        lines += ["", "Held-out pruning: the rows most harmful to their own users' lists, chosen among one test half's "
                  "users, removed and the model retrained; change of the other half's mean NDCG@10 (higher is better) "
                  "against random removals of as many rows, paired per user, 95% interval.", "",
                  "| model | scored half | rows removed | harmful removed | random removed (draws) | harmful − random |",
                  "|---|---|---|---|---|---|"]
        for m, p in pruned:
            for h in ("scored_on_A", "scored_on_B"):
                if h in p:
                    c = p[h]
                    lines.append(f"| {m} | {h[-1]} | {c.get('rows_removed')} | {_change(c['harmful'])} | "
                                 f"{_change(c['random'])} ({p.get('repeats')}) | {_change(c['harmful_minus_random'])} |")
    return lines


def _change(c: dict | None) -> str:
    """A signed change with its interval and n, to 4 decimals."""
    if not c or c.get("value") is None:
        return "–"
    ci = c.get("ci95")
    return (f"{c['value']:+.4f}" + (f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "")
            + (f" (n={c['n']})" if c.get("n") is not None else ""))
