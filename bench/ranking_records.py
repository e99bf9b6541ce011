"""The ranking influence's part of a record (06's validation.json `ranking`) and of BENCHMARKS.md."""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from scipy.stats import binomtest

from record_format import change_text, corr_fields, interval_text, number_text


def bots_pruned(out: Path) -> dict | None:
    """Where the generated log has bots (truth's `bot` column) and 06 pruned by users: per pruning, the
    share of bots among the users removed (Clopper-Pearson 95% interval) beside their share among the
    candidates, the rate a choice blind to them would have."""
    effects, truth = out / "06_influence" / "ranking_users.parquet", out / "log" / "truth.parquet"
    if not (effects.is_file() and truth.is_file() and "bot" in pl.read_parquet_schema(truth)):
        return None
    bots = pl.read_parquet(truth, columns=["user", "bot"]).unique("user").rename({"user": "user_id"})
    users = pl.read_parquet(effects).join(bots, on="user_id", how="left")
    res = {"users": users.height, "bots": int(users["bot"].sum())}
    oracle = out / "bots_oracle.json"     # bench/bots_oracle.py: every bot removed, the most pruning could do
    if oracle.is_file():
        res["oracle"] = json.loads(oracle.read_text())
    for h in ("A", "B"):
        col = f"removed_scored_on_{h}"
        if col in users.columns:
            cand, chosen = users.filter(pl.col("test_half") != h), users.filter(pl.col(col))
            k, n = int(chosen["bot"].sum()), chosen.height
            ci = binomtest(k, n).proportion_ci() if n else None
            res[f"scored_on_{h}"] = {"removed": n, "bots_removed": k,
                                     "bot_share": {"value": k / n if n else None, "n": n,
                                                   "ci95": None if ci is None else [ci.low, ci.high]},
                                     "candidates": cand.height, "candidate_bot_share": float(cand["bot"].mean())}
    return res


def ranking_figures(r: dict) -> dict:
    """A ranking family's influence on the top-k lists: coverage, the library check, predicted against
    retrained groups per test half, held-out pruning against random removal."""
    s = r.get("summary") or {}
    p = r.get("pruning") or {}
    return {"coverage": r.get("loo_coverage"), "loo_seconds": r.get("loo_seconds"),
            "library_max_rel_err": (r.get("library_check") or {}).get("max_rel_err"),
            "groups_predicted": r.get("groups_predicted"), "retrained": s.get("retrained"), "seconds": r.get("seconds"),
            "groups": {m: {h: {c: corr_fields(s[m][h].get(c)) for c in ("spearman", "pearson")} | ranking_ceiling(s[m][h])
                           for h in s[m]}
                       for m in ("ndcg", "precision") if isinstance(s.get(m), dict)},
            "pruning": None if not p else {"by": p.get("by", "rows"), "fraction": p.get("fraction"), "repeats": p.get("repeats"),
                                           **{h: {k: corr_fields(p[h].get(k)) for k in ("harmful", "random", "harmful_minus_random")}
                                              | {"rows_removed": p[h].get("rows_removed"), "users_removed": p[h].get("users_removed")}
                                              for h in ("scored_on_A", "scored_on_B") if h in p}}}


def ranking_ceiling(half: dict) -> dict:
    """The ranking groups' noise ceiling of one half and measure, where the groups were retrained twice."""
    c = half.get("noise_ceiling")
    return {} if not c else {"noise_ceiling": corr_fields(c),
                             "predicted_vs_mean_of_seeds": corr_fields(c.get("predicted_vs_mean_of_seeds"))}


def ranking_influence_lines(ri: dict) -> list[str]:
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
        sp = (lambda metric, h: interval_text((g.get(metric, {}).get(h) or {}).get("spearman")))
        covered = f"{cov['rows']:,} of {cov['of_rows']:,}" if cov.get("of_rows") is not None else "–"
        if r.get("loo_seconds") is not None:
            covered += f" in {r['loo_seconds']:,.1f} s"
        lines.append(f"| {m} | {covered} | {number_text(r.get('library_max_rel_err'), 2)} | "
                     f"{gp.get('groups', '–')} of {gp.get('of', '–')} / {r.get('retrained') or 0} | {sp('ndcg', 'A')} | "
                     f"{sp('ndcg', 'B')} | {sp('precision', 'A')} | {sp('precision', 'B')} | "
                     f"{sec.get('set_prediction_per_group', '–')} / {sec.get('retrain_per_group', '–')} |")
    for m, r in ri.items():
        g = (r.get("groups") or {}).get("ndcg") or {}
        if all(g.get(h, {}).get("noise_ceiling") for h in ("A", "B")):
            lines += ["", f"- {m}, NDCG@10: noise ceiling (the retrained changes under two seeds) A "
                          f"{interval_text(g['A']['noise_ceiling'])}, B {interval_text(g['B']['noise_ceiling'])}; predicted vs the mean of "
                          f"both seeds A {interval_text(g['A']['predicted_vs_mean_of_seeds'])}, B "
                          f"{interval_text(g['B']['predicted_vs_mean_of_seeds'])}"]
    pruned = [(m, r["pruning"]) for m, r in ri.items() if r.get("pruning")]
    if pruned:
        lines += ["", "Held-out pruning, chosen on one test half and scored on the other: by rows, the rows most harmful "
                  "to their own users' lists among the choosing half's users; by users, the users whose removal the set "
                  "model expects to raise the choosing half's held-out log-likelihood most, never test users of the "
                  "scored half. The "
                  "model is retrained without them; change of the scored half's mean NDCG@10 (higher is better) against "
                  "random removals of as many rows (users), paired per user, 95% interval.", "",
                  "| model | by | scored half | removed | harmful removed | random removed (draws) | harmful − random |",
                  "|---|---|---|---|---|---|---|"]
        for m, p in pruned:
            for h in ("scored_on_A", "scored_on_B"):
                if h in p:
                    c = p[h]
                    removed = (f"{c['users_removed']} users ({c.get('rows_removed'):,} rows)" if c.get("users_removed")
                               else f"{c.get('rows_removed'):,} rows")
                    lines.append(f"| {m} | {p.get('by', 'rows')} | {h[-1]} | {removed} | {change_text(c['harmful'])} | "
                                 f"{change_text(c['random'])} ({p.get('repeats')}) | {change_text(c['harmful_minus_random'])} |")
    return lines


def bots_lines(b: dict) -> list[str]:
    """The generated bots among the users the pruning removed (bench quality's `bots_pruned`)."""
    lines = ["", f"Generated bots among the users removed ({b['bots']} bots of {b['users']} users; the truth's `bot` "
             "column): their share with a Clopper-Pearson 95% interval, beside their share among the candidates.", "",
             "| scored half | users removed | bots removed | bot share | bot share of candidates |", "|---|---|---|---|---|"]
    for h in ("scored_on_A", "scored_on_B"):
        if h in b:
            c = b[h]
            lines.append(f"| {h[-1]} | {c['removed']} | {c['bots_removed']} | {interval_text(c['bot_share'])} | "
                         f"{c['candidate_bot_share']:.3f} (of {c['candidates']}) |")
    o = b.get("oracle")
    if o:
        n = o["ndcg"]
        lines += ["", f"Every bot removed (bench/bots_oracle.py; {o['bot_rows']:,} of {o['rows']:,} rows), the humans' "
                  f"NDCG@10 change against the all-rows retrain: {change_text(n['bots_removed'])}; as many random users "
                  f"({o['repeats']} draws): {change_text(n['random_users'])}, bots − random users "
                  f"{change_text(n['bots_minus_random_users'])}; as many random rows: {change_text(n['random_rows'])}, "
                  f"bots − random rows {change_text(n['bots_minus_random_rows'])}."]
    return lines
