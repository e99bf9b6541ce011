"""The report's stage-06 section: estimates against the library, noisy labels, extreme rows, groups."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from musicrec.outputs.common import Correlation, Detector
from musicrec.outputs.influence import ModelValidation, Validation
from musicrec.report.html import esc, fmt, table
from musicrec.report.influence_rows import extreme_rows
from musicrec.report.sections import all_figures, plots_grid

GROUP_HEADERS = {"share": "share of train", "delta_logloss": "Δ test log-loss (retrained)",
                 "predicted_logloss": "Δ log-loss (predicted)", "delta_auc": "Δ test AUC (retrained)",
                 "sum_of_loo": "Δ log-loss (sum of LOO)"}

INFLUENCE_PLOTS = {"estimate_vs_exact": "LOO estimate vs exact retraining (validation sample)",
                   "removal_curves": "Test log-loss after removing the most harmful / helpful / random rows",
                   "loo_distributions": "Distribution of LOO influence on test log-loss",
                   "ablation_curves": "Random ablations: retrained change vs predicted change"}


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


def groups_table(path: Path) -> str:
    if not path.is_file():
        return ""
    g = pl.read_parquet(path)
    cols = [c for c in ("model", "kind", "group", "rows", "share", "half", "delta_logloss", "predicted_logloss",
                        "predictor", "sum_of_loo", "delta_auc") if c in g.columns]
    extra = [c for c in g.columns if c not in cols]
    if "share" in g.columns:
        g = g.with_columns((pl.col("share") * 100).round(1).cast(pl.String) + "%")
    top = (g.with_columns(pl.col("delta_logloss").abs().alias("_a")).sort("_a", descending=True)
           .group_by("model", maintain_order=True).head(6).drop("_a"))
    head = [GROUP_HEADERS.get(c, c) for c in cols + extra]
    return ("<h3>Group effects (retrained without the group; the six largest log-loss changes per model)</h3>"
            + table(head, top.select(cols + extra).rows())
            + f"<details><summary>all {g.height} group retrainings</summary>"
            + table(head, g.select(cols + extra).rows()) + "</details>")


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
        body += "".join(f"<p class='note'>{esc(m)} groups: {esc(s.trust)}</p>" for m, s in (v.groups or {}).items())
        body += "".join(all_figures(v.models[m].to_dict(), f"all validation figures of {m}") for m in models)
    if (data / "06_influence" / "loo.parquet").is_file():
        body += extremes(data, models or list(v.loo_seconds))
    body += groups_table(data / "06_influence" / "groups.parquet")
    return body + plots_grid(data / "06_influence" / "plots", INFLUENCE_PLOTS)
