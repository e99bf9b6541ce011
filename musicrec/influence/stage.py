"""Stage 06: influence of every training row and of groups of rows, checked by retraining."""
from __future__ import annotations

import gc
import json
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from musicrec import families
from musicrec.errors import InputError
from musicrec.engine import open_engine
from musicrec.families.trained import load_trained
from musicrec.influence import noise
from musicrec.influence import plots as iplots
from musicrec.influence import groups as grouping
from musicrec.influence.heldout import describe, half_influence, user_halves
from musicrec.influence.ranking import run_ranking
from musicrec.influence.retrain import Retrainer, kept
from musicrec.influence.tasks import rows_on, sets_on
from musicrec.influence.validate import validate_model
from musicrec.manifest import StageRun
from musicrec.models import load_feature_set
from musicrec.outputs.influence import GroupSummary, LabelNoise, ModelValidation, NoiseReport, Validation
from musicrec.progress import Progress, track
from musicrec.rng import derived_seed, stream
from musicrec.sources import untimed
from musicrec.truth import read_truth, truth_for

log = logging.getLogger("musicrec")

STAGE = "06_influence"
GROUP_COLUMNS = ("time_order", "user", "song", "source_system_tab", "genre", "language", "bd", "bd_missing")
ROWS_USED = {
    "loo.parquet": "influence on the whole test split's metrics",
    "exact, noise_ceiling, fixed_structure, own_vs_library": "the whole test split (no selection involved: the "
                                                             "sampled rows are drawn at random)",
    "removal": "selected on one test half, scored on the other (scored_on_A: selected on B)",
    "groups": "per test half: the group's predicted and retrained change of that half",
    "label_noise": "training split rows; detection needs no test rows",
}


def category_names(categories: pl.DataFrame) -> dict[str, dict[int, str]]:
    return {col: dict(zip(g["code"].to_list(), g["value"].to_list()))
            for (col,), g in categories.group_by("column")}


def flipped_labels(cfg: dict, st: StageRun, split_rows: pl.DataFrame, y: np.ndarray,
                   rng) -> tuple[np.ndarray | None, NoiseReport | None]:
    """(flipped mask over the train rows, report) or (None, None) when no label was flipped.

    Rows flipped on the training split by stage 02 (`label_flipped`) come first; otherwise the
    synthetic generator's flips of train.csv (truth.parquet). The truth's p_true, where there is
    one, gives the oracle detector."""
    truth = read_truth(cfg, st)
    time_order = split_rows["time_order"]
    flipped, source = None, None
    if "label_flipped" in split_rows.columns and split_rows["label_flipped"].fill_null(False).any():
        flipped = split_rows["label_flipped"].fill_null(False).to_numpy()
        source = "split.train_label_noise (training split only)"
    elif truth is not None:
        t = truth.filter(pl.col("file") == "train").select("row", "flipped")
        f = (pl.DataFrame({"row": time_order.cast(pl.Int64)}).join(t, on="row", how="left", maintain_order="left")
             ["flipped"].fill_null(False).to_numpy())
        if f.any():
            flipped, source = f, "data.synthetic.label_noise (train.csv before the split: test labels too)"
    if flipped is None:
        return None, None
    t = truth_for(truth, "train", time_order)
    p_true = None if t is None else t["p_true"].to_numpy()
    return flipped, NoiseReport.from_dict(noise.report(flipped, source, rng, p_true, y))


@dataclass
class Explained:
    """What one model's analysis adds to the stage's outputs."""

    loo_columns: dict[str, np.ndarray]
    loo_seconds: float
    validation: ModelValidation
    pairs: tuple | None = None                           # (estimate, exact, comparison) of the checked rows
    groups: list[dict] = field(default_factory=list)
    group_summary: GroupSummary | None = None


def explain(cfg: dict, st: StageRun, name: str, model, data: dict, halves: dict, groups: list,
            flipped: np.ndarray | None, fit_seconds: float | None = None, eng=None) -> Explained:
    """Leave-one-out of every training row of one model, its validation and its group effects."""
    vcfg = cfg["influence"]["validate"]
    train, valid, test = data["train"], data["valid"], data["test"]
    family = families.get(name)
    with st.step(f"loo {name}"), rows_on(eng):
        t0 = time.perf_counter()
        est = family.influence(model, train, test)
        loo = est.loo()
        loo_seconds = round(time.perf_counter() - t0, 3)
    columns = {f"{name}_{k}": v for k, v in loo.items()}
    columns.update({f"{name}_{k}": v for k, v in est.extra_columns().items()})
    influence = None
    if vcfg["removal_fractions"] or (groups and (cfg["influence"]["groups"]["retrain"] is None
                                                 or not est.has_set_predictor)):
        # each half's LOO: for the removal curves, and the groups' sum of LOO beside their prediction
        with st.step(f"influence on test halves {name}"), rows_on(eng):
            influence = half_influence(est, loo["logloss"], halves)
    users = np.unique(test.keys["user"].to_numpy(), return_inverse=True)[1]
    retrainer = Retrainer(model, train, valid, test, parts=halves, users=users, prepared=est.retrain_inputs())
    seeds = (retrainer.seed, derived_seed(stream(cfg, STAGE, "second_seed", name)))
    rng = stream(cfg, STAGE, "validation", name)
    out = Explained(columns, loo_seconds, ModelValidation(family=name, method=est.method, reference=family.library,
                                                          deterministic=family.deterministic, loo_seconds=loo_seconds))
    if vcfg["rows"].get(name) != 0 or vcfg["removal_fractions"]:
        with st.step(f"validate {name}"):
            def on_half(h):
                half = family.influence(model, train, test.take(halves[h]))
                half.prepare_sets(valid, cfg["influence"]["groups"])
                return half
            checked = validate_model(est, loo, retrainer, vcfg, seeds, rng, influence, on_half, loo_seconds, eng)
            out.validation = checked.report
            if checked.exact_logloss is not None:
                out.pairs = (loo["logloss"][checked.sample_rows], checked.exact_logloss, checked.report.exact)
    out.validation.extras = est.extra_validation(loo, rng)
    if flipped is not None:
        out.validation.label_noise = LabelNoise.from_dict({
            "rows": "training split (all rows)", "rankings": noise.model_rankings(loo, flipped, rng, est.rankings())})
    if groups:
        out.groups, out.group_summary = explain_groups(cfg, st, est, retrainer, seeds, groups, influence, halves,
                                                       users, data["valid"], rng, fit_seconds, eng)
    log.info("%s: %s LOO for %d rows in %.1fs, %d retrains", STAGE, name, len(train), loo_seconds, retrainer.fits)
    return out


def explain_groups(cfg: dict, st: StageRun, est, retrainer, seeds: tuple[int, int], groups: list, influence: dict,
                   halves: dict, users: np.ndarray, valid, rng, fit_seconds: float | None = None, eng=None
                   ) -> tuple[list[dict], GroupSummary]:
    """Every group's predicted effect by the family's set predictor, a seeded sample retrained, and
    (influence.groups.ceiling) that sample retrained under a second seed: the noise ceiling. The
    retraining fits influence.groups.seconds (grouping.plan_retrains)."""
    gcfg, name, seed = cfg["influence"]["groups"], est.name, seeds[0]
    family = families.get(name)
    twice = gcfg["ceiling"] and not family.deterministic
    n_check, curve_at, budget_note = grouping.plan_retrains(
        gcfg, len(groups), fit_seconds, gcfg["curve_fractions"] if family.group_curve else [], twice)
    if budget_note:
        log.info("%s: %s groups: %s", STAGE, name, budget_note)
    chosen = np.sort(stream(cfg, STAGE, "group_retrain", name).choice(len(groups), n_check, replace=False))
    est.prepare_sets(valid, gcfg)
    with st.step(f"groups {name}"), Progress(len(groups) + n_check * (1 + twice) + len(curve_at), f"groups {name}",
                                            unit="groups") as progress, \
            sets_on(est, eng) as sets, kept(eng, retrainer, seeds[:1 + twice]):
        predicted, predict_s = grouping.predict(sets, groups, influence, halves, users, progress)
        curve = (grouping.learning_curve(sets, retrainer, seed, curve_at, halves, users,
                                         stream(cfg, STAGE, "learning_curve", name), progress, eng) if curve_at else None)
        retrained, retrain_s = grouping.retrain(retrainer, seed, groups, chosen, halves, users, progress, eng)
        again = grouping.retrain(retrainer, seeds[1], groups, chosen, halves, users, progress, eng)[0] if twice else None
    if curve is not None:
        predicted = grouping.with_curve(predicted, curve)
    recs = grouping.records(predicted, retrained, len(halves), again)
    seconds = {"set_prediction_per_group": round(predict_s, 4), "retrain_per_group": round(retrain_s, 4) if n_check else None,
               "prediction_share_of_retrain": round(predict_s / retrain_s, 4) if n_check and retrain_s > 0 else None}
    log.info("%s: %s groups: %d predicted (%.2fs each), %d retrained (%.2fs each)", STAGE, name, len(groups), predict_s,
             n_check, retrain_s)
    summary = grouping.summarize(recs, rng, name, seconds, seeds)
    summary["retrain_budget"] = budget_note
    if n_check == 0 and not family.group_exact:
        summary["trust"] = f"{family.group_predictor}; not checked against retraining in this run ({budget_note})"
    if curve is not None:
        summary["learning_curve"] = curve
    return [{"model": name, **r} for r in recs], GroupSummary.from_dict(summary)


def run(cfg: dict, force: bool = False) -> Validation:
    """Every trained model of influence.models explained; a ranking family's top-k lists too. Play
    counts without time (hetrec) have no labelled event: only the ranking part runs there."""
    icfg = cfg["influence"]
    labelled = not untimed(cfg)
    with StageRun(STAGE, cfg, force=force) as st:
        with st.step("read"):
            spec = json.loads(st.input("03_features", "features.json").read_text())
            # the train matrix stays in its file: nb, lr and rf read their designs from it batch by batch,
            # and a family that needs it whole (lgbm) reads it and lets it go when done (GBs at KKBOX size)
            data = {n: load_feature_set(st.input("03_features", f"features_{n}.parquet"), spec, stored=n == "train")
                    for n in ("train", "valid", "test")}
            manifest, models = load_trained(st, icfg["models"])
            names = list(models)
            train, test = data["train"], data["test"]
            time_order = train.keys["time_order"].to_numpy()
            split_path = st.input("02_split", "train.parquet")
            present = pl.read_parquet_schema(split_path)
            keep_cols = [c for c in (*GROUP_COLUMNS, "label_flipped") if c in present]
            split_cols = (pl.DataFrame({"time_order": time_order}).join(
                pl.read_parquet(split_path, columns=keep_cols), on="time_order", how="left", maintain_order="left"))
            names_map = category_names(pl.read_parquet(st.input("01_preprocess", "categories.parquet")))
            users_map = pl.read_parquet(st.input("01_preprocess", "users.parquet"), columns=["user", "msno"])
            flipped, noise_report = (flipped_labels(cfg, st, split_cols, train.y, stream(cfg, STAGE, "label_noise"))
                                     if labelled else (None, None))
        skipped = [m for m in icfg["models"] if m not in models]
        if skipped and labelled:
            log.warning("%s: no trained model for %s (see train.models); skipped", STAGE, ", ".join(skipped))

        test_users = test.keys["user"].to_numpy()
        halves = user_halves(test_users, stream(cfg, STAGE, "test_halves"))
        groups = grouping.meaningful_groups(split_cols, names_map, icfg["groups"]) if icfg["groups"]["enabled"] else []
        del split_cols   # the split's columns were for the groups and the flipped labels only
        groups += grouping.random_ablations(len(train), icfg["ablation"]["fractions"], icfg["ablation"]["repeats"],
                                            stream(cfg, STAGE, "ablations"))
        rankers = {n: m for n, m in models.items() if families.get(n).ranker and icfg["ranking"]["enabled"]}
        results: dict[str, Explained] = {}
        if labelled and np.unique(data["test"].y).size < 2:
            raise InputError(st.input("03_features", "features_test.parquet"), "target",
                             f"has one class only in its {len(data['test'])} rows: the influence on the test "
                             "log-loss and AUC needs replays and non-replays (use more data)")
        if labelled:
            for name in [n for n in names if families.get(n).explains(models[n])]:
                log.warning("%s: %s", STAGE, families.get(name).explains(models.pop(name)))
                names.remove(name)
            with open_engine(cfg, st) as eng:   # 06's passes as its tasks on a cluster (musicrec.influence.tasks)
                for name in track(names, "influence models", unit="models", every=0.0):
                    results[name] = explain(cfg, st, name, models.pop(name), data, halves, groups, flipped,
                                            manifest.models[name].fit_seconds, eng)
                    data["train"].release()
                    gc.collect()   # one model's matrices at a time: at full size each estimator and retrainer holds GBs
        else:
            log.info("%s: play counts without time have no labelled event: the ranking part only", STAGE)
        ranked = {}
        user_names = dict(zip(users_map["user"].to_list(), users_map["msno"].to_list()))
        for name, model in rankers.items():
            with st.step(f"ranking {name}"):
                ranked[name] = run_ranking(cfg, name, model, data, groups, halves, labelled, user_names,
                                           lambda purpose, name=name: stream(cfg, STAGE, purpose, name))
        report = write_outputs(st, train, test, results, flipped, noise_report, halves, test_users, ranked)
        st.info.update(models=names, rows=len(train))
    return report


RANKING_KEYS = ("loo_seconds", "loo_coverage", "library_check", "summary", "seconds", "groups_predicted", "users",
                "pruning")


def write_outputs(st: StageRun, train, test, results: dict[str, Explained], flipped, noise_report, halves,
                  test_users, ranked: dict) -> Validation:
    group_rows = [r for e in results.values() for r in e.groups]
    ablations = any(r["kind"] == "random_ablation" for r in group_rows)
    with st.step("write"):
        keys = train.keys.select("time_order", "user", "song")
        if results:
            loo_df = keys.with_columns(pl.Series("target", train.y),
                                       *(pl.Series(k, v) for e in results.values() for k, v in e.loo_columns.items()))
            if flipped is not None:
                loo_df = loo_df.with_columns(pl.Series("label_flipped", flipped))
            st.write_parquet(loo_df, "loo.parquet")
        if ranked:
            st.write_parquet(keys.with_columns(*(pl.Series(f"{n}_rank_{k}", v) for n, r in ranked.items()
                                                 for k, v in r["loo"].items())), "ranking.parquet")
            st.write_parquet(pl.DataFrame([g for r in ranked.values() for g in r["groups"]], infer_schema_length=None),
                             "ranking_groups.parquet")
            effects = [r["user_effects"].with_columns(pl.lit(n).alias("model")) for n, r in ranked.items()
                       if "user_effects" in r]
            if effects:
                st.write_parquet(pl.concat(effects).select("model", pl.exclude("model")), "ranking_users.parquet")
        report = Validation(
            models={m: e.validation for m, e in results.items()},
            loo_seconds={m: e.loo_seconds for m, e in results.items()}, rows=len(train), test_rows=len(test),
            definition="metric(trained without row) - metric(trained with row)", rows_used=ROWS_USED,
            test_halves={"by": "user", **describe(halves, test_users)}, label_noise=noise_report,
            groups={m: e.group_summary for m, e in results.items() if e.group_summary is not None} or None,
            ranking={n: {k: r[k] for k in RANKING_KEYS if k in r} for n, r in ranked.items()} or None)
        if group_rows:
            gdf = pl.DataFrame(group_rows, infer_schema_length=None)
            st.write_parquet(gdf.filter(pl.col("kind") != "random_ablation").drop("fraction", "repeat", strict=False),
                             "groups.parquet")
            if ablations:
                st.write_parquet(gdf.filter(pl.col("kind") == "random_ablation"), "ablations.parquet")
        report.write(st.output("validation.json"))
    with st.step("plots"):
        if results:
            iplots.loo_distributions({m: e.loo_columns[f"{m}_logloss"] for m, e in results.items()},
                                     st.output("plots/loo_distributions.png"))
        pairs = {m: e.pairs for m, e in results.items() if e.pairs is not None}
        if pairs:
            iplots.estimate_vs_exact(pairs, st.output("plots/estimate_vs_exact.png"))
        removal = {m: e.validation.removal for m, e in results.items() if e.validation.removal}
        if removal:
            iplots.removal_curves(removal, st.output("plots/removal_curves.png"))
        if group_rows:
            g = pl.DataFrame(group_rows, infer_schema_length=None)
            summaries = {m: e.group_summary.to_dict() for m, e in results.items() if e.group_summary is not None}
            if g["retrained"].any():
                iplots.group_scatter(g, summaries, st.output("plots/groups_predicted_vs_retrained.png"))
            if ablations and g.filter(pl.col("kind") == "random_ablation")["retrained"].any():
                iplots.ablation_curves(g.filter(pl.col("kind") == "random_ablation"),
                                       st.output("plots/ablation_curves.png"))
            if (g["kind"] != "random_ablation").any():
                iplots.group_extremes(g, st.output("plots/groups_that_help_and_hurt.png"))
    return report
