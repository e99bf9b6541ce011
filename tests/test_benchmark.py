"""A smoke run of the benchmark script on the tiny preset (timing itself is not tested)."""
import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from conftest import REPO

LIGHT = ["train.models=[prior, nb, lr]", "influence.models=[nb, lr]",
         "influence.validate.rows={nb: 3, lr: 3, rf: 0, lgbm: 0, als: 0}"]


def test_benchmark_smoke(tmp_path):
    """Every stage as its own process, its record and BENCHMARKS.md written (light settings: this
    checks the records, not the pipeline, which test_pipeline_end_to_end runs in full)."""
    sets = LIGHT
    cmd = [sys.executable, str(REPO / "bench" / "benchmark.py"), "--preset", "tiny", "--out", str(tmp_path / "out"),
           "--results", str(tmp_path / "results"), "--markdown", str(tmp_path / "BENCHMARKS.md"),
           "--naive-seconds", "0.5", *[x for s in sets for x in ("--set", s)]]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    r = json.loads((tmp_path / "results" / "tiny.json").read_text())
    assert list(r["steps"]) == ["generate", "01_preprocess", "02_split", "03_features", "04_train", "05_predict",
                                "06_influence"]
    for step in r["steps"].values():
        assert step["exit_code"] == 0 and step["wall_s"] > 0 and step["peak_rss_gb"] > 0.05
    out = tmp_path / "out"
    height = lambda path: pl.scan_parquet(out / path).select(pl.len()).collect().item()  # noqa: E731
    assert r["steps"]["01_preprocess"]["rows"] == height("01_preprocess/interactions.parquet")  # not + users, songs
    assert r["steps"]["02_split"]["rows"] == sum(height(f"02_split/{p}.parquet") for p in ("train", "valid", "test"))
    assert r["steps"]["05_predict"]["rows"] == height("02_split/test.parquet")
    naive = r["naive"]["lr"]
    assert naive["naive_retrains"] >= 1
    assert naive["speedup"] == pytest.approx(naive["ours_rows_per_s"] / naive["naive_rows_per_s"], rel=0.01)
    assert r["quality"]["influence"]["nb"]["deterministic"] and r["quality"]["test_auc"]["lr"] > 0.5
    md = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| 06_influence |" in md and "| nb |" in md


def test_oracle_gap_is_paired_over_users_and_brackets_the_point_value():
    from musicrec.stats import user_bootstrap_auc_gaps

    def gaps(pred, models, draws, seed):
        scores = {"oracle": pred["p_true"].to_numpy(), **{m: pred[f"p_{m}"].to_numpy() for m in models}}
        return user_bootstrap_auc_gaps(pred["target"].to_numpy(), pred["user"].to_numpy(), scores, "oracle",
                                       np.random.default_rng(seed), draws)

    rng = np.random.default_rng(1)
    n = 4000
    p = rng.uniform(0.05, 0.95, n)
    pred = pl.DataFrame({"user": rng.integers(0, 200, n), "target": (rng.uniform(size=n) < p).astype(np.int8),
                         "p_true": p, "p_same": p, "p_noisy": p + rng.normal(0, 0.3, n)})
    g = gaps(pred, ["same", "noisy"], draws=100, seed=0)
    assert g["gap"]["same"] == {"value": 0.0, "ci95": [0.0, 0.0]}          # paired: identical scores, no gap
    lo, hi = g["gap"]["noisy"]["ci95"]
    assert 0 < lo <= g["gap"]["noisy"]["value"] <= hi                        # noise costs AUC, interval around it
    assert g["users"] == 200 and g["rows"] == n


def test_bots_among_the_pruned_users_are_counted_against_the_candidates(tmp_path):
    sys.path.insert(0, str(REPO / "bench"))
    from ranking_records import bots_pruned, bots_lines

    (tmp_path / "06_influence").mkdir()
    (tmp_path / "log").mkdir()
    ids = [f"u{i}" for i in range(10)]
    pl.DataFrame({"model": ["als"] * 10, "user": range(10), "user_id": ids,
                  "test_half": ["A", "A", "A", "B", "B", "B", "", "", "", ""],
                  "removed_scored_on_A": [False, False, False, True, False, False, True, False, False, False],
                  "removed_scored_on_B": [True, False, False, False, False, False, False, True, True, False]}
                 ).write_parquet(tmp_path / "06_influence" / "ranking_users.parquet")
    # two rows per user in the truth, as the generator writes one per first listen
    bots = {"u3": 1, "u6": 1, "u7": 1}
    pl.DataFrame({"user": ids * 2, "bot": [bots.get(u, 0) for u in ids] * 2}).with_columns(
        pl.col("bot").cast(pl.Int8)).write_parquet(tmp_path / "log" / "truth.parquet")
    b = bots_pruned(tmp_path)
    assert (b["users"], b["bots"]) == (10, 3)
    # scored on A: candidates are the users not in A (u3..u9, 3 bots of 7); removed u3 (bot) and u6 (bot)
    assert b["scored_on_A"]["bots_removed"] == 2 and b["scored_on_A"]["removed"] == 2
    assert b["scored_on_A"]["candidate_bot_share"] == pytest.approx(3 / 7)
    # scored on B: candidates u0..u2, u6..u9 (2 bots of 7); removed u0, u7 (bot), u8
    assert b["scored_on_B"]["bot_share"]["value"] == pytest.approx(1 / 3)
    assert b["scored_on_B"]["candidate_bot_share"] == pytest.approx(2 / 7)
    lo, hi = b["scored_on_B"]["bot_share"]["ci95"]
    assert 0 < lo < 1 / 3 < hi < 1
    assert any("| B | 3 | 1 |" in line for line in bots_lines(b))
