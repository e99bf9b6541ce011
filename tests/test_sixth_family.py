"""A model family defined only in tests/families/sgd_family.py, named in the config, runs through
stages 04, 05 and 06 as users run them, and its leave-one-out estimates agree with its retraining."""
import json

import polars as pl

from conftest import REPO, run_script

FAMILY = REPO / "tests" / "families" / "sgd_family.py"


def test_a_family_from_one_file_runs_through_04_05_06(tmp_path):
    common = ["-q", "--set", f"paths.data={tmp_path}", "--set", "data.synthetic.preset=tiny",
              "--set", "data.synthetic.train_rows=1000", "--set", "data.synthetic.test_rows=200",
              "--set", f"train.families=[{FAMILY}]", "--set", "train.models=[prior, sgd]",
              "--set", "influence.models=[sgd]", "--set", "train.sgd.alpha=0.01"]
    for script in ("01_preprocess.py", "02_split.py", "03_features.py", "04_train.py", "05_predict.py",
                   "06_influence.py"):
        res = run_script(script, *common)
        assert res.returncode == 0, f"{script}: {res.stderr[-3000:]}"
    models = json.loads((tmp_path / "04_train" / "models.json").read_text())["models"]
    assert models["sgd"]["origin"] == str(FAMILY) and models["sgd"]["params"]["alpha"] == 0.01
    predicted = json.loads((tmp_path / "05_predict" / "metrics.json").read_text())["models"]
    assert set(predicted) == {"prior", "sgd"} and predicted["sgd"]["auc"] > 0.55    # it learnt something
    loo = pl.read_parquet(tmp_path / "06_influence" / "loo.parquet")
    assert {"sgd_logloss", "sgd_auc", "sgd_self", "sgd_own_loss"} <= set(loo.columns)
    v = json.loads((tmp_path / "06_influence" / "validation.json").read_text())["models"]["sgd"]
    # its estimates (its own refits) against the Retrainer's retraining with the saved model's arguments
    assert v["deterministic"] and v["exact"]["n"] == 8 and v["exact"]["spearman"]["value"] == 1.0
    assert v["exact"]["max_rel_err"] < 1e-9 and v["removal_check"] == "refit"
    assert "<h3>sgd: most harmful and most helpful training rows</h3>" in (tmp_path / "report.html").read_text()
