"""The report's ranking-influence part: the rows, users and groups that help and hurt the top-k lists."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from musicrec.influence.groups import TRUST_MIN_N, TRUSTED, ranks_reliably
from musicrec.report.html import esc, table


def _corr(c: dict | None) -> str | None:
    if not c or c.get("value") is None:
        return None
    ci = c.get("ci95")
    return f"{c['value']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") + f" (n={c['n']})"


def _trusted(summary: dict) -> str:
    return "yes" if ranks_reliably([summary["ndcg"][h]["spearman"] for h in ("A", "B")]) else "not shown"


def _ci(v, ci) -> str | None:
    if v is None:
        return None
    return f"{v:+.4f}" + (f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci is not None and len(ci) == 2 else "")


def rows_table(data: Path, name: str, k: int = 5) -> str:
    """The training rows whose removal raises (hurts) or lowers their own user's held-out log-likelihood most."""
    path = data / "06_influence" / "ranking.parquet"
    col = f"{name}_rank_loglik"
    r = pl.read_parquet(path)
    if col not in r.columns:
        return ""
    pre = data / "01_preprocess"
    users = pl.read_parquet(pre / "users.parquet").select("user", "msno")
    songs = pl.read_parquet(pre / "songs.parquet")
    names = [c for c in ("song_id", "track_name", "artist_name") if c in songs.columns]
    finite = r.filter(pl.col(col).is_finite())
    out = ""
    for title, frame in (("removing it helps its user's list most (the row hurts)", finite.sort(col, descending=True)),
                         ("removing it hurts its user's list most (the row helps)", finite.sort(col))):
        top = (frame.head(k).join(users, on="user", how="left").join(songs.select("song", *names), on="song", how="left")
               .select("msno", *names, col, f"{name}_rank_ndcg", f"{name}_rank_precision"))
        out += f"<p class='note'>{esc(title)}</p><div class='scroll'>" + table(top.columns, top.rows(), cls="rows") + "</div>"
    return out


def groups_table(data: Path, name: str, k: int = 5) -> str:
    path = data / "06_influence" / "ranking_groups.parquet"
    g = pl.read_parquet(path)
    if "model" not in g.columns:        # no group predicted (groups off, no single users)
        return ""
    g = g.filter(pl.col("model") == name)
    wide = (g.group_by("label", "rows", maintain_order=True)
            .agg(*(pl.col(c).filter(pl.col("half") == h).first().alias(f"{c}_{h}")
                   for c in ("predicted_ndcg", "predicted_ndcg_ci95", "delta_ndcg", "delta_ndcg_ci95") for h in ("A", "B")))
            .with_columns(((pl.col("predicted_ndcg_A") + pl.col("predicted_ndcg_B")) / 2).alias("mean")))

    def rows(df):
        return [(r["label"], r["rows"], _ci(r["predicted_ndcg_A"], r["predicted_ndcg_ci95_A"]),
                 _ci(r["predicted_ndcg_B"], r["predicted_ndcg_ci95_B"]), _ci(r["delta_ndcg_A"], r["delta_ndcg_ci95_A"]),
                 _ci(r["delta_ndcg_B"], r["delta_ndcg_ci95_B"])) for r in df.iter_rows(named=True)]

    head = ("group", "rows", "predicted Δ NDCG, half A [95%]", "half B [95%]", "retrained, half A", "retrained, half B")
    return ("<p class='note'>groups (and single users) whose removal is predicted to raise the test users' NDCG most: "
            "they hurt the lists</p>" + table(head, rows(wide.sort("mean", descending=True).head(k)))
            + "<p class='note'>... and to lower it most: they help</p>" + table(head, rows(wide.sort("mean").head(k))))


def users_table(data: Path, name: str, k: int = 5) -> str:
    """With pruning by users: the users whose removal the set model expects to raise (lower) the other
    test users' NDCG most, the mean of both halves."""
    path = data / "06_influence" / "ranking_users.parquet"
    if not path.is_file():
        return ""
    u = (pl.read_parquet(path).filter(pl.col("model") == name)
         .with_columns(((pl.col("predicted_ndcg_A") + pl.col("predicted_ndcg_B")) / 2).alias("mean")))
    if not u.height:
        return ""
    head = ("user", "rows", "predicted Δ NDCG of the other test users, half A", "half B")

    def rows(df):
        return [(r["user_id"], r["rows"], _ci(r["predicted_ndcg_A"], None), _ci(r["predicted_ndcg_B"], None))
                for r in df.iter_rows(named=True)]
    return (f"<p class='note'>every one of the {u.height:,} training users removed in turn (ranking_users.parquet): "
            "those whose removal is predicted to raise the other test users' NDCG most (they hurt their lists)</p>"
            + table(head, rows(u.sort("mean", descending=True, nulls_last=True).head(k)))
            + "<p class='note'>... and to lower it most (they help)</p>"
            + table(head, rows(u.sort("mean", nulls_last=True).head(k))))


def pruning_note(name: str, p: dict | None) -> str:
    """The held-out pruning in a sentence per scored half."""
    if not p:
        return ""
    parts = []
    for h in ("A", "B"):
        c = p.get(f"scored_on_{h}")
        if c:
            what = (f"{c['users_removed']} users ({c['rows_removed']:,} rows)" if c.get("users_removed")
                    else f"{c['rows_removed']:,} rows")
            parts.append(f"removing {what} chosen on half {'B' if h == 'A' else 'A'} changed half {h}'s mean NDCG by "
                         f"{_ci(c['harmful']['value'], c['harmful'].get('ci95'))}, random removals of as much by "
                         f"{_ci(c['random']['value'], c['random'].get('ci95'))}: difference "
                         f"{_ci(c['harmful_minus_random']['value'], c['harmful_minus_random'].get('ci95'))} "
                         f"(n={c['users_scored']} users, paired)")
    return (f"<p class='note'>{esc(name)}, held-out pruning by {esc(p.get('by', 'rows'))} (retrained; 95% intervals): "
            + esc("; ".join(parts)) + ".</p>")


def ranking_part(data: Path, ranking: dict) -> str:
    body = ("<h3>Ranking influence: what rows, users and groups do to the top-k lists</h3><p class='note'>A row's "
            "influence: its own user's held-out NDCG@k, precision@k and sampled log-likelihood without the row minus "
            "with it, the item factors fixed (exact: checked against the library's own solve of that user). A group's: "
            "the change of each test half's mean NDCG@k by the family's set model, a seeded sample retrained.</p>")
    rows = []
    for name, r in ranking.items():
        s, chk, sec = r.get("summary") or {}, r.get("library_check") or {}, r.get("seconds") or {}
        rows.append((name, chk.get("rows"), chk.get("max_rel_err"), s.get("groups"), s.get("retrained"),
                     *(_corr((s.get(m) or {}).get(h, {}).get("spearman")) for m in ("ndcg", "precision") for h in ("A", "B")),
                     sec.get("set_prediction_per_group"), sec.get("retrain_per_group"), _trusted(s) if s else None))
    body += table(("model", "rows checked", "max rel err vs library", "groups", "retrained", "NDCG Spearman A",
                   "NDCG Spearman B", "precision Spearman A", "precision Spearman B", "s per prediction",
                   "s per retrain", f"trusted (n ≥ {TRUST_MIN_N}, both lower bounds ≥ {TRUSTED})"), rows)
    body += "".join(_ceiling_note(name, (r.get("summary") or {}).get("ndcg") or {}) for name, r in ranking.items())
    for name, r in ranking.items():
        body += (f"<h3>{esc(name)}: rows, users and groups for the top-k lists</h3>" + rows_table(data, name)
                 + groups_table(data, name) + users_table(data, name) + pruning_note(name, r.get("pruning")))
    return body


def _ceiling_note(name: str, ndcg: dict) -> str:
    """Where the retrained groups were retrained under a second seed too: how far retraining agrees
    with itself, which caps any prediction's agreement with one retraining."""
    ceil = {h: (ndcg.get(h) or {}).get("noise_ceiling") for h in ("A", "B")}
    if not all(ceil.values()):
        return ""
    same = ", ".join(f"half {h} {_corr(c) or 'not measurable'}" for h, c in ceil.items())
    mean = ", ".join(f"half {h} {_corr(c.get('predicted_vs_mean_of_seeds')) or 'not measurable'}" for h, c in ceil.items())
    return (f"<p class='note'>{esc(name)}: the retrained groups retrained again under a second seed agree with the "
            f"first retraining at NDCG Spearman {same}: no prediction can agree with one retraining better than "
            f"retraining agrees with itself. The prediction against the mean of both retrainings: {mean}.</p>")
