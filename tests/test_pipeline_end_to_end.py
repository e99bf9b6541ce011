"""The six scripts as processes on the tiny preset, the way a user runs them."""
import json

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


def test_predict_outputs(pipeline):
    metrics = json.loads((pipeline / "05_predict" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"prior", "nb", "lr", "rf", "lgbm", "als"}
    # the oracle scores the true probabilities against the labels of the test rows
    assert metrics["oracle"]["auc"] > max(m["auc"] for m in metrics["models"].values())
    for name, m in metrics["models"].items():
        assert set(m) == {"auc", "logloss", "accuracy", "brier"}, name
    assert metrics["models"]["lgbm"]["auc"] > metrics["models"]["prior"]["auc"]
    assert set(metrics["ranking"]) == {"als", "popularity"}
    for ranking in metrics["ranking"].values():
        assert {"precision@10", "recall@10", "ndcg@10", "map@10", "hit_rate@10", "f1@10", "coverage", "novelty",
                "genre_diversity@10", "artist_diversity@10", "ils_genre@10"} <= set(ranking)
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
    report = json.loads((pipeline / "06_influence" / "validation.json").read_text())
    assert report["label_noise"]["flipped"] == round(0.1 * split["train"]["rows"]) == split["train_label_noise"]["flipped"]
    assert loo["label_flipped"].sum() == report["label_noise"]["flipped"]
    assert report["label_noise"]["oracle"]["lift_10pct"]["value"] > 1
    for m in ("nb", "lr", "rf", "lgbm", "als"):
        r = report["models"][m]
        assert {"exact", "removal", "label_noise", "reference"} <= set(r)
        assert r["exact"]["n"] > 0 and r["exact"]["spearman"]["n"] == r["exact"]["n"]
        assert r["self"]["exact"]["n"] == r["exact"]["n"]
        assert ("noise_ceiling" in r) == (m in ("rf", "lgbm", "als"))    # deterministic fits have none
        assert {"test_loss_influence", "self_influence", "loo_own_loss"} <= set(r["label_noise"])
        assert r["label_noise"]["loo_own_loss"]["lift_10pct"]["ci95"] is not None
        for kind in ("harmful", "helpful", "random"):
            assert set(r["removal"][kind]["0.05"]) == {"rows", "scored_on_A", "scored_on_B", "mean"}
        assert {"A", "B", "mean"} <= set(report["groups"][m]["predicted"])
    assert "data_oob" in report["models"]["rf"]["label_noise"]
    assert report["models"]["nb"]["closed_form_vs_library"]["max_rel_err"] < 1e-7
    assert report["test_halves"]["A"]["users"] + report["test_halves"]["B"]["users"] > 0
    groups = pl.read_parquet(pipeline / "06_influence" / "groups.parquet")
    assert {"power_users", "source_system_tab", "genre", "language", "user_activity_decile",
            "song_activity_decile", "age_band"} <= set(groups["kind"].to_list())
    assert set(groups["half"].to_list()) == {"A", "B"}
    ablations = pl.read_parquet(pipeline / "06_influence" / "ablations.parquet")
    assert ablations.height == 5 * 2 * 2 * 2   # models x fractions x repeats x test halves
    for png in ("loo_distributions", "estimate_vs_exact", "removal_curves", "ablation_curves", "groups_age_band",
                "groups_predicted_vs_retrained"):
        assert (pipeline / "06_influence" / "plots" / f"{png}.png").is_file(), png


def test_run_sh_lists_its_usage():
    import subprocess
    res = subprocess.run([str(REPO / "run.sh"), "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "./run.sh 04" in res.stdout
