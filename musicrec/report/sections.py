"""One section per stage, each built only from that stage's files on disk.

Every function takes the data folder and the stage's manifest and returns HTML; what a stage did
not write is left out, and JSON keys this module does not know still appear in the "all figures"
tables, so the report keeps up when stages grow new outputs.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from musicrec.manifest import STAGE_SECTIONS
from musicrec.report.html import esc, flatten, fmt, image, kv_table, share, state_badge, table
from musicrec.outputs.predict import PredictMetrics, Ranking
from musicrec.outputs.quality import Quality, Rows
from musicrec.outputs.train import TrainMetrics


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def plots_grid(folder: Path, captions: dict[str, str]) -> str:
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


def all_figures(obj: dict, title: str) -> str:
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


def accounting(rows: Rows) -> list[tuple[str, object]]:
    """Where every input row went: in = out + rejected (+ what a listen log or the k-core filter sets aside)."""
    parts = [("out (interactions.parquet)", rows.out), ("rejected (rejects.parquet)", rows.rejected)]
    parts += [(label, v) for label, v in (("repeats (later listens of a pair)", rows.repeats),
                                          ("unlabellable (window past the log's end)", rows.unlabellable),
                                          ("sampled out (data.listens.user_sample)", rows.sampled_out),
                                          ("removed by the k-core filter", rows.kcore_removed)) if v is not None]
    total = sum(v for _, v in parts)
    rule = "in = " + " + ".join(label.split(" (")[0] for label, _ in parts)
    return [("in", rows.in_), *parts, (rule, rows.in_ == total)]


def data_quality(data: Path) -> str:
    path = data / "01_preprocess" / "quality.json"
    if not path.is_file():
        return ""
    q = Quality.read(path)
    parts = ["<div class='grid'><div><h3>Rows of the input</h3>", kv_table(accounting(q.rows))]
    if q.rejected_by_reason:
        parts.append(table(("rejected because", "rows"), sorted(q.rejected_by_reason.items())))
    t = q.test_rows
    parts.append("<h3>Rows of test.csv</h3>")
    parts.append("<p class='note'>no test.csv</p>" if t is None else
                 kv_table([(k, v) for k, v in t.to_dict().items() if not isinstance(v, dict)]))
    if q.empty_rows is not None:
        parts.append("<h3>Empty rows skipped (every field empty)</h3>" + table(("file", "rows"), q.empty_rows.items()))
    ent = q.entities or {}
    if ent:
        first = ("rows", "empty_rows", "without_id", "repeated_id")
        keys = [k for k in first if any(k in v for v in ent.values())]
        keys += sorted({k for v in ent.values() for k in v} - set(keys))
        parts.append("<h3>Member and song files</h3>" + table(("file", *keys), [(f, *(v.get(k) for k in keys))
                                                                               for f, v in ent.items()]))
    parts.append("</div><div><h3>Missing values (share of train rows)</h3>")
    parts.append(table(("column", "missing before", "missing after", "filled with"),
                       [(c, share(v.missing_before), share(v.missing_after), v.filled_with)
                        for c, v in sorted(q.columns.items(), key=lambda kv: -(kv[1].missing_before or 0))]))
    parts.append("<h3>Coverage</h3>" + kv_table([(k.replace("_", " "), share(v)) for k, v in q.coverage.to_dict().items()]
                                               + [(f"distinct {k}", v) for k, v in q.distinct.to_dict().items()
                                                  if v is not None]))
    if q.outliers:
        parts.append("<h3>Outliers</h3>" + table(("column", "method", "bounds", "clipped", "out of range"),
                                                 [(c, v.get("method"), v.get("bounds"), v.get("clipped"),
                                                   v.get("out_of_range")) for c, v in q.outliers.items()]))
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
    path = data / "04_train" / "metrics.json"
    if not path.is_file():
        return ""
    m = TrainMetrics.read(path)
    rows = [(name, e.train.auc if e.train else None, e.valid.auc if e.valid else None,
             e.valid.logloss if e.valid else None, e.valid.accuracy if e.valid else None, e.fit_seconds)
            for name, e in m.models.items()]
    note = (f"<p class='note'>train {fmt(m.rows.train)} rows (metrics on {fmt(m.rows.train_scored)}), "
            f"valid {fmt(m.rows.valid)} rows, {fmt(m.features)} features.</p>")
    return note + table(("model", "train AUC", "valid AUC", "valid log-loss", "valid accuracy", "fit seconds"), rows)


PREDICT_PLOTS = {"roc": "ROC curves on the test split (oracle = true probabilities)",
                 "calibration": "Calibration: predicted vs observed replay rate",
                 "auc_by_segment": "AUC by segment", "ranking_curves": "ALS ranking metrics by cut-off k",
                 "confusion": "Confusion matrices at 0.5", "lgbm_importance": "LightGBM feature importance"}


def _with_interval(v: float | None, ci: list[float] | None) -> str | float | None:
    return v if v is None or not ci else f"{v:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]"


RANKING_FIELDS = ("precision", "ndcg", "recall", "map", "hit_rate", "coverage", "novelty", "genre_diversity",
                  "artist_diversity", "users")


def ranking_table(ranking: dict[str, Ranking]) -> str:
    """Each ranking model's metrics at k with intervals, and its paired difference from popularity."""
    k = next(iter(ranking.values())).k
    rows = []
    for name, r in ranking.items():
        diff = (r.minus_popularity or {}).get("ndcg")
        rows.append((name, _with_interval(r.precision, r.precision_ci95), _with_interval(r.ndcg, r.ndcg_ci95),
                     *(getattr(r, f) for f in RANKING_FIELDS[2:]),
                     None if diff is None else _with_interval(diff.value, diff.ci95)))
    head = (f"precision@{k} [95%]", f"NDCG@{k} [95%]", *(f"{f.replace('_', ' ')}@{k}" if f not in
            ("coverage", "novelty", "users") else f for f in RANKING_FIELDS[2:]), f"NDCG@{k} − popularity [95%, paired]")
    return table(("ranking model", *head), rows)


def test_part(data: Path) -> str:
    path = data / "05_predict" / "metrics.json"
    if not path.is_file():
        return ""
    m = PredictMetrics.read(path)
    oracle = m.oracle
    rows = [(n, _with_interval(e.auc, e.auc_ci95), e.logloss, _with_interval(e.accuracy, e.accuracy_ci95), e.brier,
             (oracle.auc - e.auc) if oracle and e.auc is not None else None) for n, e in m.models.items()]
    if oracle:
        rows.append(("oracle (true probabilities)", _with_interval(oracle.auc, oracle.auc_ci95), oracle.logloss,
                     _with_interval(oracle.accuracy, oracle.accuracy_ci95), oracle.brier, 0.0))
    body = ""
    if rows:
        body = (f"<p class='note'>{fmt(m.rows)} test rows. AUC with its 95% interval (Hanley &amp; McNeil's standard "
                "error), accuracy with its Wilson 95% interval. The oracle scores the true replay probabilities of "
                "the synthetic generator: the ceiling any model can reach.</p>"
                + table(("model", "test AUC [95%]", "log-loss", "accuracy [95%]", "Brier", "oracle AUC − AUC"), rows))
    elif m.note:
        body = f"<p class='note'>{esc(m.note)}</p>"
    seg = m.segments or {}
    if seg:
        models = list(seg)
        labels = []
        for n in models:
            for s_name, groups in seg[n].items():
                for g in groups:
                    if (s_name, g) not in labels:
                        labels.append((s_name, g))

        def cell(n, s_name, g):
            return (seg[n].get(s_name, {}).get(g) or {}).get("auc")

        def rows_of(s_name, g):
            return (seg[models[0]].get(s_name, {}).get(g) or {}).get("rows")
        body += "<h3>AUC by segment</h3>" + table(("segment", "value", "rows", *models),
                                                  [(s, g, rows_of(s, g), *(cell(n, s, g) for n in models))
                                                   for s, g in labels])
    if m.ranking:
        body += ("<h3>Ranking of unseen songs (each ranking family and the popularity baseline, top-k)</h3>"
                 "<p class='note'>Means over the test users with a replayed song; intervals: percentile bootstrap "
                 "over those users; the difference from popularity is paired (same users).</p>"
                 + ranking_table(m.ranking))
    if m.submission:
        body += "<h3>Submission</h3>" + kv_table(list(m.submission.to_dict().items()))
    return body + plots_grid(data / "05_predict" / "plots", PREDICT_PLOTS)
