"""Stage 03: every feature family by hand on tiny frames, the leakage guarantees, and the stage run."""
import importlib
import json

import numpy as np
import polars as pl
import pytest

from conftest import make_cfg
from musicrec import config, features, preprocess, split
from musicrec.features.counts import count_features
from musicrec.features.keys import KeyCodes, densify
from musicrec.features.target import assign_folds, target_features
from musicrec.features.temporal import History, time_features, window_sizes
from musicrec.manifest import read_manifest, stage_dir

SCHEMA = {"time_order": pl.Int32, "user": pl.Int32, "song": pl.Int32, "target": pl.Int8, "id": pl.Int64,
          "artist": pl.Int32, "composer": pl.Int32, "lyricist": pl.Int32,
          **{c: pl.Int16 for c in features.BASE_CATEGORICAL},
          **{c: pl.Int32 for c in ("membership_days", "song_length")},
          **{c: pl.Int8 for c in ("genre_count", "composer_count", "lyricist_count", "member_missing", "bd_missing",
                                  "song_meta_missing", "song_extra_missing")},
          **{c: pl.Int16 for c in ("bd", "registration_year", "isrc_year")}}


def part(ts, user, song, target=None, **cols) -> pl.DataFrame:
    """A split part with every stage 01 column (0 unless given); `target=None` makes a Kaggle part."""
    n = len(ts)
    data = {"time_order": ts, "user": user, "song": song}
    data |= {"target": target} if target is not None else {"id": list(range(n))}
    data |= {c: cols.get(c, [0] * n) for c in features.WORK_COLS if c not in data}
    return pl.DataFrame(data, schema={c: SCHEMA[c] for c in data})


def cfg_with(*sets: str) -> dict:
    cfg = config.defaults()
    for text in sets:
        config.apply_override(cfg, *config.parse_override(text))
    return cfg


def random_parts(n=3000, seed=0) -> dict[str, pl.DataFrame]:
    """Temporal train/valid/test/kaggle parts with repeated users, songs and artists."""
    rng = np.random.default_rng(seed)
    song = rng.integers(0, 300, n)
    cols = dict(user=rng.integers(0, 60, n), song=song, artist=song % 40, genre=song % 7, language=song % 3,
                composer=song % 50, lyricist=song % 30, source_type=rng.integers(0, 4, n),
                source_system_tab=rng.integers(0, 3, n), source_screen_name=rng.integers(0, 5, n))
    full = part(list(range(n)), target=rng.integers(0, 2, n), **cols)
    cut = [0, int(n * .6), int(n * .7), int(n * .8), n]
    parts = {name: full.slice(cut[i], cut[i + 1] - cut[i]) for i, name in enumerate(("train", "valid", "test"))}
    parts["kaggle"] = full.slice(cut[3], n - cut[3]).drop("target").with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("id"))
    return parts


def small_cfg(*sets):
    return cfg_with("features.als.factors=4", "features.als.iterations=3", *sets)


@pytest.fixture(scope="module")
def random_run():
    parts = random_parts()
    return parts, features.build_features(parts, small_cfg())


# ---------------------------------------------------------------------------------------------
# group ids
def test_densify_both_paths_give_the_same_ids():
    code = np.array([7, 3, 7, 1_000_000_000, 3])
    assert densify(code, 1_000_000_001)[0].tolist() == [1, 0, 1, 2, 0]   # sorting path
    assert densify(code[[0, 1, 2, 4]], 8)[0].tolist() == [1, 0, 1, 0]    # presence-table path


# ---------------------------------------------------------------------------------------------
# counts and shares
def two_part_work(use_test: bool) -> pl.DataFrame:
    train = part([0, 1, 2, 3], user=[0, 0, 0, 1], song=[10, 11, 12, 10], target=[1, 0, 1, 1],
                 artist=[5, 5, 6, 5], source_type=[1, 2, 1, 1])
    valid = part([4, 5], user=[0, 2], song=[13, 10], target=[0, 0], artist=[5, 5], source_type=[2, 1])
    return features.stack({"train": train, "valid": valid}, np.array([0, 1, 0, 1], np.int8), 2, use_test)


def test_counts_and_shares_by_hand():
    work = two_part_work(use_test=True)
    counts, _, shares, _ = count_features(work, KeyCodes(work))
    assert counts["cnt_user"].to_list() == [4, 4, 4, 1, 4, 1]
    assert counts["cnt_song"].to_list() == [3, 1, 1, 3, 1, 3]
    assert counts["cnt_user_artist"].to_list() == [3, 3, 1, 1, 3, 1]
    assert counts["cnt_user_source_type"].to_list() == [2, 2, 2, 1, 2, 1]
    assert counts["nuniq_user_artist"].to_list() == [2, 2, 2, 1, 2, 1]
    assert counts["nuniq_artist_song"].to_list() == [3, 3, 1, 3, 3, 3]
    assert shares["share_user_artist"].to_list() == pytest.approx([.75, .75, .25, 1, .75, 1])
    assert shares["share_artist_song"].to_list() == pytest.approx([3 / 5, 1 / 5, 1, 3 / 5, 1 / 5, 3 / 5])
    assert counts.dtypes == [pl.Float32] * counts.width and shares.dtypes == [pl.Float32] * shares.width


def test_without_test_interactions_only_train_rows_are_counted():
    work = two_part_work(use_test=False)
    counts, _, shares, docs = count_features(work, KeyCodes(work))
    assert counts["cnt_user"].to_list() == [3, 3, 3, 1, 3, 0]
    assert counts["cnt_song"].to_list() == [2, 1, 1, 2, 0, 2]
    assert counts["nuniq_user_artist"].to_list() == [2, 2, 2, 1, 2, 0]
    assert shares["share_user_artist"][4] == pytest.approx(2 / 3)
    assert np.isnan(shares["share_user_artist"][5])      # user 2 has no train row: NaN, documented
    assert all(d["nan"] for d in docs)


def test_without_test_interactions_no_valid_or_test_row_changes_any_feature():
    parts = random_parts()
    other = dict(parts)
    for name in ("valid", "test", "kaggle"):   # different rows in every non-train part, first row kept
        df = parts[name]
        other[name] = pl.concat([df.head(1), df.slice(1).with_columns(pl.col("user").reverse(),
                                                                      pl.col("song").shuffle(seed=1))])
    cfg = small_cfg("features.use_test_interactions=false")
    a, _ = features.build_features(parts, cfg)
    b, _ = features.build_features(other, cfg)
    assert a["train"].equals(b["train"])
    for name in ("valid", "test", "kaggle"):
        assert a[name].head(1).equals(b[name].head(1))


# ---------------------------------------------------------------------------------------------
# target statistics
def test_folds_are_balanced_and_seeded():
    f = assign_folds(10, 3, np.random.default_rng(0))
    assert sorted(np.bincount(f).tolist()) == [3, 3, 4]
    assert (f == assign_folds(10, 3, np.random.default_rng(0))).all()


def test_out_of_fold_target_stats_by_hand():
    train = part([0, 1, 2, 3, 4, 5], user=[0, 0, 0, 0, 1, 1], song=[1, 2, 3, 4, 1, 2], target=[1, 0, 1, 1, 0, 0])
    valid = part([6, 7], user=[0, 9], song=[1, 1], target=[1, 1])
    folds = np.array([0, 0, 1, 1, 0, 1], np.int8)
    work = features.stack({"train": train, "valid": valid}, folds, 2, True)
    m = 2.0
    te, _ = target_features(work, KeyCodes(work), 2, m)
    prior_f0, prior_f1 = 2 / 3, 1 / 3    # train mean outside fold 0 (rows 2, 3, 5), outside fold 1
    prior = 3 / 6
    # user 0: fold 0 rows see rows 2, 3 (labels 1, 1); fold 1 rows see rows 0, 1 (1, 0)
    expect_user = [(2 + m * prior_f0) / (2 + m)] * 2 + [(1 + m * prior_f1) / (2 + m)] * 2
    expect_user += [(0 + m * prior_f0) / (1 + m), (0 + m * prior_f1) / (1 + m)]
    expect_user += [(3 + m * prior) / (4 + m), prior]   # valid: full train; unseen user 9: the prior
    assert te["te_user"].to_list() == pytest.approx(expect_user, rel=1e-6)
    assert te["te_user_n"].to_list() == [3, 3, 3, 3, 1, 1, 4, 0]   # other train rows, on every split
    # song 1 is played by rows 0 (fold 0, label 1) and 4 (fold 0, label 0): nothing out of fold
    assert te["te_song"][0] == pytest.approx(prior_f0) and te["te_song_n"][0] == 1
    assert te["te_song"][6] == pytest.approx((1 + m * prior) / (2 + m))


def test_changing_one_train_label_changes_no_feature_of_that_row(random_run):
    parts, (before, _) = random_run
    i = 123
    flipped = dict(parts, train=parts["train"].with_columns(
        pl.when(pl.int_range(pl.len()) == i).then(1 - pl.col("target")).otherwise(pl.col("target"))
        .cast(pl.Int8).alias("target")))
    after, _ = features.build_features(flipped, small_cfg())
    assert before["train"].row(i) == after["train"].row(i)
    changed = (before["train"].select(pl.col("^te_.*$")) != after["train"].select(pl.col("^te_.*$"))).sum_horizontal()
    assert changed.sum() > 0                             # the label does reach other rows (other folds)
    assert not before["valid"].equals(after["valid"])    # and valid rows via the full-train statistic


def test_shuffled_valid_and_test_labels_change_no_feature(random_run):
    parts, (before, specs) = random_run
    shuffled = dict(parts, **{n: parts[n].with_columns(pl.col("target").shuffle(seed=7)) for n in ("valid", "test")})
    assert not shuffled["valid"]["target"].equals(parts["valid"]["target"])
    after, _ = features.build_features(shuffled, small_cfg())
    for name in parts:
        assert before[name].equals(after[name]), name


def test_valid_and_test_stats_are_the_full_train_smoothed_mean(random_run):
    parts, (feats, _) = random_run
    m = config.defaults()["features"]["target_stats"]["smoothing"]
    train = parts["train"]
    prior = train["target"].mean()
    row = parts["test"].row(0, named=True)
    mine = train.filter((pl.col("user") == row["user"]) & (pl.col("artist") == row["artist"]))["target"]
    assert feats["test"]["te_user_artist"][0] == pytest.approx((mine.sum() + m * prior) / (mine.len() + m), rel=1e-6)
    assert feats["test"]["te_user_artist_n"][0] == mine.len()


def test_test_rows_match_scikit_learns_target_encoder(random_run):
    """scikit-learn's TargetEncoder (fit on all train rows, same smoothing) is an independent oracle
    for the statistics of rows that are not in train."""
    from sklearn.preprocessing import TargetEncoder

    parts, (feats, _) = random_run
    m = config.defaults()["features"]["target_stats"]["smoothing"]
    train, test = parts["train"], parts["test"]
    for key, cols in (("te_user", ["user"]), ("te_song", ["song"]), ("te_user_artist", ["user", "artist"])):
        pair = lambda df: df.select(pl.concat_str([pl.col(c).cast(pl.String) for c in cols], separator="|"))  # noqa: E731
        enc = TargetEncoder(categories="auto", target_type="binary", smooth=m).fit(
            pair(train).to_numpy(), train["target"].to_numpy())
        expected = enc.transform(pair(test).to_numpy()).ravel()
        np.testing.assert_allclose(feats["test"][key].to_numpy(), expected, rtol=1e-5, err_msg=key)


# ---------------------------------------------------------------------------------------------
# time features
def test_play_index_windows_and_age_by_hand():
    key = np.array([0, 0, 1, 0, 0, 1])
    ts = np.array([0, 2, 3, 5, 9, 10])
    pool = np.array([True, True, True, False, True, True])   # the row at ts 5 is not in the pool
    h = History(key, ts, pool)
    assert h.earlier().tolist() == [0, 1, 0, 2, 2, 1]
    assert h.recent(3).tolist() == [0, 1, 0, 1, 0, 0]        # pool rows of the key in [ts - 3, ts)
    assert h.recent(100).tolist() == h.earlier().tolist()
    assert h.age().tolist() == [0, 2, 0, 5, 9, 7]


def test_time_features_follow_the_pool_and_window_shares():
    assert window_sizes([0.001, 0.5], 1000) == [1, 500]
    work = two_part_work(True)
    t, _ = time_features(work, KeyCodes(work), [0.5])
    assert t["play_index_user"].to_list() == [0, 1, 2, 0, 3, 0]
    assert t["recent_song_w0"].to_list() == [0, 0, 0, 1, 0, 1]   # w = 0.5 x 6 rows = 3
    assert t["song_age_rows"].to_list() == [0, 0, 0, 3, 0, 5]
    assert t["play_index_user_artist"].to_list() == [0, 1, 0, 0, 2, 0]


# ---------------------------------------------------------------------------------------------
# ALS
def block_parts() -> dict[str, pl.DataFrame]:
    """Two taste blocks: users 0-9 play songs 0-9, users 10-19 songs 10-19 (train, each 7 of 10)."""
    rng = np.random.default_rng(3)
    users, songs = [], []
    for u in range(20):
        block = 0 if u < 10 else 10
        for s in rng.choice(10, 7, replace=False):
            users.append(u)
            songs.append(block + s)
    n = len(users)
    train = part(list(range(n)), user=users, song=songs, artist=[s // 5 for s in songs], target=[1] * n)
    # valid: an unplayed song of the own block, one of the other block, and an unseen user
    unplayed = next(s for s in range(10) if (0, s) not in set(zip(users, songs)))
    valid = part([n, n + 1, n + 2], user=[0, 0, 99], song=[unplayed, 15, 3], artist=[unplayed // 5, 3, 0],
                 target=[0, 0, 0])
    return {"train": train, "valid": valid, "test": valid.with_columns(pl.col("time_order") + 3)}


def test_als_scores_separate_tastes_and_unseen_users_are_nan():
    cfg = cfg_with("features.use_test_interactions=false", "features.als.factors=4", "features.als.factor_dims=2",
                   "features.als.iterations=15")
    feats, specs = features.build_features(block_parts(), cfg)
    v = feats["valid"]
    assert v["als_user_song"][0] > v["als_user_song"][1] + 0.1   # own block scores higher
    assert np.isnan(v["als_user_song"][2]) and np.isnan(v["als_user_artist"][2]) and np.isnan(v["als_user_f0"][2])
    assert not np.isnan(v["als_song_f1"][2])                       # song 3 is known
    assert not feats["train"].select(pl.col("^als_.*$")).select(pl.any_horizontal(pl.all().is_nan())).to_series().any()
    als = [s for s in specs if s["source"] == "als" and s["name"].startswith("als_")]
    assert [s["name"] for s in specs if s["source"] == "als" and not s["name"].startswith("als_")] == []
    # taste clusters (with two planted blocks taste_top_share equals taste_match_other, a copy that
    # stage 03 leaves out)
    assert [s["name"] for s in specs if s["source"] == "cluster"] == [
        "taste_match", "taste_match_other", "song_cluster_share"]
    assert [s["name"] for s in als] == ["als_user_song", "als_cos_user_song", "als_knn_user_song", "als_user_f0",
                                        "als_user_f1", "als_song_f0", "als_song_f1", "als_user_artist",
                                        "als_cos_user_artist", "als_knn_user_artist"]
    assert v["als_cos_user_song"][0] > v["als_cos_user_song"][1]   # taste match, popularity removed
    assert v["als_knn_user_song"][0] > v["als_knn_user_song"][1]   # close to the user's other songs
    assert all(s["nan"] for s in als)


def test_als_is_seeded_and_can_be_disabled():
    parts = block_parts()
    a, _ = features.build_features(parts, small_cfg())
    b, _ = features.build_features(parts, small_cfg())
    assert a["train"].equals(b["train"])
    c, _ = features.build_features(parts, small_cfg("seed=1"))
    assert not a["train"]["als_user_song"].equals(c["train"]["als_user_song"])
    _, specs = features.build_features(parts, small_cfg("features.als.enabled=false"))
    assert not any(s["name"].startswith("als_") for s in specs)
    assert "taste_match" in {s["name"] for s in specs}        # clusters then start from random posteriors
    _, specs = features.build_features(parts, small_cfg("features.als.enabled=false", "features.clusters.enabled=false"))
    assert not any(s["source"] in ("als", "cluster") for s in specs)


def test_a_column_the_source_lacks_gets_no_target_statistic_or_bias(random_run):
    """A listen log has one source tab and one genre: their statistics would be fold noise or copies."""
    parts, (_, specs) = random_run
    names = {s["name"] for s in specs}
    assert {"te_genre", "te_user_genre", "te_source", "te_user_source_type", "bias_context"} <= names  # varying
    flat = {k: p.with_columns(pl.lit(0, SCHEMA[c]).alias(c) for c in ("genre", "source_system_tab",
                                                                      "source_screen_name", "source_type"))
            for k, p in parts.items()}
    _, specs = features.build_features(flat, small_cfg())
    names = {s["name"] for s in specs}
    assert not names & {"te_genre", "te_user_genre", "te_source", "te_user_source_type", "bias_context"}
    assert {"te_user", "te_song", "te_user_artist", "bias_user", "bias_song"} <= names   # the rest stays
    keys = features.stage.KeyCodes(pl.DataFrame({"a": [0, 0, 0], "b": [1, 2, 3], "c": [5, 5, 6]}))
    assert features.stage.informative({"b": ("b",), "ab": ("a", "b"), "a": ("a",), "bc": ("b", "c")},
                                      keys) == {"b": ("b",), "bc": ("b", "c")}


# ---------------------------------------------------------------------------------------------
# the stage
@pytest.fixture(scope="module")
def stage_run(tmp_path_factory, tiny_raw):
    out = []
    for name in ("a", "b"):
        cfg = make_cfg(tmp_path_factory.mktemp(f"features_{name}"), tiny_raw)
        preprocess.run(cfg)
        split.run(cfg)
        table = features.run(cfg)
        out.append((cfg, table))
    return out


def test_stage_outputs_keys_schema_and_nan_policy(stage_run):
    cfg, table = stage_run[0]
    folder = stage_dir(cfg, features.STAGE)
    assert json.loads((folder / "features.json").read_text()) == json.loads(json.dumps(table))
    specs = {s["name"]: s for s in table["features"]}
    assert not {"user", "song", "artist", "composer", "lyricist", "target", "id"} & set(specs)
    assert {s["source"] for s in specs.values()} == {"base", "count", "share", "target_stat", "time", "als", "cluster"}
    for spec in specs.values():   # every feature name leads to the function that computed it
        target = importlib.import_module(spec["module"])
        for attr in spec["function"].split("."):
            target = getattr(target, attr)
        assert callable(target), spec["name"]
    for name in ("train", "valid", "test", "kaggle"):
        df = pl.read_parquet(folder / f"features_{name}.parquet")
        upstream = pl.read_parquet(folder.parent / ("01_preprocess/kaggle_test.parquet" if name == "kaggle"
                                                    else f"02_split/{name}.parquet"))
        key = ["time_order", "user", "song", "id" if name == "kaggle" else "target"]
        assert df.columns == key + list(specs) and df.height == upstream.height
        assert df.select(key).equals(upstream.select(key))
        assert [str(t) for t in df.select(list(specs)).dtypes] == [s["dtype"] for s in specs.values()]
        assert df.null_count().sum_horizontal()[0] == 0
        for col, spec in specs.items():
            if spec["categorical"]:
                assert df[col].dtype.is_integer() and df[col].min() >= 0, col
            else:
                assert df[col].dtype == pl.Float32, col
                if not spec["nan"]:
                    assert not df[col].is_nan().any(), (name, col)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {"read", "counts", "target stats", "time", "als", "write"} <= set(manifest["timings_s"])
    assert manifest["rows"]["features_train.parquet"] == manifest["info"]["rows"]["train"]


def test_stage_is_deterministic(stage_run):
    (cfg_a, _), (cfg_b, _) = stage_run
    ma, mb = (read_manifest(c, features.STAGE) for c in (cfg_a, cfg_b))
    assert {k: v["hash"] for k, v in ma["outputs"].items()} == {k: v["hash"] for k, v in mb["outputs"].items()}


def test_additive_biases_separate_user_from_context():
    # even users replay more (+0.2); "library" context replays more (+0.3); odd users mostly use
    # the library, so their raw replay rate looks as high as the even users'
    from musicrec.features.target import fit_biases
    rng = np.random.default_rng(0)
    n = 40_000
    user = rng.integers(0, 20, n)
    library = rng.random(n) < np.where(user % 2 == 1, 0.9, 0.2)
    p = 0.3 + 0.2 * (user % 2 == 0) + 0.3 * library
    y = (rng.random(n) < p).astype(np.float64)
    raw = np.bincount(user, y) / np.bincount(user)
    assert abs(raw[::2].mean() - raw[1::2].mean()) < 0.06   # confounded
    mu, (b_ctx, b_user) = fit_biases([(library.astype(np.int64), 2), (user, 20)], y, np.arange(n), lam=1.0,
                                     iterations=20)
    assert b_user[::2].mean() - b_user[1::2].mean() == pytest.approx(0.2, abs=0.02)
    assert b_ctx[1] - b_ctx[0] == pytest.approx(0.3, abs=0.02)
