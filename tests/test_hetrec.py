"""format hetrec: user x artist play counts without time -> per-user holdout, ranking models only."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from musicrec import features, predict, preprocess, split, train
from musicrec.influence import stage as influence
from musicrec.report import write_report

from conftest import REPO, make_cfg

SAMPLE = REPO.parent / "shared" / "listens_samples" / "hetrec2011_lastfm_2k"


def write_hetrec(folder: Path, rng: np.random.Generator, n_users=60, n_artists=80) -> Path:
    """A small log in hetrec's layout (tab-separated, CRLF, header) with taste blocks and a bad row."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["userID\tartistID\tweight"]
    for u in range(n_users):
        block = u % 4
        artists = rng.choice(np.arange(block * 20, block * 20 + 20), 12, replace=False)
        lines += [f"{u + 2}\t{a + 1}\t{int(rng.integers(1, 5000))}" for a in artists]
    lines.append("999\t3\tlots")
    (folder / "user_artists.dat").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    names = ["id\tname\turl\tpictureURL"] + [f"{a + 1}\tBand \"{a}\"\thttp://x/{a}\t" for a in range(n_artists)]
    (folder / "artists.dat").write_bytes(("\r\n".join(names) + "\r\n").encode())
    return folder


def test_hetrec_runs_01_to_05_with_ranking_models_only(tmp_path):
    folder = write_hetrec(tmp_path / "het", np.random.default_rng(1))
    cfg = make_cfg(tmp_path / "data", None, "data.source=listens", "data.listens.format=hetrec",
                   f"data.listens.path={folder}", "train.als.weighting=bm25", "train.als.alpha=0.01",
                   "train.als.factors=8", "predict.max_k=12", "influence.groups.ceiling=true")
    q = preprocess.run(cfg)
    assert q["rows"] == {"in": 60 * 12 + 1, "out": 60 * 12, "rejected": 1}
    assert q["rejected_by_reason"] == {"weight is not an integer": 1}
    split.run(cfg)
    parts = {n: pl.read_parquet(tmp_path / "data" / "02_split" / f"{n}.parquet") for n in ("train", "valid", "test")}
    # every user: round(12 * 0.2) = 2 test pairs, round(10 * 0.1) = 1 valid pair
    assert set(parts["test"].group_by("user").len()["len"]) == {2}
    assert set(parts["valid"].group_by("user").len()["len"]) == {1}
    features.run(cfg)
    report = train.run(cfg)
    assert list(report.models) == ["als"]
    metrics = predict.run(cfg)
    assert set(metrics.ranking) == {"als", "popularity"} and metrics.models == {}
    # taste blocks: ALS finds the block, popularity cannot
    assert metrics.ranking["als"].ndcg > metrics.ranking["popularity"].ndcg
    recs = pl.read_parquet(tmp_path / "data" / "05_predict" / "recommendations.parquet")
    assert recs["artist_name"].str.starts_with("Band \"").all() and recs["rank"].max() == 10
    similar = pl.read_parquet(tmp_path / "data" / "05_predict" / "similar_songs.parquet")
    assert similar.height > 0 and (similar["song"] != similar["similar"]).all()
    # the taste blocks again: an artist's nearest neighbour by ALS factors is from its own block
    block = ((similar["song_id"].cast(pl.Int64) - 1) // 20) == ((similar["similar_song_id"].cast(pl.Int64) - 1) // 20)
    assert block.filter(similar["rank"] == 1).mean() > 0.8
    # no labelled event: stage 06 explains the ranking only, every row's influence on its user's list
    report = influence.run(cfg)
    assert report.models == {} and set(report.ranking) == {"als"}
    assert report.ranking["als"]["library_check"]["max_rel_err"] < 1e-9
    ranked = pl.read_parquet(tmp_path / "data" / "06_influence" / "ranking.parquet")
    assert ranked.height == parts["train"].height and ranked["als_rank_loglik"].is_finite().any()
    assert not (tmp_path / "data" / "06_influence" / "loo.parquet").exists()
    # the checked groups retrained under a second seed too: the noise ceiling is scipy's Spearman of the two
    groups = pl.read_parquet(tmp_path / "data" / "06_influence" / "ranking_groups.parquet")
    done = groups.filter(pl.col("retrained"))
    assert done.height and done["delta_ndcg_second_seed"].null_count() == 0
    assert groups.filter(~pl.col("retrained"))["delta_ndcg_second_seed"].null_count() == groups.height - done.height
    for h in ("A", "B"):
        part = done.filter(pl.col("half") == h)
        ceil = report.ranking["als"]["summary"]["ndcg"][h]["noise_ceiling"]
        assert ceil["n"] == part.height
        expect = spearmanr(part["delta_ndcg"], part["delta_ndcg_second_seed"]).statistic
        assert ceil["value"] is None if np.isnan(expect) else ceil["value"] == pytest.approx(expect)
    html = write_report(cfg).read_text()
    a = report.ranking["als"]["summary"]["ndcg"]["A"]["noise_ceiling"]
    assert "retrained again under a second seed" in html
    assert f"half A {a['value']:.2f}" in html if a["value"] is not None else "half A not measurable" in html


def test_hetrec_sample_holdout_is_per_user(tmp_path):
    if not (SAMPLE / "user_artists.dat").is_file():
        pytest.skip(f"hetrec sample not found: looked in {SAMPLE}")
    cfg = make_cfg(tmp_path, None, "data.source=listens", "data.listens.format=hetrec", f"data.listens.path={SAMPLE}")
    q = preprocess.run(cfg)
    raw = pl.read_csv(SAMPLE / "user_artists.dat", separator="\t")
    assert q["rows"]["in"] == raw.height == q["rows"]["out"] + q["rows"]["rejected"]
    assert q["distinct"] == {"users": raw["userID"].n_unique(), "songs": raw["artistID"].n_unique(),
                             "artists": raw["artistID"].n_unique()}
    split.run(cfg)
    test = pl.read_parquet(tmp_path / "02_split" / "test.parquet").group_by("user").len()
    inter = pl.read_parquet(tmp_path / "01_preprocess" / "interactions.parquet").group_by("user").len()
    both = inter.join(test, on="user", how="left", suffix="_test").fill_null(0)
    want = np.minimum(np.rint(both["len"].to_numpy() * 0.2), both["len"].to_numpy() - 1)
    assert (both["len_test"].to_numpy() == want).all()
    s = json.loads((tmp_path / "02_split" / "split.json").read_text())
    assert s["train"]["rows"] + s["valid"]["rows"] + s["test"]["rows"] == q["rows"]["out"]
