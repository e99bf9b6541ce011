"""One section per stage, each built only from that stage's files on disk.

Every function takes the data folder and the stage's manifest and returns HTML; what a stage did
not write is left out, and JSON keys this module does not know still appear in the "all figures"
tables, so the report keeps up when stages grow new outputs.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import yaml

from musicrec.manifest import STAGE_SECTIONS
from musicrec.report.html import esc, flatten, fmt, image, kv_table, share, state_badge, table
from musicrec.report.influence_rows import extreme_rows


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _plots(folder: Path, captions: dict[str, str]) -> str:
    """Every PNG of a plots folder, known ones first with their caption, the rest by file name."""
    if not folder.is_dir():
        return ""
    files = sorted(folder.glob("*.png"))
    known = [folder / f"{n}.png" for n in captions if (folder / f"{n}.png").is_file()]
    rest = [f for f in files if f not in known]
    def caption(stem: str) -> str:
        if stem in captions:
            return captions[stem]
        if stem.startswith("groups_"):
            return f"Test log-loss and AUC after retraining without each {stem[7:].replace('_', ' ')} group"
        return stem.replace("_", " ")

    figs = [image(f, caption(f.stem)) for f in [*known, *rest]]
    return f"<div class='grid'>{''.join(figs)}</div>" if figs else ""


def _all_figures(obj: dict, title: str) -> str:
    rows = [(k, v) for k, v in flatten(obj) if not isinstance(v, (dict, list))]
    return f"<details><summary>{esc(title)} ({len(rows)} values)</summary>{kv_table(rows)}</details>"


def stage_footer(cfg: dict, stage: str, manifest: dict, state: tuple[str, str]) -> str:
    """The stage's manifest state, timings and config sections, side by side."""
    conf = {s: cfg[s] for s in STAGE_SECTIONS[stage]}
    if stage == "01_preprocess":
        conf["paths"] = cfg["paths"]
    timings = manifest.get("timings_s", {})
    steps = [(k, v) for k, v in timings.items() if k != "total"] + [("total", timings.get("total"))]
    badge = state_badge(state[0]) + (f" <span class='note'>{esc(state[1])}</span>" if state[1] else "")
    created = str(manifest.get("created", ""))[:19].replace("T", " ")
    run = (f"<table><tbody><tr><th>state</th><td>{badge}</td></tr>"
           f"<tr><th>finished</th><td>{esc(created)}</td></tr>"
           f"<tr><th>forced</th><td>{esc(fmt(manifest.get('forced')))}</td></tr>"
           f"<tr><th>command</th><td>{esc(manifest.get('command', ''))}</td></tr></tbody></table>")
    return ("<div class='grid footer'>"
            f"<div><h3>Run</h3>{run}</div>"
            f"<div><h3>Timings (seconds)</h3>{table(('step', 'seconds'), steps)}</div>"
            "<div><h3>Config</h3><pre>" + esc(yaml.safe_dump(conf, sort_keys=False, default_flow_style=False, width=60))
            + "</pre></div></div>")


def data_quality(data: Path) -> str:
    q = _json(data / "01_preprocess" / "quality.json")
    if q is None:
        return ""
    rows = q["rows"]
    parts = ["<div class='grid'><div><h3>Rows of train.csv</h3>",
             kv_table([("in", rows["in"]), ("out (interactions.parquet)", rows["out"]),
                       ("rejected (rejects.parquet)", rows["rejected"]),
                       ("in = out + rejected", rows["in"] == rows["out"] + rows["rejected"])])]
    if q.get("rejected_by_reason"):
        parts.append(table(("rejected because", "rows"), sorted(q["rejected_by_reason"].items())))
    t = q.get("test_rows")
    parts.append("<h3>Rows of test.csv</h3>")
    parts.append("<p class='note'>no test.csv</p>" if t is None else
                 kv_table([(k, v) for k, v in t.items() if not isinstance(v, dict)]))
    if q.get("empty_rows") is not None:
        parts.append("<h3>Empty rows skipped (every field empty)</h3>"
                     + table(("file", "rows"), q["empty_rows"].items()))
    ent = q.get("entities", {})
    if ent:
        first = ("rows", "empty_rows", "without_id", "repeated_id")
        keys = [k for k in first if any(k in v for v in ent.values())]
        keys += sorted({k for v in ent.values() for k in v} - set(keys))
        parts.append("<h3>Member and song files</h3>" + table(("file", *keys), [(f, *(v.get(k) for k in keys))
                                                                               for f, v in ent.items()]))
    parts.append("</div><div><h3>Missing values (share of train rows)</h3>")
    cols = q.get("columns", {})
    parts.append(table(("column", "missing before", "missing after", "filled with"),
                       [(c, share(v.get("missing_before")), share(v.get("missing_after")), v.get("filled_with"))
                        for c, v in sorted(cols.items(), key=lambda kv: -(kv[1].get("missing_before") or 0))]))
    cov = q.get("coverage", {})
    dist = q.get("distinct", {})
    parts.append("<h3>Coverage</h3>" + kv_table([(k.replace("_", " "), share(v)) for k, v in cov.items()]
                                               + [(f"distinct {k}", v) for k, v in dist.items()]))
    out = q.get("outliers", {})
    if out:
        parts.append("<h3>Outliers</h3>" + table(("column", "method", "bounds", "clipped", "out of range"),
                                                 [(c, v.get("method"), v.get("bounds"), v.get("clipped"),
                                                   v.get("out_of_range")) for c, v in out.items()]))
    parts.append("</div></div>")
    split = _json(data / "02_split" / "split.json")
    if split and "cold_start" in split:
        parts.append("<h3>Cold start (test rows the train split has never seen)</h3>"
                     + kv_table([(k.replace("_", " "), share(v)) for k, v in split["cold_start"].items()]))
    return "".join(parts)


def split_part(data: Path) -> str:
    s = _json(data / "02_split" / "split.json")
    if s is None:
        return ""
    parts = [p for p in ("train", "valid", "test") if p in s]
    total = sum(s[p]["rows"] for p in parts)
    body = table(("part", "rows", "share", "time_order from", "to", "replay rate"),
                 [(p, s[p]["rows"], share(s[p]["rows"] / total), s[p].get("time_order_min"),
                   s[p].get("time_order_max"), s[p].get("target_mean")) for p in parts])
    return body + "<p class='note'>Cold start: see Data and quality.</p>"


def features_part(data: Path) -> str:
    spec = _json(data / "03_features" / "features.json")
    if spec is None:
        return ""
    feats = spec.get("features", [])
    by = {}
    for f in feats:
        by.setdefault(f.get("source", "?"), []).append(f["name"])
    rows = [(src, len(names), ", ".join(names[:8]) + (" …" if len(names) > 8 else "")) for src, names in by.items()]
    return f"<p>{len(feats)} features.</p>" + table(("family", "features", "examples"), rows)


def training_part(data: Path) -> str:
    m = _json(data / "04_train" / "metrics.json")
    if m is None:
        return ""
    rows = []
    for name, e in m.get("models", {}).items():
        rows.append((name, e.get("train", {}).get("auc"), e.get("valid", {}).get("auc"),
                     e.get("valid", {}).get("logloss"), e.get("valid", {}).get("accuracy"), e.get("fit_seconds")))
    r = m.get("rows", {})
    note = (f"<p class='note'>train {fmt(r.get('train'))} rows (metrics on {fmt(r.get('train_scored'))}), "
            f"valid {fmt(r.get('valid'))} rows, {fmt(m.get('features'))} features.</p>")
    return note + table(("model", "train AUC", "valid AUC", "valid log-loss", "valid accuracy", "fit seconds"), rows)


def _class_counts(path: Path) -> tuple[int | None, int | None]:
    if not path.is_file():
        return None, None
    y = pl.read_parquet(path, columns=["target"])["target"]
    return int((y == 1).sum()), int((y == 0).sum())


def auc_interval(auc: float, n_pos: int, n_neg: int, z: float = 1.959964) -> tuple[float, float]:
    """95% interval of an AUC from Hanley & McNeil (1982): its standard error from the AUC and class sizes."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    se = math.sqrt(max(var, 0.0))
    return max(0.0, auc - z * se), min(1.0, auc + z * se)


def wilson_interval(p: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion p observed on n rows."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


PREDICT_PLOTS = {"roc": "ROC curves on the test split (oracle = true probabilities)",
                 "calibration": "Calibration: predicted vs observed replay rate",
                 "auc_by_segment": "AUC by segment", "ranking_curves": "ALS ranking metrics by cut-off k",
                 "confusion": "Confusion matrices at 0.5", "lgbm_importance": "LightGBM feature importance"}


def test_part(data: Path) -> str:
    m = _json(data / "05_predict" / "metrics.json")
    if m is None:
        return ""
    oracle = m.get("oracle")
    keys = ("logloss", "accuracy", "brier")
    pos, neg = _class_counts(data / "05_predict" / "predictions.parquet")

    def auc_cell(auc):
        if auc is None or not pos or not neg:
            return auc
        lo, hi = auc_interval(auc, pos, neg)
        return f"{auc:.4f} [{lo:.4f}, {hi:.4f}]"

    n_rows = (pos or 0) + (neg or 0)

    def rate_cell(k, v):
        if k != "accuracy" or v is None or not n_rows:
            return v
        lo, hi = wilson_interval(v, n_rows)
        return f"{v:.4f} [{lo:.4f}, {hi:.4f}]"

    rows = [(n, auc_cell(e.get("auc")), *(rate_cell(k, e.get(k)) for k in keys),
             (oracle["auc"] - e["auc"]) if oracle and e.get("auc") is not None else None)
            for n, e in m.get("models", {}).items()]
    if oracle:
        rows.append(("oracle (true probabilities)", auc_cell(oracle.get("auc")),
                     *(rate_cell(k, oracle.get(k)) for k in keys), 0.0))
    body = (f"<p class='note'>{fmt(m.get('rows'))} test rows ({fmt(pos)} replays, {fmt(neg)} not). AUC with its "
            "95% interval (Hanley &amp; McNeil's standard error), accuracy with its Wilson 95% interval. The oracle scores the true replay probabilities "
            "of the synthetic generator: the ceiling any model can reach.</p>"
            + table(("model", "test AUC [95%]", "log-loss", "accuracy [95%]", "Brier", "oracle AUC − AUC"), rows))
    seg = m.get("segments") or {}
    if seg:
        models = list(seg)
        labels = []
        for n in models:
            for s_name, groups in seg[n].items():
                for g, v in groups.items():
                    if (s_name, g) not in labels:
                        labels.append((s_name, g))
        def cell(n, s_name, g):
            v = seg[n].get(s_name, {}).get(g)
            return v.get("auc") if isinstance(v, dict) else v
        def rows_of(s_name, g):
            v = seg[models[0]].get(s_name, {}).get(g)
            return v.get("n", v.get("rows")) if isinstance(v, dict) else None
        body += "<h3>AUC by segment</h3>" + table(("segment", "value", "rows", *models),
                                                  [(s, g, rows_of(s, g), *(cell(n, s, g) for n in models))
                                                   for s, g in labels])
    rank = m.get("ranking")
    if rank:
        body += "<h3>Ranking of unseen songs (ALS and the popularity baseline, top-k)</h3>" + kv_table(
            [(k, v) for k, v in flatten(rank) if not isinstance(v, dict)])   # intervals print as [lo, hi]
    sub = m.get("submission")
    if sub:
        body += "<h3>Submission</h3>" + kv_table(list(sub.items()))
    return body + _plots(data / "05_predict" / "plots", PREDICT_PLOTS)


GROUP_HEADERS = {"share": "share of train", "delta_logloss": "Δ test log-loss (retrained)",
                 "predicted_logloss": "Δ log-loss (sum of LOO)", "delta_auc": "Δ test AUC (retrained)",
                 "predicted_auc": "Δ AUC (sum of LOO)"}

INFLUENCE_PLOTS = {"estimate_vs_exact": "LOO estimate vs exact retraining (validation sample)",
                   "removal_curves": "Test log-loss after removing the most harmful / helpful / random rows",
                   "loo_distributions": "Distribution of LOO influence on test log-loss",
                   "ablation_curves": "Random ablations: retrained change vs sum of LOO estimates"}

VALIDATION_HEADLINE = (("exact.n", "n"), ("exact.pearson", "Pearson"), ("exact.spearman", "Spearman"),
                       ("exact.top10_overlap", "top-10% overlap"), ("noise_ceiling.spearman", "noise ceiling"),
                       ("share_of_ceiling", "share of ceiling"), ("exact.auc.spearman", "AUROC Spearman"),
                       ("self.exact.spearman", "self-influence Spearman"), ("seconds", "seconds"),
                       ("retrains", "retrains"))


def _headline(report: dict) -> dict:
    flat = dict(flatten(report))
    out = {label: flat.get(key) for key, label in VALIDATION_HEADLINE}
    for key, v in flat.items():  # intervals, wherever a stage puts them
        if any(t in key.split(".")[-1] for t in ("ci", "interval")) and key.startswith("exact"):
            out[key] = v
    return out


def influence_part(data: Path) -> str:
    v = _json(data / "06_influence" / "validation.json")
    if v is None:
        return ""
    models = list(v.get("models", {}))
    loo_models = models or list(v.get("loo_seconds", {}))
    body = (f"<p class='note'>Influence of a training row = test metric of the model trained without it − "
            f"with it ({fmt(v.get('rows'))} train rows, {fmt(v.get('test_rows'))} test rows). A positive log-loss "
            "influence means the row helps; the most harmful rows have the most negative values.</p>")
    if models:
        heads = {m: _headline(v["models"][m]) for m in models}
        cols = [c for c in dict.fromkeys(k for h in heads.values() for k in h) if any(h.get(c) is not None
                                                                                       for h in heads.values())]
        body += ("<h3>Estimates checked against exact retraining</h3>"
                 + table(("model", "method", *cols), [(m, v["models"][m].get("method"), *(heads[m].get(c) for c in cols))
                                                     for m in models]))
        noisy = {m: v["models"][m].get("noisy_label") for m in models if v["models"][m].get("noisy_label")}
        if noisy:
            keys = [k for k, _ in flatten(next(iter(noisy.values()))) if k]
            body += ("<h3>Noisy labels: flipped labels found among the most harmful rows</h3>"
                     + table(("model", *keys), [(m, *(dict(flatten(r)).get(k) for k in keys)) for m, r in noisy.items()]))
        body += "".join(_all_figures(v["models"][m], f"all validation figures of {m}") for m in models)
    if (data / "06_influence" / "loo.parquet").is_file():
        for m in loo_models:
            ext = extreme_rows(data, m)
            if ext is None:
                continue
            body += (f"<h3>{esc(m)}: most harmful and most helpful training rows</h3><p class='note'>"
                     f"{esc(m)}_logloss: influence on the test log-loss; {esc(m)}_self: change of the row's own "
                     f"log-loss when it is removed; {esc(m)}_own_loss: its log-loss under the model trained without "
                     "it. Ids as in the input files; the row is that data row of train.csv.</p>")
            for kind in ("harmful", "helpful"):
                df = ext[kind].with_columns((pl.col("time_order") + 1).alias("time_order")).rename(
                    {"time_order": "train.csv data row"})
                cols = df.columns
                body += (f"<p class='note'>most {kind}</p><div class='scroll'>"
                         + table(cols, df.select(cols).rows(), cls="rows") + "</div>")
    gpath = data / "06_influence" / "groups.parquet"
    if gpath.is_file():
        g = pl.read_parquet(gpath)
        cols = [c for c in ("model", "kind", "group", "rows", "share", "delta_logloss", "predicted_logloss",
                            "delta_auc", "predicted_auc") if c in g.columns]
        extra = [c for c in g.columns if c not in cols]
        if "share" in g.columns:
            g = g.with_columns((pl.col("share") * 100).round(1).cast(pl.String) + "%")
        top = (g.with_columns(pl.col("delta_logloss").abs().alias("_a")).sort("_a", descending=True)
               .group_by("model", maintain_order=True).head(6).drop("_a"))
        head = [GROUP_HEADERS.get(c, c) for c in cols + extra]
        body += ("<h3>Group effects (retrained without the group; the six largest log-loss changes per model)</h3>"
                 + table(head, top.select(cols + extra).rows())
                 + f"<details><summary>all {g.height} group retrainings</summary>"
                 + table(head, g.select(cols + extra).rows()) + "</details>")
    return body + _plots(data / "06_influence" / "plots", INFLUENCE_PLOTS)
