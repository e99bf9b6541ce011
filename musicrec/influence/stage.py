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
from musicrec.influence.groups import group_effects, meaningful_groups, random_ablations, summarize_ablations
from musicrec.influence.retrain import Retrainer
from musicrec.influence.validate import validate_model
from musicrec.manifest import StageRun
from musicrec.models import load_feature_set, load_model
from musicrec.rng import derived_seed, model_seed, stage_rng
from musicrec.sources import untimed
from musicrec.truth import read_truth

log = logging.getLogger("musicrec")

STAGE = "06_influence"
GROUP_COLUMNS = ("time_order", "user", "song", "source_system_tab", "genre", "language", "bd", "bd_missing")


def category_names(categories: pl.DataFrame) -> dict[str, dict[int, str]]:
    return {col: dict(zip(g["code"].to_list(), g["value"].to_list()))
            for (col,), g in categories.group_by("column")}


def flipped_labels(cfg: dict, st: StageRun, time_order: np.ndarray) -> np.ndarray | None:
    """Which train rows had their label flipped by the synthetic generator (None on real data)."""
    truth = read_truth(cfg, st)
    if truth is None:
        return None
    t = truth.filter(pl.col("file") == "train").select("row", "flipped")
    out = pl.DataFrame({"row": time_order.astype(np.int64)}).join(t, on="row", how="left", maintain_order="left")
    return out["flipped"].fill_null(False).to_numpy()


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
            rows = (pl.DataFrame({"time_order": time_order}).join(
                pl.read_parquet(st.input("02_split", "train.parquet"), columns=list(GROUP_COLUMNS)),
                on="time_order", how="left", maintain_order="left"))
            names_map = category_names(pl.read_parquet(st.input("01_preprocess", "categories.parquet")))
            flipped = flipped_labels(cfg, st, time_order)
        skipped = [m for m in icfg["models"] if m not in trained]
        if skipped:
            log.warning("%s: no trained model for %s (see train.models); skipped", STAGE, ", ".join(skipped))

        loo_cols, loo_seconds, validation, group_rows, ablation_rows, pairs = {}, {}, {}, [], [], {}
        groups = meaningful_groups(rows, names_map, icfg["groups"]) if icfg["groups"]["enabled"] else []
        for name in names:
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
            trees = model.booster_.num_trees() if name == "lgbm" else None
            retrainer = Retrainer(name, cfg["train"], train, valid, test, trees=trees)
            idx = INFLUENCE_MODELS.index(name)
            seeds = (model_seed(cfg, name), derived_seed(stage_rng(cfg, 6, idx, 1)))
            rng = stage_rng(cfg, 6, idx, 2)
            if icfg["validate"]["rows"][name] > 0:
                with st.step(f"validate {name}"):
                    validation[name] = validate_model(est, loo, retrainer, icfg["validate"], seeds, rng, flipped)
                    validation[name]["loo_seconds"] = loo_seconds[name]
                    if hasattr(est, "leaf_value_error"):
                        validation[name]["leaf_value_reproduction_error"] = est.leaf_value_error
                    if name == "rf":
                        finite = np.isfinite(est.data_oob)
                        validation[name]["data_oob_spearman_with_loo"] = float(
                            pl.DataFrame({"a": est.data_oob[finite], "b": loo["logloss"][finite]})
                            .select(pl.corr("a", "b", method="spearman")).item())
                    sample = np.array(validation[name].pop("sample_rows"))
                    exact = validation[name].pop("_exact_logloss", None)
                    if exact is not None:
                        pairs[name] = (loo["logloss"][sample], exact, validation[name]["exact"])
            with st.step(f"groups {name}"):
                if icfg["ablation"]["repeats"] > 0:
                    for r in random_ablations(retrainer, seeds[0], icfg["ablation"]["fractions"],
                                              icfg["ablation"]["repeats"], loo, rng):
                        ablation_rows.append({"model": name, **r})
                for r in group_effects(retrainer, seeds[0], groups, loo) if groups else []:
                    group_rows.append({"model": name, **r})
            log.info("%s: %s LOO for %d rows in %.1fs, %d retrains", STAGE, name, len(train),
                     loo_seconds[name], retrainer.fits)
            # one model's matrices at a time: at full size each estimator and retrainer holds GBs
            del est, loo, model, retrainer
            gc.collect()

        with st.step("write"):
            loo_df = train.keys.select("time_order", "user", "song").with_columns(
                pl.Series("target", train.y), *(pl.Series(k, v) for k, v in loo_cols.items()))
            st.write_parquet(loo_df, "loo.parquet")
            report = {"models": validation, "loo_seconds": loo_seconds, "rows": len(train),
                      "test_rows": len(test), "definition": "metric(trained without row) - metric(trained with row)"}
            if ablation_rows:
                ab = pl.DataFrame(ablation_rows)
                st.write_parquet(ab, "ablations.parquet")
                report["ablations"] = {m: summarize_ablations(ab.filter(pl.col("model") == m).to_dicts())
                                       for m in names}
            if group_rows:
                st.write_parquet(pl.DataFrame(group_rows), "groups.parquet")
            st.write_json(report, "validation.json")
        with st.step("plots"):
            iplots.loo_distributions({m: loo_cols[f"{m}_logloss"] for m in names}, st.output("plots/loo_distributions.png"))
            if pairs:
                iplots.estimate_vs_exact(pairs, st.output("plots/estimate_vs_exact.png"))
            removal = {m: r["removal"] for m, r in validation.items() if r.get("removal")}
            if removal:
                iplots.removal_curves(removal, st.output("plots/removal_curves.png"))
            if ablation_rows:
                iplots.ablation_curves(pl.DataFrame(ablation_rows), st.output("plots/ablation_curves.png"))
            if group_rows:
                g = pl.DataFrame(group_rows)
                for kind in g["kind"].unique(maintain_order=True):
                    iplots.group_bars(g, kind, st.output(f"plots/groups_{kind}.png"))
        st.info.update(models=names, rows=len(train))
    return report
