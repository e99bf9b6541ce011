"""Tests of the synthetic KKBOX generator: format, exactness, determinism and the ground truth."""
import csv
import filecmp
import re

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from musicrec import synthetic as S

FILES = ["train.csv", "test.csv", "members.csv", "songs.csv", "song_extra_info.csv", "truth.parquet",
         "generation.json"]
HEADERS = {"train.csv": S.TRAIN_COLUMNS, "test.csv": S.TEST_COLUMNS, "members.csv": S.MEMBER_COLUMNS,
           "songs.csv": S.SONG_COLUMNS, "song_extra_info.csv": S.EXTRA_COLUMNS}
ID_RE = re.compile(r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")   # base64 of 32 bytes
NOISE = 0.1


def _read(path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema_length=0)   # all columns as text, like a first look


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    summary = S.generate(out, "tiny", label_noise=NOISE, random_state=7)
    return out, summary


@pytest.fixture(scope="module")
def tables(tiny):
    out, _ = tiny
    return {name: _read(out / name) for name in HEADERS} | {"truth": pl.read_parquet(out / "truth.parquet")}


@pytest.fixture(scope="module")
def small_sim():
    return S.simulate("small", random_state=0)


# ---------------------------------------------------------------------------------------------
# files and format
def test_files_exist_with_exact_headers(tiny):
    out, _ = tiny
    for name in FILES:
        assert (out / name).is_file(), name
    for name, header in HEADERS.items():
        with open(out / name, encoding="utf-8") as f:
            assert f.readline().rstrip("\n") == ",".join(header), name


def test_row_counts_are_exact(tables, tiny):
    _, summary = tiny
    preset = S.PRESETS["tiny"]
    assert tables["train.csv"].height == preset["train_rows"] == summary["train_rows"]
    assert tables["test.csv"].height == preset["test_rows"] == summary["test_rows"]
    assert tables["test.csv"]["id"].cast(pl.Int64).to_list() == list(range(preset["test_rows"]))


def test_row_overrides_are_exact(tmp_path):
    summary = S.generate(tmp_path, "tiny", train_rows=3_001, test_rows=777, random_state=1)
    assert _read(tmp_path / "train.csv").height == 3_001 == summary["train_rows"]
    assert _read(tmp_path / "test.csv").height == 777 == summary["test_rows"]
    assert 0.72 <= summary["oracle_auc"] <= 0.85


def test_ids_look_like_kkbox_and_are_unique(tables):
    members, songs, extra = tables["members.csv"], tables["songs.csv"], tables["song_extra_info.csv"]
    for ids in (members["msno"], songs["song_id"], extra["song_id"]):
        assert ids.n_unique() == ids.len()
        assert all(ID_RE.match(v) for v in ids.to_list())
    rows = pl.concat([tables["train.csv"].select("msno", "song_id"), tables["test.csv"].select("msno", "song_id")])
    assert all(ID_RE.match(v) for v in rows["song_id"].unique().to_list())
    assert rows["msno"].is_in(members["msno"].implode()).all()          # every user has a profile
    assert members["msno"].is_in(rows["msno"].implode()).all()          # and every member has rows
    assert not set(members["msno"].to_list()) & set(songs["song_id"].to_list())


def test_source_columns_are_real_triples_with_both_missing_conventions(tables):
    train = tables["train.csv"]
    allowed = {(t, s, y) for t, s, y, _ in S.TRIPLES}
    triples = train.select("source_system_tab", "source_screen_name", "source_type").unique().rows()
    complete = {row for row in triples if "null" not in row and None not in row}
    assert len(complete) > 20 and complete <= allowed                           # consistent triples
    shares = dict(train["source_system_tab"].value_counts(normalize=True).iter_rows())
    assert 0.42 < shares["my library"] < 0.58 and 0.2 < shares["discover"] < 0.36
    for col in ("source_system_tab", "source_screen_name", "source_type"):
        assert train[col].is_null().sum() > 0, col                       # written as empty cells
        assert (train[col] == "null").sum() > 0, col                     # written as the string null
    screen_missing = (train["source_screen_name"].is_null() | (train["source_screen_name"] == "null")).mean()
    assert 0.03 < screen_missing < 0.09


def test_members_look_real(tables):
    m = tables["members.csv"].with_columns(pl.col("bd", "registration_init_time", "expiration_date",
                                                  "city", "registered_via").cast(pl.Int64))
    assert 0.45 < (m["bd"] == 0).mean() < 0.7
    assert 0.45 < m["gender"].is_null().mean() < 0.7
    assert set(m["gender"].drop_nulls().unique()) == {"male", "female"}
    assert (m["bd"] < 0).any() and (m["bd"] > 100).any()
    assert (m["city"] == 1).mean() > 0.45
    assert set(m["registered_via"].unique()) <= set(S.VIA.tolist())
    reg = m["registration_init_time"]
    assert reg.is_between(20040101, 20171231).all()
    assert (m["expiration_date"] == 19700101).sum() >= 1
    assert ((m["expiration_date"] // 10_000) == 2017).mean() > 0.5


def test_songs_look_real(tables):
    songs = tables["songs.csv"]
    length = songs["song_length"].cast(pl.Int64)
    assert 200_000 < length.median() < 270_000 and length.max() > 1_000_000 and length.min() < 60_000
    genres = songs["genre_ids"].drop_nulls()
    assert 0.02 < songs["genre_ids"].is_null().mean() < 0.07
    assert 0.85 < (~genres.str.contains("|", literal=True)).mean() < 0.97
    assert genres.str.split("|").explode().mode().to_list() == ["465"]
    assert 0.35 < songs["composer"].is_null().mean() < 0.6 and 0.75 < songs["lyricist"].is_null().mean() < 0.92
    assert songs["composer"].drop_nulls().str.contains("| ", literal=True).any()
    assert set(songs["language"].cast(pl.Int64).unique()) <= set(S.LANGUAGES.tolist())
    assert (songs["artist_name"] == "Various Artists").sum() > 0
    assert songs["artist_name"].str.contains(r" \([A-Za-z]").any()             # "張信哲 (Jeff Chang)"
    played = pl.concat([tables["train.csv"]["song_id"], tables["test.csv"]["song_id"]]).unique()
    missing = (~played.is_in(songs["song_id"].implode())).mean()
    assert 0 < missing < 0.02                                                   # ~0.5% without metadata
    assert (~songs["song_id"].is_in(played.implode())).any()                     # never played songs


def test_song_extra_info_parses_back_exactly(tiny, tables):
    out, _ = tiny
    extra = tables["song_extra_info.csv"]
    with open(out / "song_extra_info.csv", newline="", encoding="utf-8") as f:
        records = list(csv.reader(f))
    assert extra.height == len(records) - 1
    assert extra["name"].to_list() == [r[1] for r in records[1:]]
    assert extra["name"].str.contains("\n").any() and extra["name"].str.contains('"').any()
    assert extra["name"].str.contains(",").any()
    physical_lines = (out / "song_extra_info.csv").read_bytes().count(b"\n")
    assert physical_lines > len(records)                                        # multi-line records
    isrc = extra["isrc"].drop_nulls()
    assert isrc.str.contains(r"^[A-Z]{2}[A-Z0-9]{3}[0-9]{7}$").all()
    assert 0.08 < extra["isrc"].is_null().mean() < 0.18


# ---------------------------------------------------------------------------------------------
# rows and truth
def test_pairs_are_first_listening_events(tables):
    rows = pl.concat([tables["train.csv"].select("msno", "song_id"), tables["test.csv"].select("msno", "song_id")])
    assert rows.is_unique().all()


def test_truth_aligns_and_noise_is_exact(tables, tiny):
    _, summary = tiny
    truth, train, test = tables["truth"], tables["train.csv"], tables["test.csv"]
    assert truth.schema == pl.Schema({"file": pl.String, "row": pl.Int64, "p_true": pl.Float64,
                                      "label": pl.Int8, "flipped": pl.Boolean})
    tr, te = truth.filter(pl.col("file") == "train"), truth.filter(pl.col("file") == "test")
    assert tr["row"].to_list() == list(range(train.height)) and te["row"].to_list() == list(range(test.height))
    assert truth.height == train.height + test.height
    assert truth["p_true"].is_between(0, 1, closed="none").all()
    assert tr["flipped"].sum() == round(NOISE * train.height) == summary["flipped"]
    assert not te["flipped"].any()
    target = train["target"].cast(pl.Int8)
    assert (target == (tr["label"] ^ tr["flipped"].cast(pl.Int8))).all()


def test_same_arguments_same_bytes_and_seed_matters(tiny, tmp_path):
    out, _ = tiny
    again, other = tmp_path / "again", tmp_path / "other"
    S.generate(again, "tiny", label_noise=NOISE, random_state=7)
    S.generate(other, "tiny", label_noise=NOISE, random_state=8)
    for name in FILES:
        assert filecmp.cmp(out / name, again / name, shallow=False), name
    for name in ("train.csv", "members.csv", "songs.csv", "truth.parquet"):
        assert not filecmp.cmp(out / name, other / name, shallow=False), name


def test_label_noise_does_not_move_the_world(tiny, tmp_path):
    out, _ = tiny
    S.generate(tmp_path, "tiny", label_noise=0.0, random_state=7)
    clean, noisy = pl.read_parquet(tmp_path / "truth.parquet"), pl.read_parquet(out / "truth.parquet")
    assert clean["p_true"].equals(noisy["p_true"]) and clean["label"].equals(noisy["label"])
    assert not clean["flipped"].any()


def test_simulate_is_the_world_generate_writes(tables):
    sim = S.simulate("tiny", random_state=7)
    assert np.array_equal(sim.p_true, tables["truth"]["p_true"].to_numpy())


def test_oracle_auc_and_drift(tables, tiny):
    _, summary = tiny
    tr = tables["truth"].filter(pl.col("file") == "train")
    auc = roc_auc_score(tr["label"].to_numpy(), tr["p_true"].to_numpy())
    assert auc == pytest.approx(summary["oracle_auc"], abs=1e-12)
    assert 0.72 <= auc <= 0.85
    assert 0.48 < tr["p_true"].mean() < 0.53
    head = tr["p_true"].head(500).mean()
    assert head > tr["p_true"].mean() + 0.15                                    # early rows replay more


def test_cold_start_shares(tables, tiny):
    _, summary = tiny
    train = tables["train.csv"]
    cut = int(round(0.8 * train.height))
    early, late = train.head(cut), train.tail(train.height - cut)
    for col, key, floor in (("song_id", "test_songs_unseen_share", 0.15), ("msno", "test_users_unseen_share", 0.10)):
        late_ids = late[col].unique()
        share = (~late_ids.is_in(early[col].unique().implode())).mean()
        assert share == pytest.approx(summary["cold_start"][key])
        assert share >= floor, col


# ---------------------------------------------------------------------------------------------
# the small preset: heavy tails and the collaborative signal
def test_heavy_user_tail_and_zipf_songs(small_sim):
    sim = small_sim
    n = sim.n_train
    user, song = sim.rows.user[:n], sim.rows.song[:n]
    assert S.top_user_share(user) >= 0.10
    plays = np.bincount(song)
    plays = np.sort(plays[plays > 0])[::-1]
    assert plays[0] / n < 0.01                                                  # top song: < 1% of rows
    assert np.median(plays) <= 5 and plays[: plays.size // 100].sum() / n > 0.2  # long tail, heavy head
    cold = S.cold_start_shares(user, song)
    assert cold["test_songs_unseen_share"] >= 0.15 and cold["test_users_unseen_share"] >= 0.10


def test_affinity_drives_replay_and_co_occurrence(small_sim):
    sim = small_sim
    n, k = sim.n_train, sim.params["n_clusters"]
    comps = {name: v[:n] for name, v in sim.components.items()}
    share = np.var(comps["affinity"]) / np.var(np.sum(list(comps.values()), axis=0))
    assert 0.2 < share < 0.4
    assert np.corrcoef(comps["affinity"], sim.label[:n])[0, 1] > 0.15
    # co-occurrence: users concentrate their plays on a few clusters
    user, cluster = sim.rows.user[:n], sim.songs.cluster[sim.rows.song[:n]]
    counts = np.zeros((sim.users.arrival.size, k))
    np.add.at(counts, (user, cluster), 1)
    active = counts.sum(axis=1) >= 50
    top_share = (counts[active].max(axis=1) / counts[active].sum(axis=1)).mean()
    assert top_share > 5 / k
    # what a collaborative filter can learn from the first 80% (who played which cluster) predicts
    # replay in the last 20%, and tracks the true affinity
    cut = int(0.8 * n)
    hist = np.zeros((sim.users.arrival.size, k))
    np.add.at(hist, (user[:cut], cluster[:cut]), 1)
    hist /= np.maximum(hist.sum(axis=1, keepdims=True), 1)
    cf = hist[user[cut:], cluster[cut:]]
    assert roc_auc_score(sim.label[cut:n], cf) > 0.57
    assert np.corrcoef(cf, comps["affinity"][cut:])[0, 1] > 0.5


def test_clusters_are_not_metadata(small_sim):
    songs = small_sim.songs

    def best_guess_accuracy(key):
        df = pl.DataFrame({"key": key, "cluster": songs.cluster})
        top = df.group_by("key", "cluster").len().group_by("key").agg(pl.col("len").max())
        return top["len"].sum() / df.height
    assert best_guess_accuracy(songs.language * 10_000 + songs.genres[:, 0]) < 0.35
    assert best_guess_accuracy(songs.artist) < 0.8


# ---------------------------------------------------------------------------------------------
# arguments
@pytest.mark.parametrize("kwargs, message", [
    ({"preset": "huge"}, "allowed: tiny, small, kkbox"),
    ({"label_noise": 0.5}, "label_noise"),
    ({"label_noise": -0.1}, "label_noise"),
    ({"random_state": -1}, "random_state"),
    ({"random_state": "seed"}, "random_state"),
    ({"train_rows": 10}, "train_rows"),
    ({"test_rows": 2.5}, "test_rows"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        S.generate(tmp_path, **{"preset": "tiny", **kwargs})
    assert not any(tmp_path.iterdir())                                          # nothing written


def test_presets_and_summary_keys(tiny):
    _, summary = tiny
    assert set(S.PRESETS) == {"tiny", "small", "kkbox"}
    assert S.PRESETS["kkbox"]["train_rows"] == 7_377_418 and S.PRESETS["kkbox"]["test_rows"] == 2_556_790
    for key in ("train_rows", "test_rows", "train_users", "train_songs", "test_users", "test_songs",
                "target_mean", "oracle_auc", "top1pct_user_row_share", "cold_start", "seconds"):
        assert key in summary
    assert summary["train_users"] <= S.PRESETS["tiny"]["n_users"]
