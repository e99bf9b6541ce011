import numpy as np
import polars as pl
import pytest

from musicrec import split
from musicrec.split import random_assignment, split_sizes, temporal_assignment


def test_sizes_round_and_refuse_empty_parts():
    assert split_sizes(1000, 0.2, 0.1) == (720, 80, 200)
    with pytest.raises(ValueError, match="empty part"):
        split_sizes(3, 0.2, 0.1)


def test_temporal_assignment_follows_time_not_row_order():
    time_order = np.array([5, 0, 9, 1, 8, 2, 7, 3, 6, 4])
    part = temporal_assignment(time_order, 0.2, 0.25)
    assert sorted(time_order[part == 2]) == [8, 9]
    assert sorted(time_order[part == 1]) == [6, 7]
    assert sorted(time_order[part == 0]) == [0, 1, 2, 3, 4, 5]


def test_random_assignment_is_stratified_and_reproducible():
    y = (np.arange(10_000) % 4 == 0).astype(np.int8)
    a = random_assignment(y, 0.2, 0.1, random_state=3)
    assert (a == random_assignment(y, 0.2, 0.1, random_state=3)).all()
    assert not (a == random_assignment(y, 0.2, 0.1, random_state=4)).all()
    for p in (0, 1, 2):
        assert abs(y[a == p].mean() - 0.25) < 0.002
    assert np.bincount(a).tolist() == [7200, 800, 2000]


def test_cold_start_counts_distinct_and_rows():
    train = pl.DataFrame({"user": [1, 2], "song": [10, 11]})
    test = pl.DataFrame({"user": [1, 3, 3, 3], "song": [10, 10, 12, 13]})
    cs = split.cold_start(train, test)
    assert cs["test_users_unseen_share"] == 0.5 and cs["test_rows_with_unseen_user_share"] == 0.75
    assert cs["test_songs_unseen_share"] == pytest.approx(2 / 3) and cs["test_rows_with_unseen_song_share"] == 0.5


def test_train_label_noise_flips_exactly_the_share_only_in_train_and_records_it():
    from musicrec.split import flip_train_labels

    n = 1003
    rng = np.random.default_rng(0)
    df = pl.DataFrame({"time_order": np.arange(n), "target": rng.integers(0, 2, n).astype(np.int8)})
    parts = split.split(df, {"method": "temporal", "test_fraction": 0.2, "valid_fraction": 0.1}, 0)
    train = parts["train"]
    noisy = flip_train_labels(train, 0.1, np.random.default_rng(5))
    changed = (noisy["target"] != train["target"]).to_numpy()
    assert changed.sum() == round(0.1 * train.height)                         # exactly the share
    assert np.array_equal(changed, noisy["label_flipped"].to_numpy())          # recorded row by row
    assert noisy["target"].dtype == train["target"].dtype
    again = flip_train_labels(train, 0.1, np.random.default_rng(5))
    assert again.equals(noisy)                                                 # seeded
    assert not flip_train_labels(train, 0.0, np.random.default_rng(5))["label_flipped"].any()


def test_train_label_noise_in_the_stage_leaves_valid_and_test_clean(tmp_path):
    from conftest import make_cfg
    from musicrec import preprocess

    clean = make_cfg(tmp_path)
    noisy = make_cfg(tmp_path, None, "split.train_label_noise=0.2")
    preprocess.run(clean)
    a, b = split.run(clean), split.run(noisy, force=True)
    parts = {n: pl.read_parquet(tmp_path / "02_split" / f"{n}.parquet") for n in split.PARTS}
    assert b["train_label_noise"]["flipped"] == round(0.2 * a["train"]["rows"]) == parts["train"]["label_flipped"].sum()
    assert a["train_label_noise"]["flipped"] == 0
    for name in ("valid", "test"):   # untouched
        assert "label_flipped" not in parts[name].columns
        assert b[name]["target_mean"] == a[name]["target_mean"]


def test_user_holdout_takes_the_rounded_share_of_every_users_rows():
    """Per user of n rows: round(n * test) test rows, round((n - n_test) * valid) valid, at least one
    train row each; the draw is seeded and another seed draws other rows."""
    rng_user = np.random.default_rng(0)
    user = rng_user.integers(0, 40, 2_000)
    part = split.user_holdout_assignment(user, 0.2, 0.1, np.random.default_rng(5))
    for u in np.unique(user):
        mine = part[user == u]
        n = len(mine)
        n_test = min(int(np.rint(n * 0.2)), n - 1)
        assert (mine == 2).sum() == n_test
        assert (mine == 1).sum() == min(int(np.rint((n - n_test) * 0.1)), n - n_test - 1)
        assert (mine == 0).sum() >= 1
    again = split.user_holdout_assignment(user, 0.2, 0.1, np.random.default_rng(5))
    other = split.user_holdout_assignment(user, 0.2, 0.1, np.random.default_rng(6))
    assert (part == again).all() and not (part == other).all()
