import json

import polars as pl
import pytest

from musicrec import preprocess
from musicrec.readers import kkbox_files as raw
from musicrec.readers.kkbox_cleaning import fill_value, normalize_name, outlier_bounds
from musicrec.errors import InputError

from conftest import make_cfg, run_script

OUT = "01_preprocess"


def read_text_csv(path):
    return pl.read_csv(path, infer_schema=False)


def edit_csv(path, fn):
    fn(read_text_csv(path)).write_csv(path)


def test_tiny_outputs_are_complete_compact_and_mapped_back(tmp_path, raw_copy):
    cfg = make_cfg(tmp_path / "data", raw_copy)
    quality = preprocess.run(cfg)
    folder = tmp_path / "data" / OUT
    inter = pl.read_parquet(folder / "interactions.parquet")
    train_csv = read_text_csv(raw_copy / "train.csv")
    assert quality["rows"]["in"] == train_csv.height == quality["rows"]["out"] + quality["rows"]["rejected"]
    assert inter.null_count().sum_horizontal().item() == 0
    assert inter["time_order"].is_sorted() and inter["time_order"].is_unique().all()
    assert inter.schema["user"] == pl.Int32 and inter.schema["source_type"] == pl.Int16
    assert inter.schema["target"] == pl.Int8 and inter.schema["genre_count"] == pl.Int8
    # codes are compact and read back to the original ids at the same row
    users = pl.read_parquet(folder / "users.parquet")
    assert users["user"].to_list() == list(range(users.height))
    back = inter.join(users, on="user").sort("time_order")
    assert back["msno"].to_list() == train_csv["msno"].gather(back["time_order"]).to_list()
    cats = pl.read_parquet(folder / "categories.parquet")
    tabs = cats.filter(pl.col("column") == "source_system_tab")
    decoded = inter.join(tabs.select(pl.col("code").cast(pl.Int16).alias("source_system_tab"), "value"),
                         on="source_system_tab").sort("time_order")
    original = raw.null_to_none("source_system_tab")
    expect = train_csv.with_columns(original)["source_system_tab"].fill_null("unknown").gather(decoded["time_order"])
    assert decoded["value"].to_list() == expect.to_list()
    kaggle = pl.read_parquet(folder / "kaggle_test.parquet")
    assert kaggle.height == read_text_csv(raw_copy / "test.csv").height
    assert kaggle["time_order"].min() == train_csv.height  # test.csv continues the time axis
    q = json.loads((folder / "quality.json").read_text())
    for col, rep in q["columns"].items():
        assert rep["missing_after"] == 0.0, col
    assert q["columns"]["gender"]["missing_before"] > 0.3


def test_unusable_rows_go_to_rejects_with_reason(tmp_path, raw_copy):
    def break_rows(df):
        bad = pl.concat([
            df.head(2),  # exact duplicates of rows 0 and 1
            df.slice(5, 1).with_columns(pl.lit(None, pl.String).alias("msno")),
            df.slice(6, 1).with_columns(pl.lit("").alias("target")),
            df.slice(7, 1).with_columns(pl.lit(None, pl.String).alias("song_id")),
        ])
        return pl.concat([df, bad])
    edit_csv(raw_copy / "train.csv", break_rows)
    n_in = read_text_csv(raw_copy / "train.csv").height
    quality = preprocess.run(make_cfg(tmp_path / "data", raw_copy))
    rejects = pl.read_parquet(tmp_path / "data" / OUT / "rejects.parquet")
    assert quality["rows"] == {"in": n_in, "out": n_in - 5, "rejected": 5}
    assert quality["rejected_by_reason"] == {"exact duplicate of an earlier row": 2, "missing msno": 1,
                                             "missing song_id": 1, "missing target": 1}
    assert sorted(rejects["time_order"].to_list()) == list(range(n_in - 5, n_in))


def _drop_column(col):
    return lambda df: df.drop(col)


def _set_cell(col, value, row=3):
    return lambda df: df.with_columns(
        pl.when(pl.int_range(pl.len()) == row).then(pl.lit(value)).otherwise(pl.col(col)).alias(col))


@pytest.mark.parametrize("file, edit, message", [
    ("songs.csv", "delete", "songs.csv: file not found"),
    ("members.csv", _drop_column("bd"), "members.csv: column 'bd': required column is missing"),
    ("train.csv", "zero", "train.csv: file is empty"),
    ("song_extra_info.csv", "header", "song_extra_info.csv: file has a header but no data rows"),
    ("train.csv", _set_cell("target", "2"), "train.csv: column 'target': target must be 0 or 1; found '2' at data row 4"),
    ("train.csv", _set_cell("target", "yes"), "column 'target': target must be 0 or 1"),
    ("members.csv", _set_cell("registration_init_time", "2017-01-01"),
     "members.csv: column 'registration_init_time': dates must be YYYYMMDD; found '2017-01-01'"),
    ("members.csv", _set_cell("expiration_date", "20171345"), "column 'expiration_date': dates must be YYYYMMDD"),
    ("songs.csv", _set_cell("song_length", "long"), "songs.csv: column 'song_length': values must be integers"),
    ("test.csv", _set_cell("msno", None), "test.csv: column 'msno': ids must not be empty"),
])
def test_bad_input_stops_with_file_column_rule(tmp_path, raw_copy, file, edit, message):
    path = raw_copy / file
    if edit == "delete":
        path.unlink()
    elif edit == "zero":
        path.write_bytes(b"")
    elif edit == "header":
        path.write_text(path.read_text().splitlines()[0] + "\n")
    else:
        edit_csv(path, edit)
    with pytest.raises(InputError) as err:
        preprocess.run(make_cfg(tmp_path / "data", raw_copy))
    assert message in str(err.value)
    assert not (tmp_path / "data" / OUT / "manifest.json").exists()


def test_bad_input_exit_code_and_one_line(tmp_path, raw_copy):
    edit_csv(raw_copy / "train.csv", _set_cell("target", "7", row=0))
    res = run_script("01_preprocess.py", "--set", f"paths.data={tmp_path}", "--set", "data.source=kkbox",
                     "--set", f"paths.raw={raw_copy}", "-q")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"01_preprocess: error: {raw_copy}/train.csv: column 'target': target must be 0 or 1; "
        "found '7' at data row 1"]


def test_test_csv_is_optional(tmp_path, raw_copy):
    (raw_copy / "test.csv").unlink()
    quality = preprocess.run(make_cfg(tmp_path / "data", raw_copy))
    assert quality["test_rows"] is None
    assert not (tmp_path / "data" / OUT / "kaggle_test.parquet").exists()


def test_null_conventions_are_unified():
    df = pl.DataFrame({"s": ["a", "null", "", " ", None, "NULL", "b"]})
    assert df.select(raw.null_to_none("s"))["s"].to_list() == ["a", None, None, None, None, None, "b"]


def test_outlier_bounds_and_fill_values_by_hand():
    v = pl.Series("x", [1.0, 2.0, 3.0, 4.0, 100.0, None])
    assert outlier_bounds(v, "cap", 1.5, 5) == (2.0 - 1.5 * 2.0, 4.0 + 1.5 * 2.0)  # q1=2, q3=4
    lo, hi = outlier_bounds(v, "robust", 1.5, 2.0)  # median 3, MAD 1
    assert (lo, hi) == pytest.approx((3 - 2 * 1.4826, 3 + 2 * 1.4826))
    assert outlier_bounds(v, "none", 1.5, 5) is None
    assert fill_value(v, "median", -1) == 3.0
    assert fill_value(pl.Series("c", ["b", "a", "a", "b", None]), "mode", -1) == "a"  # tie -> smallest
    assert fill_value(v, "constant", -1.0) == -1.0
    assert fill_value(v, "unknown", -1.0) == "unknown"


def test_bd_range_and_song_length_cap_apply(tmp_path, raw_copy):
    cfg = make_cfg(tmp_path / "data", raw_copy, "preprocess.bd_range=[20, 30]", "preprocess.outliers.song_length=cap",
                   "preprocess.iqr_k=0.5", "preprocess.impute.bd=constant", "preprocess.impute_constant=25")
    quality = preprocess.run(cfg)
    inter = pl.read_parquet(tmp_path / "data" / OUT / "interactions.parquet")
    assert inter["bd"].min() >= 20 and inter["bd"].max() <= 30
    lo, hi = quality["outliers"]["song_length"]["bounds"]
    assert quality["outliers"]["song_length"]["clipped"] > 0
    assert inter["song_length"].max() <= round(hi) and quality["columns"]["bd"]["filled_with"] == 25.0


def test_name_normalization():
    df = pl.DataFrame({"a": ["張信哲 (Jeff Chang)", "  The  Band ", "Various Artists"]})
    assert df.select(normalize_name("a"))["a"].to_list() == ["張信哲", "the band", "various artists"]


def test_real_kkbox_sample_keeps_every_row(tmp_path, kkbox_sample):
    quality = preprocess.run(make_cfg(tmp_path / "data", kkbox_sample))
    assert quality["rows"] == {"in": 10_000, "out": 10_000, "rejected": 0}
    assert quality["test_rows"] == {"in": 2_000, "out": 2_000, "rejected": 0, "rejected_by_reason": {}}
    assert quality["entities"]["song_extra_info.csv"]["rows"] == 39_999  # quoted multi-line records
    # most sample songs have no songs.csv row: flagged and imputed, never dropped
    assert quality["coverage"]["rows_without_song_metadata"] > 0.5
    inter = pl.read_parquet(tmp_path / "data" / OUT / "interactions.parquet")
    assert inter.null_count().sum_horizontal().item() == 0
    assert inter["target"].mean() == pytest.approx(0.773)
