"""quality.json is typed (musicrec.outputs.quality.Quality) for every source, and checked in the reader."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from musicrec import preprocess
from musicrec.outputs.base import SchemaError
from musicrec.outputs import quality as schema
from musicrec.outputs.quality import Column, Kcore, Quality, Rows
from musicrec.readers import listen_quality
from musicrec.synthetic import listens as synthetic_listens

from conftest import REPO, make_cfg
from test_hetrec import write_hetrec


@pytest.fixture(scope="module")
def listen_log(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quality") / "lb"
    synthetic_listens.generate(folder, "tiny", "listenbrainz", random_state=[42, 14])
    return folder / "listens"


def without_none(value):
    """JSON with every null-valued key left out (what a source does not write is None in the dataclass)."""
    if isinstance(value, dict):
        return {k: without_none(v) for k, v in value.items() if v is not None}
    return value


def read_back(data) -> tuple[Quality, dict]:
    path = data / "01_preprocess" / "quality.json"
    raw = json.loads(path.read_text())
    q = Quality.read(path)
    assert without_none(q.to_dict()) == without_none(raw)  # nothing lost or renamed on the way
    return q, raw


def test_kkbox_format_synthetic_quality_reads_typed(tmp_path):
    preprocess.run(make_cfg(tmp_path, None, "data.source=synthetic"))
    q, raw = read_back(tmp_path)
    assert isinstance(q.rows, Rows) and isinstance(q.test_rows, schema.TestRows)
    assert q.rows.in_ == raw["rows"]["in"] == q.rows.out + q.rows.rejected > 0
    assert q.test_rows.in_ == q.test_rows.out + q.test_rows.rejected > 0
    assert all(isinstance(c, Column) for c in q.columns.values()) and "city" in q.columns
    assert q.entities and q.outliers and q.empty_rows is not None
    assert q.source is None and q.listens is None and q.kcore is None
    assert q.coverage.rows_without_member == raw["coverage"]["rows_without_member"]
    assert "in" in q.to_dict()["rows"] and "in_" not in q.to_dict()["rows"]


def test_listens_quality_reads_typed_with_sample_and_kcore(listen_log, tmp_path):
    preprocess.run(make_cfg(tmp_path, None, "data.source=listens", "data.listens.format=listenbrainz",
                            f"data.listens.path={listen_log}", "data.listens.user_sample=0.5",
                            "preprocess.kcore.min_listeners_per_track=2", "preprocess.kcore.min_tracks_per_user=3"))
    q, _ = read_back(tmp_path)
    assert q.source == "listens" and q.format == "listenbrainz" and q.test_rows is None
    r = q.rows
    assert r.in_ == r.out + r.kcore_removed + r.rejected + r.repeats + r.unlabellable + r.sampled_out
    assert isinstance(q.kcore, Kcore) and q.kcore.rows_removed == r.kcore_removed > 0
    assert q.user_sample["share"] == 0.5 and q.synthetic_truth["label_equals_target"] == 1.0
    assert q.distinct.artists > 0 and q.columns["genre"].filled_with == "unknown"
    low, high = q.target["interval95"]
    assert low < q.target["rate"] < high


def test_hetrec_quality_reads_typed(tmp_path):
    folder = write_hetrec(tmp_path / "het", np.random.default_rng(1))
    preprocess.run(make_cfg(tmp_path / "data", None, "data.source=listens", "data.listens.format=hetrec",
                            f"data.listens.path={folder}"))
    q, _ = read_back(tmp_path / "data")
    assert (q.rows.in_, q.rows.out, q.rows.rejected) == (60 * 12 + 1, 60 * 12, 1)
    assert q.plays["total"] > 0 and q.unlabellable["pairs"] == q.rows.out


def test_wilson_interval_is_scipys_rounded():
    from scipy.stats import binomtest

    ci = binomtest(2415, 5708).proportion_ci(method="wilson")
    assert listen_quality.rounded_interval(2415, 5708) == [round(ci.low, 6), round(ci.high, 6)]
    assert listen_quality.rounded_interval(0, 0) is None


def test_a_key_the_schema_lacks_fails_in_the_reader(listen_log, tmp_path, monkeypatch):
    real = listen_quality.tables_part
    monkeypatch.setattr(listen_quality, "tables_part", lambda *a: {**real(*a), "distinc": {}})
    with pytest.raises(SchemaError, match="distinc"):
        preprocess.run(make_cfg(tmp_path, None, "data.source=listens", "data.listens.format=listenbrainz",
                                f"data.listens.path={listen_log}"))
    assert not (tmp_path / "01_preprocess" / "quality.json").exists()


def test_quality_refuses_undeclared_and_missing_fields():
    good = {"rows": {"in": 3, "out": 2, "rejected": 1}, "rejected_by_reason": {"x": 1}, "test_rows": None,
            "columns": {}, "coverage": {"rows_without_member": 0.0, "rows_without_song_metadata": 0.0,
                                        "rows_without_song_extra": 0.0}, "distinct": {"users": 1, "songs": 1}}
    assert Quality.validated(good, "q") is good and Quality.from_dict(good).rows.in_ == 3
    with pytest.raises(SchemaError, match="in_"):
        Quality.from_dict({**good, "rows": {"in_": 3, "out": 2, "rejected": 1}})
    with pytest.raises(SchemaError, match="rows"):
        Quality.from_dict({k: v for k, v in good.items() if k != "rows"})


@pytest.mark.parametrize("call", [
    "from musicrec.readers.listen_events import check_accounting as c; "
    "c({'in': 5, 'events': 1, 'repeats': 1, 'unlabellable': 1, 'rejected': 1})",
    "from musicrec.readers.kkbox import check_rows as c; c({'in': 5, 'out': 3, 'rejected': 1})",
])
def test_row_accounting_checks_survive_python_O(call):
    res = subprocess.run([sys.executable, "-O", "-c", call], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 1 and "RuntimeError" in res.stderr and "does not add up" in res.stderr
