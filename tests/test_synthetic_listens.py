"""The synthetic listen generator: its truth agrees with the reader's derivation in every format."""
from __future__ import annotations

import json

import polars as pl
import pytest

from musicrec import preprocess
from musicrec.synthetic import listens as synthetic_listens

from conftest import make_cfg


@pytest.fixture(scope="module")
def tiny_logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("listens")
    return {fmt: (root / fmt, synthetic_listens.generate(root / fmt, "tiny", fmt, random_state=[42, 14]))
            for fmt in synthetic_listens.FORMATS}


@pytest.mark.parametrize("fmt", synthetic_listens.FORMATS)
def test_generated_labels_equal_the_derived_targets(tiny_logs, tmp_path, fmt):
    folder, info = tiny_logs[fmt]
    quality = preprocess.run(make_cfg(tmp_path, None, "data.source=listens", f"data.listens.format={fmt}",
                                      f"data.listens.path={folder / 'listens'}"))
    truth = quality["synthetic_truth"]
    # the generator labels a pair from the plays it drew; the reader from the log it reads back
    assert truth["events_with_truth"] == quality["listens"]["events"] > 0
    assert truth["label_equals_target"] == 1.0
    assert quality["listens"]["in"] == info["listens"]
    assert quality["listens"]["events"] + quality["listens"]["unlabellable"] == info["pairs"]
    t = pl.read_parquet(tmp_path / "01_preprocess" / "truth.parquet")
    assert t["row"].to_list() == list(range(quality["listens"]["events"]))


def test_formats_hold_the_same_listens(tiny_logs, tmp_path):
    counts = {}
    for fmt in synthetic_listens.FORMATS:
        folder, _ = tiny_logs[fmt]
        q = preprocess.run(make_cfg(tmp_path / fmt, None, "data.source=listens", f"data.listens.format={fmt}",
                                    f"data.listens.path={folder / 'listens'}"))
        counts[fmt] = (q["listens"], q["target"])
    assert len({json.dumps(v, sort_keys=True) for v in counts.values()}) == 1


def test_generation_is_reproducible(tmp_path):
    a = synthetic_listens.generate(tmp_path / "a", "tiny", "table", random_state=[1, 14])
    b = synthetic_listens.generate(tmp_path / "b", "tiny", "table", random_state=[1, 14])
    assert a == b
    assert pl.read_parquet(tmp_path / "a" / "truth.parquet").equals(pl.read_parquet(tmp_path / "b" / "truth.parquet"))


@pytest.mark.parametrize("promoted", [0, 20])
def test_bots_are_marked_and_play_as_specified(tmp_path, promoted):
    """Noise bots draw tracks uniformly (few of the humans' most played); a farm's bots loop the
    promoted tracks, replayed with probability bot_replay, and humans seldom play them; without bots
    the truth has no such column."""
    import dataclasses

    import numpy as np

    p = dataclasses.replace(synthetic_listens.PRESETS["tiny"], bot_share=0.15, bot_tracks=promoted)
    synthetic_listens.generate(tmp_path / "b", p, "table", random_state=[3, 14])
    t = pl.read_parquet(tmp_path / "b" / "truth.parquet")
    users = t.group_by("user").agg(pl.col("bot").first(), pl.col("bot").n_unique().alias("k"))
    assert (users["k"] == 1).all()
    n = users.height
    assert abs(users["bot"].mean() - 0.15) < 4 * np.sqrt(0.15 * 0.85 / n)
    bots, humans = t.filter(pl.col("bot") == 1), t.filter(pl.col("bot") == 0)
    top = humans.group_by("track").len().sort("len", descending=True).head(100)["track"]
    if promoted:
        world = synthetic_listens.world(p, np.random.default_rng([3, 14]))
        farm = pl.Series([f"Track {t}" for t in world["promoted"]])
        assert len(farm) == promoted
        looped = bots.filter(pl.col("track").is_in(farm.implode()))
        assert (looped["p_true"] == p.bot_replay).all()
        assert looped.height > 0.5 * promoted * users["bot"].sum()     # a bot plays most of the promoted tracks
        assert humans["track"].is_in(farm.implode()).mean() < 0.02
    else:
        assert bots["track"].is_in(top.implode()).mean() < 0.3 * humans["track"].is_in(top.implode()).mean()
    synthetic_listens.generate(tmp_path / "h", synthetic_listens.PRESETS["tiny"], "table", random_state=[3, 14])
    assert "bot" not in pl.read_parquet_schema(tmp_path / "h" / "truth.parquet")
