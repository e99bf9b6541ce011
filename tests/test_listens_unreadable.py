"""Lines the fast parsers refuse (a byte that is not UTF-8, a broken JSON line) become rejected rows.

Each log is built twice in tmp_path: with the bad line, and without it. Stage 01 must use the good
lines exactly as if the bad one were absent, and put the bad one in rejects with its reason.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from musicrec import preprocess
from musicrec.outputs.quality import Quality
from musicrec.readers import unreadable_lines
from musicrec.readers.unreadable_lines import NOT_JSON, NOT_UTF8
from musicrec.synthetic import listens as synthetic_listens

from conftest import make_cfg, run_script

DAY = 86_400
SAME = ("interactions", "users", "songs", "categories")


@pytest.fixture(scope="module")
def lastfm_lines(tmp_path_factory) -> list[bytes]:
    """A generated Last.fm 1K log (tiny preset), as its lines."""
    folder = tmp_path_factory.mktemp("unreadable") / "lfm"
    synthetic_listens.generate(folder, "tiny", "lastfm1k", random_state=[42, 14])
    return (folder / "listens" / "00000.tsv").read_bytes().splitlines()


def write(path: Path, lines: list[bytes], end: bytes = b"\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + end)
    return path


def stage01_script(data: Path, log: Path, *sets: str):
    """Stage 01 as users run it; returns the process and the outputs' folder."""
    args = ["--set", f"paths.data={data}", "--set", "data.source=listens", "--set", f"data.listens.path={log}"]
    for s in sets:
        args += ["--set", s]
    return run_script("01_preprocess.py", *args), data / "01_preprocess"


def reference(tmp_path: Path, log: Path, *sets: str) -> Path:
    """Stage 01 in process on the log without its bad line."""
    preprocess.run(make_cfg(tmp_path / "clean_out", None, "data.source=listens", f"data.listens.path={log}", *sets))
    return tmp_path / "clean_out" / "01_preprocess"


def assert_bad_lines_rejected(res, out: Path, clean: Path, bad: dict[int, str]) -> None:
    """Exit 0, the good lines used as without the bad ones, each bad line rejected with its reason."""
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    for name in SAME:
        assert_frame_equal(pl.read_parquet(out / f"{name}.parquet"), pl.read_parquet(clean / f"{name}.parquet"))
    rejects = pl.read_parquet(out / "rejects.parquet")
    assert dict(zip(rejects["line"].to_list(), rejects["reason"].to_list())) == bad
    q, ref = Quality.read(out / "quality.json"), Quality.read(clean / "quality.json")
    assert q.rows.in_ == ref.rows.in_ + len(bad) and q.rows.rejected == ref.rows.rejected + len(bad)
    assert q.rows.in_ == q.rows.out + q.rows.rejected + q.rows.repeats + q.rows.unlabellable
    by_reason: dict[str, int] = {}
    for reason in bad.values():
        by_reason[reason] = by_reason.get(reason, 0) + 1
    assert q.rejected_by_reason == by_reason


def test_latin1_byte_in_a_lastfm1k_log_is_a_rejected_line(lastfm_lines, tmp_path):
    at = 1234
    fields = lastfm_lines[at].split(b"\t")
    fields[3] = "Björk".encode("latin-1")  # the artist name, in another encoding
    bad = write(tmp_path / "bad" / "log.tsv", [*lastfm_lines[:at], b"\t".join(fields), *lastfm_lines[at + 1:]])
    clean = write(tmp_path / "clean" / "log.tsv", [*lastfm_lines[:at], *lastfm_lines[at + 1:]])
    res, out = stage01_script(tmp_path / "bad_out", bad, "data.listens.format=lastfm1k")
    assert f"{bad}: line {at + 1} holds a byte that is not UTF-8" in res.stderr
    ref = reference(tmp_path, clean, "data.listens.format=lastfm1k")
    assert_bad_lines_rejected(res, out, ref, {at: NOT_UTF8})


def test_latin1_byte_in_a_column_read_late_of_a_table_log(tmp_path):
    """The artist of a table log is read only when listens are coded (after the per-user pass)."""
    rng = np.random.default_rng(4)
    n = 2_000
    rows = [f"u{u},t{t},{1_600_000_000 + s},band {t % 7}".encode()
            for u, t, s in zip(rng.integers(0, 15, n), rng.integers(0, 60, n), rng.integers(0, 90 * DAY, n))]
    at = 700
    bad_row = rows[at].rsplit(b",", 1)[0] + b",Mot\xf6rhead"
    header = [b"user,track,time,artist"]
    bad = write(tmp_path / "bad" / "log.csv", header + rows[:at] + [bad_row] + rows[at + 1:])
    clean = write(tmp_path / "clean" / "log.csv", header + rows[:at] + rows[at + 1:])
    sets = ("data.listens.format=table", "data.listens.columns={user: user, track: track, time: time, artist: artist}")
    res, out = stage01_script(tmp_path / "bad_out", bad, *sets)
    assert_bad_lines_rejected(res, out, reference(tmp_path, clean, *sets), {at: NOT_UTF8})


def export_lines(n: int = 400, seed: int = 3) -> list[bytes]:
    """A ListenBrainz JSON-lines export (one user, no user_name: the file name names the user)."""
    rng = np.random.default_rng(seed)
    lines = []
    for t, s in zip(rng.integers(0, 40, n), np.sort(rng.integers(0, 90 * DAY, n))):
        meta = {"track_name": f"Song {t}", "artist_name": f"Artist {t % 9}", "release_name": f"Album {t % 9}",
                "recording_msid": f"msid-{t}", "additional_info": {"duration_ms": 1000 * int(t), "tags": ["a"]}}
        if t % 3:  # MusicBrainz matched most listens
            meta["mbid_mapping"] = {"recording_mbid": f"mbid-{t}", "artists": [{"artist_mbid": "x"}]}
        lines.append(json.dumps({"inserted_at": 1.7e9, "listened_at": 1_700_000_000 + int(s),
                                 "track_metadata": meta}).encode())
    return lines


def test_broken_lines_in_a_listenbrainz_export_are_rejected_lines(tmp_path):
    lines = export_lines()
    cut = lines[150][:57]  # a line cut short
    latin = json.dumps({**json.loads(lines[260]), "track_metadata": {**json.loads(lines[260])["track_metadata"],
                        "artist_name": "Bj\u00f6rk"}}, ensure_ascii=False).encode("latin-1")
    last = lines[-1][:30]  # an export cut off mid-line, without a final newline
    body = [*lines[:150], cut, *lines[150:260], latin, *lines[261:], last]
    bad = write(tmp_path / "bad" / "me.jsonl", body, end=b"")
    clean = write(tmp_path / "clean" / "me.jsonl", [*lines[:260], *lines[261:]])
    res, out = stage01_script(tmp_path / "bad_out", bad, "data.listens.format=listenbrainz")
    assert "error parsing line" in res.stderr  # the fast parser's refusal, logged as a warning
    ref = reference(tmp_path, clean, "data.listens.format=listenbrainz")
    assert_bad_lines_rejected(res, out, ref, {150: NOT_JSON, 261: NOT_UTF8, len(body) - 1: NOT_JSON})
    assert pl.read_parquet(out / "users.parquet")["msno"].to_list() == ["me"]


def test_broken_line_in_a_json_lines_table_log(tmp_path):
    rng = np.random.default_rng(8)
    lines = [json.dumps({"who": f"u{u}", "what": f"t{t}", "when": 1_600_000_000 + int(s)}).encode()
             for u, t, s in zip(rng.integers(0, 10, 800), rng.integers(0, 30, 800), rng.integers(0, 90 * DAY, 800))]
    bad = write(tmp_path / "bad" / "log.jsonl", [*lines[:300], b'{"who": "u1", "what": ', *lines[300:]])
    clean = write(tmp_path / "clean" / "log.jsonl", lines)
    sets = ("data.listens.format=table", "data.listens.columns={user: who, track: what, time: when}")
    res, out = stage01_script(tmp_path / "bad_out", bad, *sets)
    assert_bad_lines_rejected(res, out, reference(tmp_path, clean, *sets), {300: NOT_JSON})


def test_a_truncated_parquet_file_is_one_line_exit_2(tmp_path):
    folder = tmp_path / "dump"
    folder.mkdir()
    df = pl.DataFrame({"listened_at": [1_600_000_000, 1_600_000_100], "user_id": [1, 1],
                       "recording_msid": ["a", "b"]})
    df.write_parquet(folder / "0.parquet")
    (folder / "1.parquet").write_bytes((folder / "0.parquet").read_bytes()[:100])  # a download cut short
    res, _ = stage01_script(tmp_path / "out", folder, "data.listens.format=listenbrainz")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if "error" in line.lower()]
    assert errors == [res.stderr.strip().splitlines()[-1]]
    assert errors[0].startswith(f"01_preprocess: error: {folder / '1.parquet'}: not a readable parquet file (")


@pytest.mark.parametrize("chunk", [1, 3, 7, 1 << 24])
def test_first_invalid_utf8_line_is_exact_across_chunks(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(unreadable_lines, "CHUNK", chunk)
    good = "Sigur Rós\tMotörhead ☃\n".encode() * 3  # multi-byte characters across chunk borders
    path = tmp_path / "x.tsv"
    path.write_bytes(good)
    assert unreadable_lines.first_invalid_utf8(path) is None
    path.write_bytes(good + b"ok\nBj\xf6rk\n" + good)
    assert unreadable_lines.first_invalid_utf8(path) == 5
    path.write_bytes(good + "ö".encode()[:1])  # a character cut at the end of the file
    assert unreadable_lines.first_invalid_utf8(path) == 4
