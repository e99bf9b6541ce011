"""bench/benchmark.py's records: the quality figures a run is judged by, and BENCHMARKS.md made
from every record in bench/results."""
from __future__ import annotations

import json
from pathlib import Path

from musicrec.outputs.influence import GroupSummary, ModelValidation, Validation
from musicrec.outputs.predict import PredictMetrics
from ranking_records import bots_lines, bots_pruned, ranking_influence_lines, ranking_figures
from record_format import corr_fields, interval_text, number_text

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
            bots = bots_pruned(out)
            if bots:
                q["bots_pruned"] = bots
        if v.label_noise is not None:
            ln = v.label_noise
            q["label_noise"] = {"source": ln.source, "flipped": ln.flipped, "share": ln.share,
                                "oracle": None if ln.oracle is None else _detector(ln.oracle.to_dict())}
    return q


def _detector(d: dict) -> dict:
    return {"lift_5pct": corr_fields(d["lift_5pct"]), "lift_10pct": corr_fields(d["lift_10pct"]), "pr_auc": d.get("pr_auc")}


def influence_figures(mv: ModelValidation, groups: GroupSummary | None) -> dict:
    """One model's figures from validation.json, each with its n and interval."""
    r = mv.to_dict()
    exact = r.get("exact") or {}
    own = r.get("own_vs_library") or {}
    fixed = r.get("fixed_structure") or {}
    ceil = r.get("noise_ceiling")
    out = {"reference": r.get("reference"), "deterministic": r.get("deterministic"),
           "spearman_vs_library": corr_fields(exact.get("spearman")), "pearson_vs_library": corr_fields(exact.get("pearson")),
           "own_model_vs_library_max_rel_err": own.get("max_rel_err"),
           "fixed_structure_estimate_vs_refit": corr_fields((fixed.get("estimate_vs_refit") or {}).get("spearman")),
           "fixed_structure_max_rel_err": fixed.get("exact_path_vs_refit_max_rel_err"),
           "noise_ceiling": None if ceil is None else {**(corr_fields(ceil) or {}), "measurable": ceil.get("measurable")},
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
        out["groups"] = {k: {h: ({m: (corr_fields(c) if isinstance(c, dict) else c) for m, c in v.items()} if h != "mean" else v)
                             for h, v in g[k].items()} for k in ("predicted", "sum_of_loo") if g.get(k)}
        out["groups"].update({k: g.get(k) for k in ("predictor", "trust", "groups", "retrained", "seconds")})
        if g.get("noise_ceiling"):
            out["groups"]["noise_ceiling"] = {h: {**(corr_fields(g["noise_ceiling"][h]) or {}),
                                                  "measurable": g["noise_ceiling"][h].get("measurable"),
                                                  "predicted_vs_mean_of_seeds": corr_fields(
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
            lines += ranking_influence_lines(q["ranking_influence"])
        if q.get("bots_pruned"):
            lines += bots_lines(q["bots_pruned"])
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
            ceil_txt = interval_text(ceil) + ("" if ceil.get("measurable") else " – not measurable")
        share = v.get("share_of_ceiling")
        share_txt = "–" if share is None else share if isinstance(share, str) else number_text(share)
        lines.append(f"| {m} | {q['loo_seconds'].get(m)} | {interval_text(v['spearman_vs_library'])} | "
                     f"{number_text(v['own_model_vs_library_max_rel_err'], 2)} | {number_text(v['fixed_structure_max_rel_err'], 2)} | "
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
                cells.append("–" if d is None else f"{interval_text(d['lift_10pct'], 2)}; PR-AUC {number_text(d['pr_auc'])}")
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        if ln.get("oracle"):
            o = ln["oracle"]
            lines += ["", f"Oracle (posterior that a label was flipped, from the truth): lift@10% {interval_text(o['lift_10pct'], 2)}, "
                      f"lift@5% {interval_text(o['lift_5pct'], 2)}, PR-AUC {number_text(o['pr_auc'])}."]
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
            rel = " / ".join(number_text(p[h].get("relative_error"), 2) for h in ("A", "B"))
            pear = " / ".join(number_text((p[h].get("pearson") or {}).get("value"), 2) for h in ("A", "B"))
            lines.append(f"| {m} | {g['predictor']} | {interval_text(p['A']['spearman'])} | {interval_text(p['B']['spearman'])} | {pear} | "
                         f"{rel} | {interval_text(s['A']['spearman']) if s else '–'} | {interval_text(s['B']['spearman']) if s else '–'} | "
                         f"{interval_text(c.get('A'))} | {interval_text(c.get('B'))} | {number_text(sec.get('set_prediction_per_group'), 3)} / "
                         f"{number_text(sec.get('retrain_per_group'), 3)} |")
        lines += [""] + [f"- {m}: {v['groups']['trust']}" for m, v in q["influence"].items()
                         if (v.get("groups") or {}).get("trust")]
        lines += [f"- {m}: predicted vs the mean of both seeds' retrained changes, Spearman A "
                  f"{interval_text(c['A']['predicted_vs_mean_of_seeds'])}, B {interval_text(c['B']['predicted_vs_mean_of_seeds'])}"
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
        lines.append(f"| {m} | {v['rows']} | {interval_text(v['spearman'])} | {interval_text(v['pearson'])} | {number_text(v['median_rel_diff'])} | "
                     f"{number_text(v['mean_abs_set'], 2)} / {number_text(v['mean_abs_loo'], 2)} | {v['set_prediction_s_per_row']} |")
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
        lines.append(f"| {rec['ranking']} | {interval_text(rec['lift_10pct'], 2)} | {interval_text(rec['lift_5pct'], 2)} | "
                     f"{number_text(rec['pr_auc'])} | {rec['seconds']} | {rec['rows_per_s']:,.0f} |")
    o = r.get("oracle_all_rows")
    if o:
        lines.append(f"| oracle (truth posterior; the ceiling) | {interval_text(o['lift_10pct'], 2)} | {interval_text(o['lift_5pct'], 2)} | "
                     f"{number_text(o['pr_auc'])} | – | – |")
    lines += ["", f"On the {r['knn_rows']} training rows KNN-Shapley valued (against {r.get('knn_test_rows', 'all')} "
              "test rows; seeded subsamples; lifts within those training rows):", "",
              "| ranking | lift@10% [95% CI] | PR-AUC | seconds | rows/s |", "|---|---|---|---|---|"]
    for rec in r["knn_rows_side_by_side"]:
        lines.append(f"| {rec['ranking']} | {interval_text(rec['lift_10pct'], 2)} | {number_text(rec['pr_auc'])} | {rec['seconds']} | "
                     f"{rec['rows_per_s']:,.0f} |")
    return lines + [""]


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
