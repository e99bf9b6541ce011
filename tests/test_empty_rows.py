"""Rows whose every field is empty are skipped and counted in every input file; partly empty rows keep the rules."""
import json

import polars as pl
import pytest

from musicrec import preprocess as stage_01
from musicrec.readers import kkbox as preprocess
from musicrec.readers import kkbox_files as raw
from musicrec.errors import InputError

from conftest import RAW_FILES, make_cfg

EMPTY_TRAIN_AT = (0, 7, 500)  # data-row positions (0-based, in the file) where empty rows are inserted


def insert_lines(path, lines_at: dict[int, str], tail: list[str] = ()):
    """Insert raw text lines before the given data rows and at the end (the header stays first)."""
    head, *rows = path.read_text().splitlines()
    out = [head]
    for i, row in enumerate(rows):
        if i in lines_at:
            out.append(lines_at[i])
        out.append(row)
    path.write_text("\n".join([*out, *tail]) + "\n")


def commas(path) -> str:
    return "," * (len(path.read_text().split("\n", 1)[0].split(",")) - 1)


@pytest.fixture
def with_empty_rows(tmp_path, raw_copy, tiny_raw):
    """The tiny files with empty rows (commas only, blanks, a blank line) inside and at the end of each."""
    train = raw_copy / "train.csv"
    blank = " " + commas(train).replace(",", ", ")  # fields of spaces only
    insert_lines(train, {0: commas(train), 7: blank, 500: commas(train)}, tail=[commas(train)] * 30)
    insert_lines(raw_copy / "test.csv", {3: ""}, tail=[commas(raw_copy / "test.csv")] * 40)  # the public copy's tail
    for name in ("members.csv", "songs.csv", "song_extra_info.csv"):
        insert_lines(raw_copy / name, {2: commas(raw_copy / name)}, tail=[commas(raw_copy / name)] * 5)
    return raw_copy


def test_empty_rows_are_counted_and_the_rest_is_what_clean_files_give(tmp_path, tiny_raw, with_empty_rows):
    pcfg = make_cfg(tmp_path / "d")["preprocess"]
    clean = preprocess.preprocess(raw.read_all(tiny_raw), pcfg)
    dirty = preprocess.preprocess(raw.read_all(with_empty_rows), pcfg)
    q = dirty["quality"]
    n_train = raw.read_csv(tiny_raw / "train.csv").height
    assert q["empty_rows"] == {"train.csv": 33, "test.csv": 41, "members.csv": 6, "songs.csv": 6,
                               "song_extra_info.csv": 6}
    assert q["rows"] == {"in": n_train + 33, "out": clean["quality"]["rows"]["out"],
                         "rejected": clean["quality"]["rows"]["rejected"] + 33}
    assert q["rows"]["in"] == q["rows"]["out"] + q["rows"]["rejected"]
    assert q["rejected_by_reason"] == {**clean["quality"]["rejected_by_reason"], "empty row": 33}
    n_test = clean["kaggle_test"].height
    assert q["test_rows"] == {"in": n_test + 41, "out": n_test, "rejected": 41, "rejected_by_reason": {"empty row": 41}}
    for name in ("members.csv", "songs.csv", "song_extra_info.csv"):
        before, after = clean["quality"]["entities"][name], q["entities"][name]
        assert after == {**before, "rows": before["rows"] + 6, "empty_rows": 6}

    # empty train rows keep their place in time: rejects name their file positions
    empties = dirty["rejects"].filter(pl.col("reason") == "empty row")
    expect = [0, 7 + 1, 500 + 2] + list(range(n_train + 3, n_train + 33))
    assert empties["time_order"].to_list() == expect
    assert empties.select(pl.col("msno", "song_id", "target").null_count()).row(0) == (33, 33, 33)
    # every usable row is the same row as in the clean files (same codes, same content)
    keep = [c for c in clean["interactions"].columns if c != "time_order"]
    assert dirty["interactions"].select(keep).equals(clean["interactions"].select(keep))
    for name in ("kaggle_test", "users", "songs", "categories"):
        a, b = clean[name], dirty[name]
        cols = [c for c in a.columns if c != "time_order"]
        assert b.select(cols).equals(a.select(cols)), name


def test_partly_empty_rows_keep_todays_rules(tmp_path, raw_copy):
    pcfg = make_cfg(tmp_path / "d")["preprocess"]
    train = raw_copy / "train.csv"
    insert_lines(train, {}, tail=[commas(train) + "1"])  # only the target: a row with a missing msno
    out = preprocess.preprocess(raw.read_all(raw_copy), pcfg)
    assert out["quality"]["rejected_by_reason"]["missing msno"] >= 1
    assert "empty row" not in out["quality"]["rejected_by_reason"]

    test = raw_copy / "test.csv"
    insert_lines(test, {}, tail=["99999" + commas(test)])  # an id and nothing else: still no prediction possible
    with pytest.raises(InputError, match=r"test.csv: column 'msno': ids must not be empty"):
        preprocess.preprocess(raw.read_all(raw_copy), pcfg)


def test_a_train_file_of_only_empty_rows_is_one_line(tmp_path, raw_copy):
    train = raw_copy / "train.csv"
    head = train.read_text().split("\n", 1)[0]
    train.write_text(head + "\n" + (commas(train) + "\n") * 4)
    with pytest.raises(InputError) as err:
        preprocess.preprocess(raw.read_all(raw_copy), make_cfg(tmp_path / "d")["preprocess"])
    assert str(err.value) == "train.csv: no usable rows: all 4 rejected (empty row: 4)"


def test_stage_01_runs_on_a_test_csv_ending_in_empty_rows(tmp_path, with_empty_rows):
    cfg = make_cfg(tmp_path / "data", with_empty_rows)
    stage_01.run(cfg)
    q = json.loads((tmp_path / "data" / "01_preprocess" / "quality.json").read_text())
    assert q["test_rows"]["rejected"] == 41 and set(q["empty_rows"]) == set(RAW_FILES)
    rejects = pl.read_parquet(tmp_path / "data" / "01_preprocess" / "rejects.parquet")
    assert (rejects["reason"] == "empty row").sum() == 33


@pytest.mark.parametrize("content, rule", [
    (b'\n"unclosed,quote\n', "cannot be read as CSV: could not parse"),
    (bytes(range(128, 256)) * 20, "cannot be read as CSV: invalid utf-8"),
])
def test_a_file_that_is_not_csv_is_one_line(tmp_path, raw_copy, content, rule):
    path = raw_copy / "train.csv"
    path.write_bytes(path.read_bytes().split(b"\n", 1)[0] + b"\n" + b"1,2,3,4,5,0" + content)
    with pytest.raises(InputError) as err:
        raw.read_csv(path)
    assert str(err.value).startswith(f"{path}: {rule}") and "\n" not in str(err.value)
