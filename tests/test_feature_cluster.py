"""Stage 03 taste clusters and play rates, on planted data where the answer is known."""
import numpy as np
import polars as pl
import scipy.sparse as sp

from musicrec.features.clusters import Taste, fit_clusters, user_shares
from musicrec.features.pool import span

CCFG = {"k": 2, "iterations": 30, "smoothing": 0.5, "ridge": 10.0}


def blocks(n_users=40, n_songs=30, seed=0):
    """Users 0..n/2 play only songs 0..m/2, the other users only the other songs."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, n_users, 2000)
    half = n_songs // 2
    song = np.where(user < n_users // 2, rng.integers(0, half, 2000), rng.integers(half, n_songs, 2000))
    return user, song


def test_em_recovers_planted_song_clusters():
    user, song = blocks()
    matrix = sp.csr_matrix((np.ones(len(user)), (user, song)), shape=(40, 30))
    matrix.sum_duplicates()
    post = fit_clusters(matrix, CCFG, np.random.default_rng(1))
    label = post.argmax(axis=1)
    assert len(set(label[:15])) == 1 and len(set(label[15:])) == 1 and label[0] != label[15]
    theta = user_shares(matrix, post, 0.5)
    assert np.allclose(theta.sum(axis=1), 1.0)
    assert (theta[np.arange(20), label[0]] > 0.9).all()      # the first users play the first cluster


def work_frame(user, song, y, in_pool, fold):
    n = len(user)
    return pl.DataFrame({"time_order": np.arange(n), "user": user, "song": song, "y": y.astype(np.float64),
                         "labelled": (fold < 5).astype(np.float64), "fold": fold, "in_pool": in_pool})


def test_taste_features_match_their_definitions():
    user, song = blocks()
    pairs = np.unique(user * 100 + song)                      # each pair once, as in KKBOX
    user, song = pairs // 100, pairs % 100
    rng = np.random.default_rng(2)
    n = len(user)
    fold = rng.integers(0, 5, n)
    work = work_frame(user, song, rng.integers(0, 2, n), np.ones(n, bool), fold)
    taste = Taste(work, CCFG, np.random.default_rng(3))
    cols, docs = taste.label_free()
    assert [d["name"] for d in docs] == cols.columns
    match = cols["taste_match"].to_numpy()
    assert (match > 0.9).all()                                # every play is inside the player's cluster
    # leaving the pair out lowers the user's share of the song's cluster, never raises it
    assert (cols["taste_match_other"].to_numpy() <= match + 1e-6).all()


def test_cluster_regression_is_out_of_fold():
    user, song = blocks()
    pairs = np.unique(user * 100 + song)
    user, song = pairs // 100, pairs % 100
    rng = np.random.default_rng(4)
    n = len(user)
    fold = rng.integers(0, 5, n)
    y = rng.integers(0, 2, n)
    work = work_frame(user, song, y, np.ones(n, bool), fold)
    taste = Taste(work, CCFG, np.random.default_rng(3))
    a = taste.regression(work, 5, 10.0)[0]["te_taste_regression"].to_numpy()
    flipped = y.copy()
    flipped[fold == 2] = 1 - flipped[fold == 2]               # other labels inside fold 2 only
    b = taste.regression(work_frame(user, song, flipped, np.ones(n, bool), fold), 5, 10.0)[0][
        "te_taste_regression"].to_numpy()
    assert np.array_equal(a[fold == 2], b[fold == 2])         # fold 2's rows never see fold 2's labels
    assert not np.array_equal(a[fold != 2], b[fold != 2])


def test_span_by_hand():
    ids = np.array([0, 0, 1, 0, 2])
    ts = np.array([1, 4, 5, 9, 12])
    pool = np.array([True, True, True, False, True])          # the row at ts 9 is not in the pool
    first, last, plays = span(ids, 4, ts, pool)
    assert first.tolist() == [1, 5, 12, 0] and last.tolist() == [4, 5, 12, 0] and plays.tolist() == [2, 1, 1, 0]


def test_row_blocks_product_is_scipys_product_to_the_bit():
    """Threads share the rows of a sparse product; no row may come out different from the one-core product."""
    from musicrec.parallel import RowBlocks

    rng = np.random.default_rng(3)
    matrix = sp.random(1001, 77, density=0.1, random_state=4, format="csr", dtype=np.float32)
    dense = rng.normal(size=(77, 5))
    for threads in (1, 2, 3, 7):
        got = RowBlocks(matrix, threads) @ dense
        assert got.dtype == np.float64 and np.array_equal(got, matrix @ dense)
