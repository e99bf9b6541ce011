"""The six scripts as processes on the tiny preset, the way a user runs them."""
import json
from pathlib import Path

import polars as pl
import pytest

from conftest import REPO, SMALL_INFLUENCE, run_script


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    data = tmp_path_factory.mktemp("e2e")
    common = ["--set", f"paths.data={data}", "--set", "data.synthetic.preset=tiny",
              "--set", "split.train_label_noise=0.1", "-q", *SMALL_INFLUENCE]
    for script in ("01_preprocess.py", "02_split.py", "03_features.py", "04_train.py", "05_predict.py",
                   "06_influence.py"):
        res = run_script(script, *common)
        assert res.returncode == 0, f"{script}: {res.stderr[-3000:]}"
    return data


def test_every_stage_wrote_a_manifest(pipeline):
    for stage in ("01_preprocess", "02_split", "03_features", "04_train", "05_predict", "06_influence"):
        m = json.loads((pipeline / stage / "manifest.json").read_text())
        assert m["stage"] == stage and m["outputs"]


def test_every_stage_read_only_what_it_declares(pipeline):
    """Each manifest's inputs are reads declared in musicrec.stages, and every read declared without
    a condition was made (the table the staleness check, --help and the README use is true)."""
    from musicrec.stages import STAGES, declared

    for name, stage in STAGES.items():
        m = json.loads((pipeline / name / "manifest.json").read_text())
        made = {(rec["stage"], Path(path).name) for path, rec in m["inputs"].items() if rec.get("stage")}
        assert all(declared(name, up, f) for up, f in made), (name, made)
        for r in stage.reads:
            if not r.when and not r.pattern:
                assert (r.stage, r.file) in made, (name, r)
        assert m["config"].keys() == set(stage.sections)


def test_predict_outputs(pipeline):
    from musicrec.outputs.predict import PredictMetrics

    metrics = PredictMetrics.read(pipeline / "05_predict" / "metrics.json")
    assert set(metrics.models) == {"prior", "nb", "lr", "rf", "lgbm", "als"}
    # the oracle scores the true probabilities against the labels of the test rows
    assert metrics.oracle.auc > max(m.auc for m in metrics.models.values())
    for name, m in metrics.models.items():
        lo, hi = m.auc_ci95                   # Hanley & McNeil, computed by stage 05
        assert lo < m.auc < hi and m.accuracy_ci95[0] < m.accuracy < m.accuracy_ci95[1], name
    assert metrics.models["lgbm"].auc > metrics.models["prior"].auc
    assert set(metrics.ranking) == {"als", "popularity"}
    for ranking in metrics.ranking.values():
        assert ranking.k == 10 and 0 < ranking.ndcg <= 1 and ranking.ndcg_ci95[0] <= ranking.ndcg <= ranking.ndcg_ci95[1]
    assert metrics.ranking["als"].minus_popularity["ndcg"].n == metrics.ranking["als"].users
    pred = pl.read_parquet(pipeline / "05_predict" / "predictions.parquet")
    split = json.loads((pipeline / "02_split" / "split.json").read_text())
    assert pred.height == split["test"]["rows"] and {"p_lgbm", "p_als", "target", "p_true"} <= set(pred.columns)
    recs = pl.read_parquet(pipeline / "05_predict" / "recommendations.parquet")
    assert recs["user"].n_unique() == pred["user"].n_unique() and recs["rank"].max() == 10
    sub = pl.read_csv(pipeline / "05_predict" / "submission.csv")
    assert sub.columns == ["id", "target"] and sub.height == 5_000
    for png in ("roc", "calibration", "confusion", "auc_by_segment", "lgbm_importance", "ranking_curves"):
        assert (pipeline / "05_predict" / "plots" / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_influence_outputs(pipeline):
    loo = pl.read_parquet(pipeline / "06_influence" / "loo.parquet")
    split = json.loads((pipeline / "02_split" / "split.json").read_text())
    assert loo.height == split["train"]["rows"]
    for m in ("nb", "lr", "rf", "lgbm", "als"):
        for metric in ("logloss", "auc", "self", "own_loss"):
            assert loo[f"{m}_{metric}"].is_finite().all(), (m, metric)
        assert (loo[f"{m}_own_loss"] >= 0).all()
    from musicrec.outputs.influence import Validation

    report = Validation.read(pipeline / "06_influence" / "validation.json")
    assert report.label_noise.flipped == round(0.1 * split["train"]["rows"]) == split["train_label_noise"]["flipped"]
    assert loo["label_flipped"].sum() == report.label_noise.flipped
    assert report.label_noise.oracle.lift_10pct.value > 1
    for m in ("nb", "lr", "rf", "lgbm", "als"):
        r = report.models[m]
        assert r.family == m and r.reference and r.removal and r.label_noise
        assert r.exact.n > 0 and r.exact.spearman.n == r.exact.n
        assert r.self_influence.exact.n == r.exact.n
        assert (r.noise_ceiling is not None) == (not r.deterministic) == (m in ("rf", "lgbm", "als"))
        assert {"test_loss_influence", "self_influence", "loo_own_loss"} <= set(r.label_noise.rankings)
        assert r.label_noise.rankings["loo_own_loss"].lift_10pct.ci95 is not None
        for kind in ("harmful", "helpful", "random"):
            assert set(r.removal[kind]["0.05"]) == {"rows", "scored_on_A", "scored_on_B", "mean"}
        assert {"A", "B", "mean"} <= set(report.groups[m].predicted)
    assert "data_oob" in report.models["rf"].label_noise.rankings
    assert report.models["rf"].extras["data_oob_spearman_with_loo"]["n"] > 0
    assert report.models["lgbm"].extras["leaf_value_reproduction_error"] < 1e-6
    assert report.models["nb"].removal_check == "closed_form" and report.models["rf"].removal_check == "fixed_structure"
    assert report.models["nb"].own_vs_library.max_rel_err < 1e-7
    assert report.test_halves["A"]["users"] + report.test_halves["B"]["users"] > 0
    groups = pl.read_parquet(pipeline / "06_influence" / "groups.parquet")
    assert {"power_users", "source_system_tab", "genre", "language", "user_activity_decile",
            "song_activity_decile", "age_band"} <= set(groups["kind"].to_list())
    assert set(groups["half"].to_list()) == {"A", "B"}
    ablations = pl.read_parquet(pipeline / "06_influence" / "ablations.parquet")
    assert ablations.height == 5 * 2 * 2 * 2   # models x fractions x repeats x test halves
    plots = {"loo_distributions", "estimate_vs_exact", "removal_curves", "groups_that_help_and_hurt",
             "groups_predicted_vs_retrained"} | ({"ablation_curves"} if ablations["retrained"].any() else set())
    assert {p.stem for p in (pipeline / "06_influence" / "plots").glob("*.png")} == plots


def test_run_sh_lists_its_usage():
    import subprocess
    res = subprocess.run([str(REPO / "run.sh"), "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "./run.sh 04" in res.stdout


def test_reordering_the_models_changes_no_output(pipeline, tmp_path):
    """Seeds come from names, never from a tuple's position: 04 and 06 with the models listed in
    another order write the same models, the same loo.parquet and the same validation figures."""
    import shutil

    from conftest import make_cfg
    from musicrec import train
    from musicrec.influence import stage
    from musicrec.outputs.influence import Validation
    from musicrec.outputs.train import TrainMetrics

    runs = {}
    for order in (("nb", "rf", "als"), ("als", "nb", "rf")):
        folder = tmp_path / "_".join(order)
        for part in ("synthetic", "01_preprocess", "02_split", "03_features"):
            shutil.copytree(pipeline / part, folder / part)
        listed = f"[{', '.join(order)}]"
        cfg = make_cfg(folder, None, "split.train_label_noise=0.1", f"train.models={listed}",
                       f"influence.models={listed}", "train.rf.n_estimators=10",
                       "influence.validate.rows={nb: 4, lr: 0, rf: 4, lgbm: 0, als: 4}")
        train.run(cfg, force=True)
        stage.run(cfg, force=True)
        runs[order] = (TrainMetrics.read(folder / "04_train" / "metrics.json"),
                       pl.read_parquet(folder / "06_influence" / "loo.parquet"),
                       Validation.read(folder / "06_influence" / "validation.json"))
    (m1, loo1, v1), (m2, loo2, v2) = runs.values()
    for name in ("nb", "rf", "als"):
        assert m1.models[name].valid == m2.models[name].valid
        a, b = v1.models[name].to_dict(), v2.models[name].to_dict()
        for d in (a, b):
            d.pop("seconds"), d.pop("loo_seconds"), d.pop("retrains")
        assert a == b, name
    assert loo1.select(sorted(loo1.columns)).equals(loo2.select(sorted(loo2.columns)))
