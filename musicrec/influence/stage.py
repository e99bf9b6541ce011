"""Stage 06: influence of every training row and of groups of rows, checked by retraining."""
from __future__ import annotations

import gc
import json
import logging
import time

import numpy as np
import polars as pl

from musicrec.config import INFLUENCE_MODELS, ConfigError
from musicrec.influence import ESTIMATORS
from musicrec.influence import plots as iplots
from musicrec.influence import noise
from musicrec.influence.groups import group_effects, meaningful_groups, random_ablations, summarize
from musicrec.influence.heldout import describe, half_influence, user_halves
from musicrec.influence.retrain import Retrainer
from musicrec.influence.stats import correlation
from musicrec.influence.validate import validate_model
from musicrec.manifest import StageRun
from musicrec.models import load_feature_set, load_model
from musicrec.progress import Progress, track
from musicrec.rng import derived_seed, stage_rng
from musicrec.sources import untimed
from musicrec.truth import read_truth, truth_for

log = logging.getLogger("musicrec")

STAGE = "06_influence"
GROUP_COLUMNS = ("time_order", "user", "song", "source_system_tab", "genre", "language", "bd", "bd_missing")


def category_names(categories: pl.DataFrame) -> dict[str, dict[int, str]]:
    return {col: dict(zip(g["code"].to_list(), g["value"].to_list()))
            for (col,), g in categories.group_by("column")}


def flipped_labels(cfg: dict, st: StageRun, split_rows: pl.DataFrame, y: np.ndarray, rng) -> tuple:
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
    return flipped, noise.report(flipped, source, rng, p_true, y)


def run(cfg: dict, force: bool = False) -> dict:
    icfg = cfg["influence"]
    if untimed(cfg):
        raise ConfigError("06_influence needs labelled events (a training loss per row); hetrec play counts have "
                          "none: stages 01-05 are the whole pipeline for data.listens.format hetrec")
    with StageRun(STAGE, cfg, force=force) as st:
        with st.step("read"):
            spec = json.loads(st.input("03_features", "features.json").read_text())
            data = {n: load_feature_set(st.input("03_features", f"features_{n}.parquet"), spec)
                    for n in ("train", "valid", "test")}
            trained = json.loads(st.input("04_train", "metrics.json").read_text())["models"]
            names = [m for m in icfg["models"] if m in trained]
            for m in names:
                for f in trained[m]["files"]:
                    st.input("04_train", f)
            train, valid, test = data["train"], data["valid"], data["test"]
            time_order = train.keys["time_order"].to_numpy()
            split_path = st.input("02_split", "train.parquet")
            present = pl.read_parquet_schema(split_path)
            keep_cols = [c for c in (*GROUP_COLUMNS, "label_flipped") if c in present]
            rows = (pl.DataFrame({"time_order": time_order}).join(
                pl.read_parquet(split_path, columns=keep_cols), on="time_order", how="left", maintain_order="left"))
            names_map = category_names(pl.read_parquet(st.input("01_preprocess", "categories.parquet")))
            flipped, noise_report = flipped_labels(cfg, st, rows, train.y, stage_rng(cfg, 6, 98))
        skipped = [m for m in icfg["models"] if m not in trained]
        if skipped:
            log.warning("%s: no trained model for %s (see train.models); skipped", STAGE, ", ".join(skipped))

        test_users = test.keys["user"].to_numpy()
        halves = user_halves(test_users, stage_rng(cfg, 6, 99))
        vcfg = icfg["validate"]
        n_groups_runs = icfg["ablation"]["repeats"] * len(icfg["ablation"]["fractions"])
        groups = meaningful_groups(rows, names_map, icfg["groups"]) if icfg["groups"]["enabled"] else []
        heldout = bool(vcfg["removal_fractions"]) or bool(groups) or n_groups_runs > 0
        loo_cols, loo_seconds, validation, group_rows, pairs, group_summary = {}, {}, {}, [], {}, {}
        for name in track(names, "influence models", unit="models", every=0.0):
            model = load_model(name, st.dir.parent / "04_train")
            with st.step(f"loo {name}"):
                t0 = time.perf_counter()
                est = ESTIMATORS[name](model, train, test)
                loo = est.loo()
                loo_seconds[name] = round(time.perf_counter() - t0, 3)
            for k, v in loo.items():
                loo_cols[f"{name}_{k}"] = v
            if name == "rf":
                loo_cols["rf_data_oob"] = est.data_oob
            influence = None
            if heldout:
                with st.step(f"influence on test halves {name}"):
                    influence = half_influence(est, loo["logloss"], halves)
            retrainer = Retrainer(model, train, valid, test, parts=halves)
            idx = INFLUENCE_MODELS.index(name)
            seeds = (retrainer.seed, derived_seed(stage_rng(cfg, 6, idx, 1)))
            rng = stage_rng(cfg, 6, idx, 2)
            if vcfg["rows"][name] > 0 or vcfg["removal_fractions"]:
                with st.step(f"validate {name}"):
                    def on_half(h, name=name, model=model):
                        return ESTIMATORS[name](model, train, test.take(halves[h]))
                    validation[name] = validate_model(est, loo, retrainer, vcfg, seeds, rng, influence, on_half)
                    validation[name]["loo_seconds"] = loo_seconds[name]
                    if hasattr(est, "leaf_value_error"):
                        validation[name]["leaf_value_reproduction_error"] = est.leaf_value_error
                    if name == "rf":
                        finite = np.isfinite(est.data_oob)
                        validation[name]["data_oob_spearman_with_loo"] = correlation(
                            est.data_oob[finite], loo["logloss"][finite], rng)
                    sample = np.array(validation[name].pop("sample_rows"), dtype=np.int64)
                    exact = validation[name].pop("_exact_logloss", None)
                    if exact is not None:
                        pairs[name] = (loo["logloss"][sample], exact, validation[name]["exact"])
            else:
                validation[name] = {"method": est.method, "loo_seconds": loo_seconds[name], "exact": None}
            if flipped is not None:
                validation[name]["label_noise"] = {
                    "rows": "training split (all rows)",
                    **noise.model_rankings(loo, flipped, rng, est.data_oob if name == "rf" else None)}
            if groups or n_groups_runs:
                with st.step(f"groups {name}"), Progress(len(groups) + n_groups_runs, f"groups {name}",
                                                        unit="retrains") as progress:
                    mine = group_effects(retrainer, seeds[0], groups, est, influence, halves, progress)
                    if n_groups_runs:
                        mine += random_ablations(retrainer, seeds[0], icfg["ablation"]["fractions"],
                                                 icfg["ablation"]["repeats"], est, influence, halves, rng, progress)
                    group_rows += [{"model": name, **r} for r in mine]
                    group_summary[name] = summarize(mine, rng, name)
            log.info("%s: %s LOO for %d rows in %.1fs, %d retrains", STAGE, name, len(train),
                     loo_seconds[name], retrainer.fits)
            # one model's matrices at a time: at full size each estimator and retrainer holds GBs
            del est, loo, model, retrainer
            gc.collect()

        with st.step("write"):
            loo_df = train.keys.select("time_order", "user", "song").with_columns(
                pl.Series("target", train.y), *(pl.Series(k, v) for k, v in loo_cols.items()))
            if flipped is not None:
                loo_df = loo_df.with_columns(pl.Series("label_flipped", flipped))
            st.write_parquet(loo_df, "loo.parquet")
            report = {"models": validation, "loo_seconds": loo_seconds, "rows": len(train),
                      "test_rows": len(test), "definition": "metric(trained without row) - metric(trained with row)",
                      "rows_used": {
                          "loo.parquet": "influence on the whole test split's metrics",
                          "exact, noise_ceiling, fixed_structure, closed_form/newton_step": "the whole test split "
                          "(no selection involved: the sampled rows are drawn at random)",
                          "removal": "selected on one test half, scored on the other (scored_on_A: selected on B)",
                          "groups": "per test half: the group's predicted and retrained change of that half",
                          "label_noise": "training split rows; detection needs no test rows"},
                      "test_halves": {"by": "user", **describe(halves, test_users)}}
            if noise_report is not None:
                report["label_noise"] = noise_report
            if group_rows:
                gdf = pl.DataFrame(group_rows, infer_schema_length=None)
                st.write_parquet(gdf.filter(pl.col("kind") != "random_ablation").drop("fraction", "repeat", strict=False),
                                 "groups.parquet")
                if n_groups_runs:
                    st.write_parquet(gdf.filter(pl.col("kind") == "random_ablation"), "ablations.parquet")
                report["groups"] = group_summary
            st.write_json(report, "validation.json")
        with st.step("plots"):
            iplots.loo_distributions({m: loo_cols[f"{m}_logloss"] for m in names}, st.output("plots/loo_distributions.png"))
            if pairs:
                iplots.estimate_vs_exact(pairs, st.output("plots/estimate_vs_exact.png"))
            removal = {m: r["removal"] for m, r in validation.items() if r.get("removal")}
            if removal:
                iplots.removal_curves(removal, st.output("plots/removal_curves.png"))
            if group_rows:
                g = pl.DataFrame(group_rows, infer_schema_length=None)
                iplots.group_scatter(g, group_summary, st.output("plots/groups_predicted_vs_retrained.png"))
                if n_groups_runs:
                    iplots.ablation_curves(g.filter(pl.col("kind") == "random_ablation"),
                                           st.output("plots/ablation_curves.png"))
                for kind in g.filter(pl.col("kind") != "random_ablation")["kind"].unique(maintain_order=True):
                    iplots.group_bars(g, kind, st.output(f"plots/groups_{kind}.png"))
        st.info.update(models=names, rows=len(train))
    return report
