"""Out-of-core listens -> events: buckets, the packed sort and the user sample change nothing they should not."""
from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from musicrec import config, preprocess
from musicrec.readers import listen_events, listens as reader
from musicrec.synthetic import listens as synthetic_listens

from conftest import REPO, make_cfg
from test_listens import brute_force, events_by_pair, random_log

TABLES = ("interactions", "users", "songs", "categories", "rejects", "truth")


@pytest.fixture(scope="module")
def tiny_log(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ooc") / "lb"
    synthetic_listens.generate(folder, "tiny", "listenbrainz", random_state=[42, 14])
    return folder / "listens"


def stage01(data, path, *sets):
    cfg = make_cfg(data, None, "data.source=listens", "data.listens.format=listenbrainz",
                   f"data.listens.path={path}", *sets)
    return preprocess.run(cfg)


def tables(data):
    out = data / "01_preprocess"
    return {n: pl.read_parquet(out / f"{n}.parquet") for n in TABLES if (out / f"{n}.parquet").exists()}


@pytest.mark.parametrize("rows_per_bucket,max_bits", [(2_000, 64), (997, 64), (5_000, 0)])
def test_bucketed_derivation_equals_one_bucket(tiny_log, tmp_path, monkeypatch, rows_per_bucket, max_bits):
    one = stage01(tmp_path / "one", tiny_log)
    # many buckets (and, with max_bits 0, the frame sort in place of the packed 64-bit keys)
    monkeypatch.setattr(listen_events, "ROWS_PER_BUCKET", rows_per_bucket)
    monkeypatch.setattr(listen_events, "MAX_KEY_BITS", max_bits)
    many = stage01(tmp_path / "many", tiny_log)
    assert one == many
    a, b = tables(tmp_path / "one"), tables(tmp_path / "many")
    assert set(a) == set(b) == set(TABLES)
    for name in TABLES:
        assert_frame_equal(a[name], b[name])
    assert one["synthetic_truth"]["label_equals_target"] == 1.0


def test_derive_events_is_the_same_for_any_bucket_count(tmp_path):
    rows = random_log(np.random.default_rng(11), 2_000)
    lf = pl.LazyFrame({"user": [r[0] or None for r in rows], "track": [r[1] or None for r in rows],
                       "time": [r[2] for r in rows]}, schema={"user": pl.String, "track": pl.String, "time": pl.Int64})
    lf = lf.with_columns(pl.lit(None, pl.String).alias(c) for c in ("artist", "album", "track_name")).with_row_index("line")
    lcfg = {"format": "table", "path": "x", "window_days": 30.0, "same_play_seconds": 10.0}
    ref = brute_force([tuple(r) for r in rows], 30 * 86_400, 10)
    results = []
    for b in (1, 3, 8):
        d = listen_events.derive_events(lf, 30.0, 10.0, tmp_path / f"s{b}", buckets=b, max_key_bits=64 if b < 8 else 0)
        assert not (tmp_path / f"s{b}").exists()  # the bucket files are removed
        out = reader.build(d, lcfg, tmp_path / f"i{b}.parquet")
        inter = pl.read_parquet(out["interactions"])
        got = (inter.join(out["users"].select("user", "msno"), on="user")
               .join(out["songs"].select("song", "song_id"), on="song").sort("time_order"))
        labels = {(u, t): y for u, t, y in got.select("msno", "song_id", "target").iter_rows()}
        assert labels == {k: y for k, (_, y) in ref["labels"].items()}
        results.append((inter, out["users"], out["songs"], out["quality"]))
    for inter, users, songs, q in results[1:]:
        assert_frame_equal(inter, results[0][0])
        assert_frame_equal(users, results[0][1])
        assert_frame_equal(songs, results[0][2])
        assert q == results[0][3]


def test_user_sample_is_seeded_counted_and_keeps_whole_users(tiny_log, tmp_path):
    full = stage01(tmp_path / "full", tiny_log)
    half = stage01(tmp_path / "half", tiny_log, "data.listens.user_sample=0.5")
    again = stage01(tmp_path / "again", tiny_log, "data.listens.user_sample=0.5")
    stage01(tmp_path / "other", tiny_log, "data.listens.user_sample=0.5", "seed=7")
    assert half == again  # same config, same sample
    for name in ("interactions", "users", "songs"):
        assert_frame_equal(tables(tmp_path / "half")[name], tables(tmp_path / "again")[name])
    kept = set(tables(tmp_path / "half")["users"]["msno"])
    assert kept != set(tables(tmp_path / "other")["users"]["msno"])  # the seed draws another sample
    s = half["user_sample"]
    assert s["share"] == 0.5 and s["users_in"] == full["distinct"]["users"] and 0.35 < s["users_kept"] / s["users_in"] < 0.65
    c = half["listens"]
    assert c["in"] == full["listens"]["in"] == c["events"] + c["repeats"] + c["unlabellable"] + c["rejected"] + c["sampled_out"]
    assert c["sampled_out"] == s["listens_sampled_out"] > 0 and "sampled_out" not in full["listens"]
    # a sampled user's events are exactly its events in the full run (the log end is the whole log's)
    ref = {k: y for k, (_, y) in events_by_pair(tmp_path / "full").items() if k[0] in kept}
    assert {k: y for k, (_, y) in events_by_pair(tmp_path / "half").items()} == ref
    assert half["synthetic_truth"]["label_equals_target"] == 1.0


def test_user_hash_is_stable():
    users = pl.Series(["user_000001", "", "ünïcode", "x" * 70])
    h = listen_events.fnv1a(users, "42:")
    # FNV-1a 64 of the UTF-8 bytes, computed byte by byte
    def fnv(text: str) -> int:
        v = 0xCBF29CE484222325
        for byte in text.encode():
            v = ((v ^ byte) * 0x100000001B3) % 2 ** 64
        return v
    assert h.tolist() == [fnv("42:" + u) for u in users]


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1", "half"])
def test_bad_user_sample_is_one_line(value):
    with pytest.raises(config.ConfigError) as err:
        config.load(REPO / "config.yaml", [f"data.listens.user_sample={value}"])
    assert "'data.listens.user_sample'" in str(err.value) and "(0, 1]" in str(err.value)
    assert "\n" not in str(err.value)


def test_quality_of_a_sampled_run_is_json(tiny_log, tmp_path):
    stage01(tmp_path, tiny_log, "data.listens.user_sample=0.3")
    q = json.loads((tmp_path / "01_preprocess" / "quality.json").read_text())
    assert q["rows"]["sampled_out"] == q["listens"]["sampled_out"]
    assert q["rows"]["out"] == q["listens"]["events"]
