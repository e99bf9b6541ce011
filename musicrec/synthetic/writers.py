"""The files: train.csv, test.csv, members.csv, songs.csv, song_extra_info.csv in the real KKBOX format,
truth.parquet and generation.json; `generate` is the public entry point."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import polars as pl

from musicrec.synthetic.constants import (
    EXTRA_COLUMNS,
    GENRES,
    LANG_SHARE,
    LANGUAGES,
    MEMBER_COLUMNS,
    SONG_COLUMNS,
    TEST_COLUMNS,
    TRAIN_COLUMNS,
    VIA,
)
from musicrec.synthetic.events import Simulation, _check_label_noise, _check_random_state, _params, _simulate, _streams
from musicrec.synthetic.hazards import (
    _isrc,
    _lang_style,
    _name_lists,
    _person_names,
    _song_length,
    _titles,
    _where,
    _with_csv_hazards,
)
from musicrec.synthetic.summary import _summary
from musicrec.synthetic.world import Songs, Users, _b64_ids, _choice


# ---------------------------------------------------------------------------------------------
# frames
def _rows_frame(sim: Simulation, user_ids: pl.Series, song_ids: pl.Series, sl: slice) -> pl.DataFrame:
    """msno, song_id and the three source columns of the rows in `sl`."""
    cols = {"msno": user_ids.gather(sim.rows.user[sl]), "song_id": song_ids.gather(sim.rows.song[sl])}
    for name, (vocab, code) in sim.codes.items():
        cols[name] = pl.Series(vocab, dtype=pl.String).gather(code[sl])
    return pl.DataFrame(cols)


def _members_frame(users: Users, ids: pl.Series, keep: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({
        "msno": ids.gather(keep),
        "city": users.city[keep],
        "bd": users.bd[keep],
        "gender": pl.Series([None, "male", "female"], dtype=pl.String).gather(users.gender[keep]),
        "registered_via": VIA[users.via[keep]],
        "registration_init_time": users.registration[keep],
        "expiration_date": users.expiration[keep],
    })


def _genre_ids(rng, songs: Songs) -> pl.Series:
    """'465' or '465|958' (pipe-separated), ~4% missing."""
    names = pl.Series([str(g) for g in GENRES] + [None], dtype=pl.String)
    slots = {f"g{j}": names.gather(np.where(songs.genres[:, j] >= 0, songs.genres[:, j], len(GENRES)))
             for j in range(songs.genres.shape[1])}
    ids = pl.DataFrame(slots).select(pl.concat_str(pl.all(), separator="|", ignore_nulls=True)).to_series()
    return ids.scatter(np.flatnonzero(rng.random(ids.len()) < 0.041), None)


def _songs_frame(rng, songs: Songs, ids: pl.Series) -> pl.DataFrame:
    """songs.csv for the whole catalogue: artists, composers (~47% missing), lyricists (~85%)."""
    n = songs.cluster.size
    style = _lang_style(songs.language)
    artists = _person_names(rng, _lang_style(songs.artist_language)).scatter(0, "Various Artists")
    artist_name = artists.gather(songs.artist)
    pool_style = _lang_style(_choice(rng, LANG_SHARE, max(50, n // 3)))
    pool = _person_names(rng, pool_style, bands=False)
    has_composer = rng.random(n) < 0.53
    composer = _name_lists(rng, style, has_composer, pool, pool_style, 4)
    self_written = has_composer & (rng.random(n) < 0.2) & (songs.artist != 0)
    composer = _where(self_written, artist_name, composer)
    has_lyricist = rng.random(n) < 0.15
    lyricist = _name_lists(rng, style, has_lyricist, pool, pool_style, 2)
    lyricist = _where(has_lyricist & has_composer & (rng.random(n) < 0.5), composer, lyricist)
    return pl.DataFrame({"song_id": ids, "song_length": _song_length(rng, n),
                         "genre_ids": _genre_ids(rng, songs), "artist_name": artist_name,
                         "composer": composer, "lyricist": lyricist, "language": LANGUAGES[songs.language]})


def _song_frames(rng, songs: Songs, ids: pl.Series, played: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame]:
    """songs.csv and song_extra_info.csv, rows shuffled; ~0.5% (songs) and ~0.2% (extra) of the
    played songs have no row, unplayed catalogue songs do have one."""
    n = songs.cluster.size
    songs_df = _songs_frame(rng, songs, ids)
    names = _with_csv_hazards(rng, _titles(rng, _lang_style(songs.language)))
    extra_df = pl.DataFrame({"song_id": ids, "name": names, "isrc": _isrc(rng, songs)})
    played_idx = np.flatnonzero(played)
    frames = []
    for df, share in ((songs_df, 0.005), (extra_df, 0.002)):
        drop = rng.choice(played_idx, size=max(1, round(share * played_idx.size)), replace=False)
        frames.append(df[rng.permutation(np.setdiff1d(np.arange(n), drop))])
    return frames[0], frames[1]


# ---------------------------------------------------------------------------------------------
# public entry point
def generate(out_dir, preset: str = "small", *, label_noise: float = 0.0, random_state=0,
             train_rows=None, test_rows=None) -> dict:
    """Write train.csv, test.csv, members.csv, songs.csv, song_extra_info.csv (real KKBOX format),
    truth.parquet and generation.json into out_dir (created if needed); return the summary.

    label_noise flips exactly round(label_noise * train rows) train.csv labels (truth.parquet keeps
    the drawn label and marks the flips). Same arguments give byte-identical files, so the timing
    ("seconds") is only in the returned summary, not in generation.json.
    """
    started = time.perf_counter()
    label_noise = _check_label_noise(label_noise)
    p = _params(preset, train_rows, test_rows)
    rs = _check_random_state(random_state)
    streams = _streams(rs)
    sim = _simulate(p, streams)
    flipped = _flips(streams["noise"], sim.n_train, label_noise)
    target = sim.label[: sim.n_train] ^ flipped.astype(np.int8)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_members, n_songs_csv = _write_csvs(out, sim, target, streams["text"])
    _write_truth(out / "truth.parquet", sim, flipped)
    summary = _summary(sim, target, int(flipped.sum()), n_members, n_songs_csv)
    params = dict(p, label_noise=label_noise, random_state=rs, b0=sim.b0)
    (out / "generation.json").write_text(json.dumps({"params": params, "summary": summary}, indent=2) + "\n")
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary


def _flips(rng, n_train: int, label_noise: float) -> np.ndarray:
    """Exactly round(label_noise * n_train) train rows, chosen uniformly, get their label flipped."""
    flipped = np.zeros(n_train, dtype=bool)
    flipped[rng.choice(n_train, size=int(round(label_noise * n_train)), replace=False)] = True
    return flipped


def _write_csvs(out: Path, sim: Simulation, target: np.ndarray, rng) -> tuple[int, int]:
    """The five KKBOX files; returns the row counts of members.csv and songs.csv."""
    n = sim.n_train
    user_ids = _b64_ids(rng, sim.users.arrival.size)
    song_ids = _b64_ids(rng, sim.songs.cluster.size)
    train = _rows_frame(sim, user_ids, song_ids, slice(0, n)).with_columns(target=pl.Series(target))
    train.select(TRAIN_COLUMNS).write_csv(out / "train.csv")
    del train
    test = _rows_frame(sim, user_ids, song_ids, slice(n, None))
    test.with_columns(id=pl.int_range(test.height, dtype=pl.Int64)).select(TEST_COLUMNS).write_csv(out / "test.csv")
    del test
    members = _members_frame(sim.users, user_ids, np.unique(sim.rows.user))
    members.select(MEMBER_COLUMNS).write_csv(out / "members.csv")
    played = np.zeros(sim.songs.cluster.size, dtype=bool)
    played[sim.rows.song] = True
    songs, extra = _song_frames(rng, sim.songs, song_ids, played)
    songs.select(SONG_COLUMNS).write_csv(out / "songs.csv")
    extra.select(EXTRA_COLUMNS).write_csv(out / "song_extra_info.csv")
    return members.height, songs.height


def _write_truth(path: Path, sim: Simulation, flipped: np.ndarray) -> None:
    """One row per train.csv row, then per test.csv row: file, row, p_true, label (drawn), flipped."""
    n, m = sim.n_train, sim.rows.user.size - sim.n_train
    pl.DataFrame({
        "file": pl.Series(["train", "test"], dtype=pl.String).gather(np.repeat([0, 1], [n, m])),
        "row": np.concatenate([np.arange(n), np.arange(m)]).astype(np.int64),
        "p_true": sim.p_true.astype(np.float64),
        "label": sim.label.astype(np.int8),
        "flipped": np.concatenate([flipped, np.zeros(m, dtype=bool)]),
    }).write_parquet(path)
