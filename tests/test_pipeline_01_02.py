"""01 and 02 as processes on the tiny preset: accounting, temporal order, determinism."""
import json

import polars as pl
import pytest

from conftest import run_script


def run_01_02(data_dir):
    for script in ("01_preprocess.py", "02_split.py"):
        res = run_script(script, "--set", f"paths.data={data_dir}", "--set", "data.synthetic.preset=tiny", "-q")
        assert res.returncode == 0, res.stderr
    return {s: json.loads((data_dir / s / "manifest.json").read_text()) for s in ("01_preprocess", "02_split")}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    a, b = tmp_path_factory.mktemp("run_a"), tmp_path_factory.mktemp("run_b")
    return (a, run_01_02(a)), (b, run_01_02(b))


def test_synthetic_csvs_are_generated_under_paths_data(two_runs):
    (a, _), _ = two_runs
    folder = a / "synthetic" / "tiny"
    for name in ("train.csv", "test.csv", "members.csv", "songs.csv", "song_extra_info.csv", "truth.parquet"):
        assert (folder / name).is_file(), name


def test_row_accounting_and_temporal_split(two_runs):
    (a, manifests), _ = two_runs
    q = json.loads((a / "01_preprocess" / "quality.json").read_text())
    assert q["rows"]["in"] == q["rows"]["out"] + q["rows"]["rejected"]
    s = json.loads((a / "02_split" / "split.json").read_text())
    assert s["train"]["time_order_max"] < s["valid"]["time_order_min"] <= s["valid"]["time_order_max"] < s["test"]["time_order_min"]
    assert s["train"]["rows"] + s["valid"]["rows"] + s["test"]["rows"] == q["rows"]["out"]
    assert s["test"]["rows"] == round(0.2 * q["rows"]["out"])
    assert 0 < s["cold_start"]["test_songs_unseen_share"] < 1
    test = pl.read_parquet(a / "02_split" / "test.parquet")
    assert test.height == s["test"]["rows"] and test["time_order"].min() == s["test"]["time_order_min"]


def test_same_config_same_bytes(two_runs):
    (_, ma), (_, mb) = two_runs
    for stage in ma:
        ha = {k: v["hash"] for k, v in ma[stage]["outputs"].items()}
        hb = {k: v["hash"] for k, v in mb[stage]["outputs"].items()}
        assert ha == hb, stage


def test_synthetic_data_is_not_regenerated_when_current(two_runs):
    (a, _), _ = two_runs
    stamp = a / "synthetic" / "tiny" / "train.csv"
    before = stamp.stat().st_mtime_ns
    res = run_script("01_preprocess.py", "--set", f"paths.data={a}", "--set", "data.synthetic.preset=tiny", "-q")
    assert res.returncode == 0, res.stderr
    assert stamp.stat().st_mtime_ns == before
