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
