"""The report's stage-06 section: estimates against the library, noisy labels, extreme rows, groups."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from musicrec.outputs.common import Correlation, Detector
from musicrec.influence.groups import TRUST_MIN_N, TRUSTED, ranks_reliably
from musicrec.outputs.influence import GroupSummary, ModelValidation, Validation
from musicrec.report.html import esc, fmt, table
from musicrec.report.influence_rows import extreme_rows
from musicrec.report.ranking_part import ranking_part
from musicrec.report.sections import all_figures, plots_grid

INFLUENCE_PLOTS = {"estimate_vs_exact": "LOO estimate vs exact retraining (validation sample)",
                   "removal_curves": "Test log-loss after removing the most harmful / helpful / random rows",
                   "loo_distributions": "Distribution of LOO influence on test log-loss",
                   "ablation_curves": "Random ablations: retrained change vs predicted change",
                   "groups_predicted_vs_retrained": "Groups: predicted vs retrained change of each test half's log-loss",
                   "groups_that_help_and_hurt": "The groups whose removal is predicted to help or hurt most"}


def with_ci(c: Correlation | None, digits: int = 3) -> str | None:
    """A correlation or rate as 'value [low, high]' (n in the table's n column)."""
    if c is None or c.value is None:
        return None
    ci = c.ci95
    return f"{c.value:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


def headline(v: ModelValidation) -> tuple:
    """One model's row of the validation table."""
    exact = v.exact
    own = v.own_vs_library.max_rel_err if v.own_vs_library else (
        v.fixed_structure.exact_path_vs_refit_max_rel_err if v.fixed_structure else None)
    ceil = v.noise_ceiling
    ceiling = None if ceil is None else (ceil.note if ceil.value is None else with_ci(ceil) +
                                         ("" if ceil.measurable else " (not measurable)"))
    return (exact.n if exact else None, with_ci(exact.spearman) if exact else None,
            with_ci(exact.pearson) if exact else None, exact.top10_overlap if exact else None,
            with_ci(exact.auc.spearman) if exact and exact.auc else None,
            with_ci(v.self_influence.exact.spearman) if v.self_influence else None, own, ceiling,
            v.share_of_ceiling, v.seconds, v.retrains)


HEADLINE = ("n", "Spearman vs library [95%]", "Pearson [95%]", "top-10% overlap", "AUROC Spearman [95%]",
            "self-influence Spearman [95%]", "own removal model vs library: max rel err", "noise ceiling [95%]",
            "share of ceiling", "seconds", "retrains")


def noisy_labels(v: Validation) -> str:
    """Every model's rankings as detectors of the flipped training labels, beside the oracle."""
    rows = []
    for m, mv in v.models.items():
        if mv.label_noise is None:
            continue
        for name, d in mv.label_noise.rankings.items():
            rows.append((m, name, with_ci(d.lift_10pct, 2), with_ci(d.lift_5pct, 2), d.pr_auc))
    if not rows:
        return ""
    ln = v.label_noise
    oracle: Detector | None = ln.oracle if ln else None
    if oracle is not None:
        rows.append(("oracle", "posterior of a flip from the truth", with_ci(oracle.lift_10pct, 2),
                     with_ci(oracle.lift_5pct, 2), oracle.pr_auc))
    note = "" if ln is None else (f"<p class='note'>{fmt(ln.flipped)} of {fmt(ln.rows)} training labels flipped "
                                  f"({ln.share:.1%}; {esc(ln.source)}). Lift at k%: share of flipped rows among the k% "
                                  "ranked most suspect over the overall share (1 = random), with its 95% interval; "
                                  f"PR-AUC of a random ranking is {ln.share:.3f}.</p>")
    return ("<h3>Noisy labels: flipped training labels found by each ranking</h3>" + note
            + table(("model", "ranking", "lift@10% [95%]", "lift@5% [95%]", "PR-AUC"), rows))


def extremes(data: Path, models: list[str]) -> str:
    body = ""
    for m in models:
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
    return body


def _ci_text(v, ci) -> str | None:
    if v is None:
        return None
    return f"{v:+.2e}" + (f" [{ci[0]:+.1e}, {ci[1]:+.1e}]" if ci is not None and len(ci) == 2 else "")


def trusted(summary: GroupSummary) -> str:
    return "yes" if ranks_reliably([summary.predicted[h]["spearman"] for h in ("A", "B")]) else "not shown"


def group_summary_table(groups: dict[str, GroupSummary]) -> str:
    """Per model: the predictor, how many groups, and its agreement with retraining per half."""
    rows = []
    for m, s in groups.items():
        p, sec = s.predicted, s.seconds or {}
        rows.append((m, s.predictor, s.groups, s.retrained,
                     *(with_ci(Correlation.from_dict(p[h]["spearman"]), 2) for h in ("A", "B")),
                     *(with_ci(Correlation.from_dict(p[h]["pearson"]), 2) for h in ("A", "B")),
                     *(p[h].get("relative_error") for h in ("A", "B")),
                     sec.get("set_prediction_per_group"), sec.get("retrain_per_group"), trusted(s)))
    return table(("model", "predictor", "groups", "retrained", "Spearman A [95%]", "Spearman B [95%]", "Pearson A",
                  "Pearson B", "rel. error A", "rel. error B", "s per prediction", "s per retrain",
                  f"trusted (n ≥ {TRUST_MIN_N}, both lower bounds ≥ {TRUSTED})"), rows)


def groups_tables(path: Path, groups: dict[str, GroupSummary]) -> str:
    """The groups that help and hurt most per model, then every group: predicted change of each test
    half's log-loss with its interval over the half's users, and the retrained change where retrained."""
    if not path.is_file():
        return ""
    g = pl.read_parquet(path)
    wide = (g.group_by("model", "label", "rows", "share", "predictor", maintain_order=True)
            .agg(*(pl.col(c).filter(pl.col("half") == h).first().alias(f"{c}_{h}")
                   for c in ("predicted_logloss", "predicted_logloss_ci95", "delta_logloss", "delta_logloss_ci95")
                   for h in ("A", "B")))
            .with_columns(((pl.col("predicted_logloss_A") + pl.col("predicted_logloss_B")) / 2).alias("mean")))

    def rows_of(df):
        return [(r["model"], r["label"], r["rows"], f"{100 * r['share']:.1f}%",
                 _ci_text(r["predicted_logloss_A"], r["predicted_logloss_ci95_A"]),
                 _ci_text(r["predicted_logloss_B"], r["predicted_logloss_ci95_B"]),
                 _ci_text(r["delta_logloss_A"], r["delta_logloss_ci95_A"]),
                 _ci_text(r["delta_logloss_B"], r["delta_logloss_ci95_B"]), r["predictor"],
                 trusted(groups[r["model"]]) if r["model"] in groups else None) for r in df.iter_rows(named=True)]

    head = ("model", "group", "rows", "share of train", "predicted Δ log-loss, half A [95%]", "predicted, half B [95%]",
            "retrained, half A [95%]", "retrained, half B [95%]", "predictor", "predictor trusted")
    hurt = wide.sort("mean").group_by("model", maintain_order=True).head(5)
    helps = wide.sort("mean", descending=True).group_by("model", maintain_order=True).head(5)
    note = ("<p class='note'>Δ log-loss of a test half when the model is trained without the group: negative = the "
            "group hurts (removing it helps), positive = it helps. Intervals over the half's users. Retrained only "
            "for the checked groups.</p>")
    return ("<h3>Groups: the prediction against retraining</h3>" + group_summary_table(groups)
            + "<h3>The groups that hurt most (removing them lowers the test log-loss)</h3>" + note
            + "<div class='scroll'>" + table(head, rows_of(hurt), cls="rows") + "</div>"
            + "<h3>The groups that help most</h3><div class='scroll'>" + table(head, rows_of(helps), cls="rows") + "</div>"
            + f"<details><summary>all {wide.height} model-group predictions</summary><div class='scroll'>"
            + table(head, rows_of(wide), cls="rows") + "</div></details>")


def influence_part(data: Path) -> str:
    path = data / "06_influence" / "validation.json"
    if not path.is_file():
        return ""
    v = Validation.read(path)
    models = list(v.models)
    body = (f"<p class='note'>Influence of a training row = test metric of the model trained without it − "
            f"with it ({fmt(v.rows)} train rows, {fmt(v.test_rows)} test rows). A positive log-loss influence means "
            "the row helps; the most harmful rows have the most negative values.</p>")
    if models:
        body += ("<h3>Estimates checked against the library</h3><p class='note'>n sampled training rows per model, "
                 "each removed and the model refitted by its library where a closed refit exists, or the removal "
                 "written into the library's own model (fixed structure); full retraining under two seeds gives the "
                 "noise ceiling where influence.validate.full_retrain is on.</p><div class='scroll'>"
                 + table(("model", *HEADLINE), [(m, *headline(v.models[m])) for m in models]) + "</div>"
                 + table(("model", "estimator", "checked against"),
                         [(m, v.models[m].method, v.models[m].reference) for m in models]))
        body += noisy_labels(v)
        body += "".join(all_figures(v.models[m].to_dict(), f"all validation figures of {m}") for m in models)
    if (data / "06_influence" / "loo.parquet").is_file():
        body += extremes(data, models or list(v.loo_seconds))
    if v.groups:
        body += groups_tables(data / "06_influence" / "groups.parquet", v.groups)
    if v.ranking:
        body += ranking_part(data, v.ranking)
    return body + plots_grid(data / "06_influence" / "plots", INFLUENCE_PLOTS)
